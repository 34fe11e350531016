"""Every GPU benchmark of the course in one command, one table, one JSON file.

    python benchmarks/run_all.py --out results.json          # one CUDA GPU, about 6 minutes

Sections (each its own process with a time limit, so one failure or hang leaves the
others' results; each writes its JSON as it goes, and this file is rewritten after every
section):

  train     benchmarks/gpt2_train.py --rows ...  training step, GPT-2 124M: eager, compiled, compiled with
                                                 the optimizer step, ours with its levers (padded vocabulary)
  generate  benchmarks/gpt2_generate.py          greedy generation, batch 1, 8 and 64
  suffix    benchmarks/sampling_suffix_scoring.py --device cuda --model gpt2-124m -n 64 256
  cpu       benchmarks/cpu_forward.py            (only with --sections ...,cpu: meant for a 2-core CPU;
                                                  GPT-2, BERT, DeBERTa, Llama, Qwen3, each default path)

The decode-step profile (variants of generate_fast's compiled step, kernels per step, MBU)
has its own command, about 5 minutes:
    python benchmarks/decode_profile.py --out decode.json

Data-parallel training has its own command (it needs torchrun and two GPUs):
    torchrun --nproc_per_node 2 benchmarks/gpt2_ddp.py --out ddp.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SECTIONS = {
    # The levers that help (see gpt2_train.py's full sweep, its default rows) beside transformers.
    "train": (["gpt2_train.py", "--rows", "eager=ours,hf;compile=ours,ours+pad,hf"],
              190),
    # transformers' plain generate (eager, ~70 ms a step) left out for time: gpt2_generate.py runs it.
    # So is kernels="triton" (its rows print when present): with it, this section ran past its
    # time limit at batch 64 (autotuning the kernels at each batch size), on an H200, 2026-12-02.
    "generate": (["gpt2_generate.py", "--impls", "hf_static,ours,fast,fast_pad"], 300),
    "suffix": (["sampling_suffix_scoring.py", "--device", "cuda", "--model", "gpt2-124m", "-n", "64", "256",
                "--repeats", "2"], 80),
    "cpu": (["cpu_forward.py"], 600),
}


def run_section(name: str, extra: list[str], timeout: int, folder: str) -> dict:
    script, default_timeout = SECTIONS[name]
    out = os.path.join(folder, f"{name}.json")
    cmd = [sys.executable, str(HERE / script[0]), *script[1:], *extra, "--out", out]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    print(f"\n=== {name}: {' '.join(cmd)} (limit {timeout} s)", flush=True)
    t = time.perf_counter()
    status = "ok"
    # Its own process group, so that a timeout also ends the compile workers it started.
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
    try:
        code = proc.wait(timeout=timeout)
        if code != 0:
            status = f"failed (exit code {code})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        status = f"timed out after {timeout} s"
    result = {}
    if os.path.exists(out):
        with open(out) as f:
            result = json.load(f)
    result.update(status=status, wall_s=time.perf_counter() - t)
    print(f"=== {name}: {status} in {result['wall_s']:.0f} s", flush=True)
    return result


def fmt(x, spec=",.0f") -> str:
    return "-" if x is None else format(x, spec)


def _pct(x) -> str:
    return "-" if x is None else f"{x:.1%}"


# Names of gpt2_train.py's rows written before it recorded a label with each row.
TRAIN_LABELS = {"ours": "ours", "ours+fused": "ours + fused ops", "hf": "transformers"}


def table(results: dict) -> list[str]:
    lines = []
    env = next((r.get("environment") for r in results.values() if r.get("environment")), {})
    lines.append(f"{env.get('card') or env.get('cpu')}, torch {env.get('torch')}, transformers "
                 f"{env.get('transformers')}, Python {env.get('python')}")
    lines.append("")
    lines.append("| benchmark | setting | ours | transformers | ours / transformers | goal |")
    lines.append("|---|---|---:|---:|---:|---|")

    train = results.get("train", {})
    rows = {(r["impl"], r["mode"]): r for r in train.get("rows", [])}
    modes = list(dict.fromkeys(r["mode"] for r in train.get("rows", [])))  # in the order they ran
    for mode in modes:
        hf = rows.get(("hf", mode))
        for (impl, m), r in rows.items():
            if m != mode or impl == "hf":
                continue
            ratio = r["tokens_per_s"] / hf["tokens_per_s"] if hf else None
            goal = "> 1.0x" if mode == "eager" else ">= 1.3x, MFU >= 50%"
            hf_cell = f"{fmt(hf['tokens_per_s'])} ({_pct(hf['mfu_989'])})" if hf else "-"
            name = r.get("label") or TRAIN_LABELS.get(impl, impl)
            lines.append(f"| train, tokens/s (MFU of 989) | {name}, {mode} | {fmt(r['tokens_per_s'])} "
                         f"({_pct(r['mfu_989'])}) | {hf_cell} | {fmt(ratio, '.2f') + 'x' if ratio else '-'} | {goal} |")
    if train and train.get("status") != "ok":
        lines.append(f"| train | {train['status']} | | | | |")

    gen = results.get("generate", {})
    for r in gen.get("rows", []):
        B = r["batch"]
        # Against transformers' own fast path (static cache, compiled): >= 3x at every batch size.
        goal = ">= 3x transformers static compiled" + {1: ", <= 200 µs/token",
                                                       64: ", >= 40% of the bandwidth floor"}.get(B, "")
        lines.append(f"| generate, tokens/s | batch {B}, generate_fast vs transformers static compiled | "
                     f"{fmt(r.get('ours_fast_tokens_per_s'))} | {fmt(r.get('hf_static_tokens_per_s'))} | "
                     f"{fmt(r.get('ours_fast_vs_hf_static'), '.2f')}x | {goal} |")
        lines.append(f"| generate, µs/token (MBU) | batch {B}, generate_fast vs transformers static compiled | "
                     f"{fmt(r.get('fast_token_us'))} ({fmt(r.get('fast_mbu'), '.0%')}) | "
                     f"{fmt(r.get('hf_static_token_us'))} ({fmt(r.get('hf_static_mbu'), '.0%')}) | | "
                     f"floor {fmt(r.get('floor_tokens_per_s'))} tokens/s, fast at {fmt(r.get('fast_of_floor'), '.0%')} |")
        if "ours_fast_pad_tokens_per_s" in r:
            lines.append(f"| generate, tokens/s | batch {B}, generate_fast on a padded vocabulary vs transformers "
                         f"static compiled | {fmt(r.get('ours_fast_pad_tokens_per_s'))} | "
                         f"{fmt(r.get('hf_static_tokens_per_s'))} | {fmt(r.get('ours_fast_pad_vs_hf_static'), '.2f')}x | "
                         f"{fmt(r.get('fast_pad_token_us'))} µs/token ({fmt(r.get('fast_pad_mbu'), '.0%')} MBU) |")
        if "ours_fast_triton_tokens_per_s" in r:
            lines.append(f"| generate, tokens/s | batch {B}, generate_fast(kernels='triton') vs transformers "
                         f"static compiled | {fmt(r.get('ours_fast_triton_tokens_per_s'))} | "
                         f"{fmt(r.get('hf_static_tokens_per_s'))} | {fmt(r.get('ours_fast_triton_vs_hf_static'), '.2f')}x | "
                         f"{fmt(r.get('fast_triton_token_us'))} µs/token ({fmt(r.get('fast_triton_mbu'), '.0%')} MBU) |")
        if "hf_tokens_per_s" not in r:
            continue  # transformers' plain generate not run (run_all's default leaves it out, for time)
        lines.append(f"| generate, tokens/s | batch {B}, generate_fast vs transformers generate | "
                     f"{fmt(r.get('ours_fast_tokens_per_s'))} | {fmt(r.get('hf_tokens_per_s'))} | "
                     f"{fmt(r.get('ours_fast_vs_hf'), '.1f')}x | |")
        lines.append(f"| generate, tokens/s | batch {B}, generate (eager) | "
                     f"{fmt(r.get('ours_generate_tokens_per_s'))} | {fmt(r.get('hf_tokens_per_s'))} | "
                     f"{fmt(r.get('ours_generate_vs_hf'), '.1f')}x | |")
    if gen and gen.get("status") != "ok":
        lines.append(f"| generate | {gen['status']} | | | | |")

    suffix = results.get("suffix", {})
    by = {(r["n"], r["model"]): r for r in suffix.get("rows", [])}
    for n in sorted({r["n"] for r in suffix.get("rows", [])}):
        o, h = by.get((n, "ours")), by.get((n, "transformers"))
        lines.append(f"| suffix scoring, s | N={n}, bad + good: one pass (two calls; naive) | "
                     f"{fmt(o and o['one_pass_s'], '.3f')} ({fmt(o and o['two_calls_s'], '.3f')}; "
                     f"{fmt(o and o['naive_s'], '.3f')}) | "
                     f"{fmt(h and h['one_pass_s'], '.3f')} ({fmt(h and h['two_calls_s'], '.3f')}; "
                     f"{fmt(h and h['naive_s'], '.3f')}) | "
                     f"{fmt(h and o and h['one_pass_s'] / o['one_pass_s'], '.2f')}x faster | "
                     f"one pass {fmt(o and o['speedup'], '.1f')}x naive, "
                     f"{fmt(o and o['one_pass_vs_two_calls'], '.2f')}x two calls |")
    if suffix and suffix.get("status") != "ok":
        lines.append(f"| suffix scoring | {suffix['status']} | | | | |")

    cpu = results.get("cpu", {})
    threads = cpu.get("threads")
    for r in cpu.get("rows", []):
        attn = r.get("attn_implementation", {})
        lines.append(f"| CPU forward, ms ({threads} threads) | {r['model']} {r['batch']}x{r['tokens']}, defaults "
                     f"({attn.get('ours')} / {attn.get('transformers')}) | {r['ms']['ours (default)']:.1f} | "
                     f"{r['ms']['transformers (default)']:.1f} | {r['ours_over_transformers']:.2f}x time | <= 1.0x |")
    if cpu and cpu.get("status") != "ok":
        lines.append(f"| CPU forward | {cpu['status']} | | | | |")
    lines.append("")
    lines.append("sections: " + ", ".join(f"{n} {r.get('status')} ({r.get('wall_s', 0):.0f} s)" for n, r in results.items()))
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results.json")
    p.add_argument("--sections", default="train,generate,suffix", help=f"comma-separated, of {list(SECTIONS)}")
    p.add_argument("--timeout", action="append", default=[], metavar="SECTION=SECONDS",
                   help="override a section's time limit, e.g. --timeout generate=400")
    p.add_argument("--args", action="append", default=[], metavar="SECTION=ARGS",
                   help='extra arguments for a section, e.g. --args "train=--steps 10"')
    args = p.parse_args()
    names = args.sections.split(",")
    for n in names:
        if n not in SECTIONS:
            raise SystemExit(f"unknown section {n!r}; expected some of {list(SECTIONS)}")
    if any(n != "cpu" for n in names):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("run_all.py: the train, generate and suffix sections need a CUDA GPU and "
                             "torch.cuda.is_available() is False; on a CPU run --sections cpu")
    timeouts = {k: int(v) for k, v in (t.split("=", 1) for t in args.timeout)}
    extras = {k: v.split() for k, v in (a.split("=", 1) for a in args.args)}
    results: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        for n in names:
            results[n] = run_section(n, extras.get(n, []), timeouts.get(n, SECTIONS[n][1]), folder)
            with open(args.out, "w") as f:
                json.dump(results, f, indent=2, default=str)
    lines = table(results)
    print("\n" + "\n".join(lines), flush=True)
    with open(args.out, "w") as f:
        json.dump({**results, "table": lines}, f, indent=2, default=str)
    print(f"\nwritten: {args.out}")
    if any(r.get("status") != "ok" for r in results.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
