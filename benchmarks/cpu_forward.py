"""Forward latency on a small CPU (CI's 2 cores): each model part's default path against
transformers' default, on the same seeded random weights at realistic small shapes,
inference (no_grad, eval).

    python benchmarks/cpu_forward.py --out cpu.json
    python benchmarks/cpu_forward.py --models deberta,llama --profile   # where the time goes

Models (random weights written by transformers' ``save_pretrained``, which both sides load):

  gpt2     GPT2LMHeadModel, 6 layers, width 384, 6 heads, vocabulary 50,257 (logits)
  bert     BertModel in all-MiniLM-L6-v2's shape: 6 layers, width 384, 12 heads, MLP 1,536
  deberta  DebertaV2Model in DeBERTa-v3-xsmall's shape (width 384, 6 heads, MLP 1,536,
           vocabulary 128,100, 256 log position buckets, both relative terms, shared keys,
           normed table) with 6 of its 12 layers
  llama    LlamaForCausalLM in SmolLM-135M's shape (width 576, 9 heads, 3 key/value heads,
           MLP 1,536, vocabulary 49,152) with 6 of its 30 layers (logits)
  qwen3    Qwen3ForCausalLM, the same shape plus QK-norm, head_dim 64 (logits)

BERT and DeBERTa get right-padded batches (the last quarter of odd rows is padding); the
causal LMs get unpadded ids. "ours (default)" is ``from_pretrained(folder)`` with no
arguments; "transformers (default)" is transformers' ``from_pretrained(folder)`` with none
but fp32 (its attention implementation, sdpa where the model has one, is recorded).
``--variants all`` adds both sides' eager attention. Outputs are checked equal (1e-4 of their
scale, fp32; padding positions left out) before anything is timed. The calls alternate
between the variants, so that a load that comes and goes on a shared machine hits all of
them alike; each figure is the median of --repeats calls after 2 warm-ups (the fastest call
is recorded too: on a shared machine it is the closest to an idle machine's time).

Threads: torch.set_num_threads(--threads), by default the number of physical cores this
process may run on (hyper-threads share a core's vector units, and matmul threads on both
siblings of a core slow each other down). The count is recorded in the JSON.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from _common import Results, describe, log

GPT2_SHAPE = dict(n_layer=6, n_embd=384, n_head=6, vocab_size=50257, n_positions=512)
BERT_SHAPE = dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=12, intermediate_size=1536,
                  vocab_size=30522, max_position_embeddings=512)  # all-MiniLM-L6-v2's shape
# microsoft/deberta-v3-xsmall's config.json, 6 of its 12 layers.
DEBERTA_SHAPE = dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=6, intermediate_size=1536,
                     vocab_size=128100, max_position_embeddings=512, position_buckets=256, max_relative_positions=-1,
                     relative_attention=True, pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm",
                     position_biased_input=False, type_vocab_size=0, legacy=False, initializer_range=0.02)
# HuggingFaceTB/SmolLM-135M's shape, 6 of its 30 layers.
LLAMA_SHAPE = dict(num_hidden_layers=6, hidden_size=576, num_attention_heads=9, num_key_value_heads=3,
                   intermediate_size=1536, vocab_size=49152, max_position_embeddings=2048, initializer_range=0.02,
                   rope_parameters=dict(rope_type="default", rope_theta=10000.0))
QWEN3_SHAPE = dict(LLAMA_SHAPE, num_attention_heads=8, num_key_value_heads=4, head_dim=64)
SHAPES = dict(gpt2=GPT2_SHAPE, bert=BERT_SHAPE, deberta=DEBERTA_SHAPE, llama=LLAMA_SHAPE, qwen3=QWEN3_SHAPE)
PADDED = ("bert", "deberta")  # encoders: right-padded batches with an attention mask


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (distinct (package, core id)
    pairs in /proc/cpuinfo); os.cpu_count() where that cannot be read."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores, cpu, package = set(), None, "0"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (s.strip() for s in line.partition(":"))
            if key == "processor":
                cpu = int(value)
            elif key == "physical id":
                package = value
            elif key == "core id" and cpu in allowed:
                cores.add((package, value))
    except (OSError, ValueError):
        cores = set()
    return len(cores) or len(allowed) or 1


def write_checkpoint(kind: str, folder: str) -> None:
    """A seeded random transformers model of kind's shape, saved to folder."""
    import transformers

    from mlab_tfs.testing import tiny

    if kind == "gpt2":
        tiny.gpt2_checkpoint(folder, "base", seed=0, **GPT2_SHAPE)
        return
    if kind == "bert":
        tiny.bert_checkpoint(folder, "base", seed=0, **BERT_SHAPE)
        return
    if kind in ("llama", "qwen3"):
        name = "llama/gqa" if kind == "llama" else "qwen3/qk_norm"
        # The tiny configs' other fields (pad id, eps...) with this shape on top.
        tiny.llama_checkpoint(folder, name, seed=0, **SHAPES[kind])
        return
    torch.manual_seed(0)
    model = transformers.DebertaV2Model(transformers.DebertaV2Config(**DEBERTA_SHAPE))
    tiny.randomize_(model, 0)
    model.save_pretrained(folder)


def load(kind: str, folder: str, variants: str):
    """name -> model (eval), and the output getter. Defaults first."""
    import transformers

    if kind == "gpt2":
        from mlab_tfs.gpt2 import GPT2LMHeadModel as Ours

        Hf = transformers.GPT2LMHeadModel
    elif kind == "bert":
        from mlab_tfs.bert import BertModel as Ours

        Hf = transformers.BertModel
    elif kind == "deberta":
        from mlab_tfs.deberta import DebertaV2Model as Ours

        Hf = transformers.DebertaV2Model
    else:
        from mlab_tfs.llama import LlamaForCausalLM as Ours

        Hf = transformers.LlamaForCausalLM if kind == "llama" else transformers.Qwen3ForCausalLM
    named = {"ours (default)": Ours.from_pretrained(folder).eval(),
             "transformers (default)": Hf.from_pretrained(folder, dtype=torch.float32).eval()}
    if variants == "all" and kind != "deberta":  # DeBERTa has one attention path on both sides
        named["ours (eager attention)"] = Ours.from_pretrained(folder, attn_implementation="eager").eval()
        named["transformers (eager)"] = Hf.from_pretrained(folder, dtype=torch.float32,
                                                           attn_implementation="eager").eval()
    out = (lambda o: o.logits) if kind in ("gpt2", "llama", "qwen3") else (lambda o: o.last_hidden_state)
    return named, out


def inputs(kind: str, B: int, T: int) -> dict:
    g = torch.Generator().manual_seed(B * T)
    ids = torch.randint(1, SHAPES[kind]["vocab_size"], (B, T), generator=g)
    if kind not in PADDED:
        return dict(input_ids=ids)
    mask = torch.ones(B, T, dtype=torch.long)  # right padding, as BERT tokenizers pad
    mask[1::2, 3 * T // 4:] = 0
    kwargs = dict(input_ids=ids.masked_fill(mask == 0, 0), attention_mask=mask)
    if kind == "bert":
        kwargs["token_type_ids"] = torch.zeros_like(ids)
    return kwargs


def check_equal(kind: str, B: int, T: int, named: dict, out, kwargs: dict) -> dict[str, float]:
    """Every variant's output against ours (default); SystemExit if one differs."""
    keep = kwargs["attention_mask"].bool() if "attention_mask" in kwargs else slice(None)
    ref = out(named["ours (default)"](**kwargs))[keep]
    diffs = {}
    for name, model in named.items():
        y = out(model(**kwargs))[keep]
        diffs[name] = float((y - ref).abs().max())
        # fp32 through 6 layers at this width: float rounding stays near 1e-5 of the scale.
        if diffs[name] > 1e-4 * max(1.0, float(ref.abs().max())):
            raise SystemExit(f"{kind} {B}x{T}: {name} differs from ours (default) by {diffs[name]}")
    return diffs


def timed_ms(named: dict, kwargs: dict, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """(median, fastest) ms per variant; the variants take turns, in an order that alternates.
    On a machine shared with other work the fastest call is the closest to an idle machine's."""
    names = list(named)
    for _ in range(2):
        for n in names:
            named[n](**kwargs)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in (names if r % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            named[n](**kwargs)
            times[n].append(time.perf_counter() - t)
    return ({n: 1e3 * statistics.median(ts) for n, ts in times.items()},
            {n: 1e3 * min(ts) for n, ts in times.items()})


def profile(kind: str, B: int, T: int, named: dict, kwargs: dict, rows: int) -> None:
    """torch.profiler's operator table (self CPU time) for each default side, 3 calls."""
    from torch.profiler import ProfilerActivity, profile as torch_profile, record_function

    for name in ("ours (default)", "transformers (default)"):
        model = named[name]
        model(**kwargs)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                with record_function(f"{kind} {name}"):
                    model(**kwargs)
        print(f"\n--- {kind} {B}x{T} {name}: 3 calls")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=physical_cores(),
                   help="torch.set_num_threads; default: this machine's physical cores (%(default)s)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--shapes", default="1x128,8x128", help="batch x tokens, comma-separated")
    p.add_argument("--models", default=",".join(SHAPES), help=f"comma-separated, of {list(SHAPES)}")
    p.add_argument("--variants", default="default", choices=("default", "all"),
                   help="all: also both sides' eager attention")
    p.add_argument("--profile", action="store_true", help="print torch.profiler tables (first shape) and exit")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    kinds = args.models.split(",")
    for k in kinds:
        if k not in SHAPES:
            raise SystemExit(f"--models: unknown model {k!r}; expected some of {list(SHAPES)}")
    for flag, value in (("--threads", args.threads), ("--repeats", args.repeats)):
        if value < 1:
            raise SystemExit(f"{flag} must be an int >= 1, got {value}")
    try:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    except ValueError:
        shapes = []
    if not shapes or any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise SystemExit(f"--shapes must be BATCHxTOKENS, comma-separated, each >= 1 (e.g. 1x128,8x128), "
                         f"got {args.shapes!r}")
    torch.set_num_threads(args.threads)
    res = Results(args.out, "cpu", threads=torch.get_num_threads(), physical_cores=physical_cores(),
                  load_average=os.getloadavg(), repeats=args.repeats,
                  shapes={k: SHAPES[k] for k in kinds})
    log(describe(res.data["environment"]) + f"; load average {os.getloadavg()[0]:.2f}")
    with torch.no_grad(), tempfile.TemporaryDirectory() as root:
        for kind in kinds:
            folder = f"{root}/{kind}"
            write_checkpoint(kind, folder)
            named, out = load(kind, folder, args.variants)
            attn = dict(ours=named["ours (default)"].config.attn_implementation
                        if hasattr(named["ours (default)"].config, "attn_implementation") else "eager",
                        transformers=named["transformers (default)"].config._attn_implementation)
            for B, T in shapes:
                kwargs = inputs(kind, B, T)
                diffs = check_equal(kind, B, T, named, out, kwargs)
                if args.profile:
                    profile(kind, B, T, named, kwargs, rows=25)
                    break
                ms, fastest = timed_ms(named, kwargs, args.repeats)
                for n, t in ms.items():
                    log(f"{kind} {B}x{T} {n}: {t:.1f} ms (fastest {fastest[n]:.1f})")
                best = min((t, n) for n, t in ms.items() if n.startswith("ours"))
                res.add(model=kind, batch=B, tokens=T, ms=ms, ms_fastest=fastest, attn_implementation=attn,
                        max_abs_diff=diffs, fastest_ours_over_transformers=fastest["ours (default)"]
                        / fastest["transformers (default)"],
                        ours_over_transformers=ms["ours (default)"] / ms["transformers (default)"],
                        best_ours=best[1], best_ours_over_transformers=best[0] / ms["transformers (default)"],
                        load_average=os.getloadavg()[0])
    if args.profile:
        return
    res.set(load_average_end=os.getloadavg())
    res.done()
    print(f"\n{describe(res.data['environment'])}; forward latency, ms (median of {args.repeats}); "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'model':<8}{'shape':>7}{'ours (default)':>16}{'transformers (default)':>24}{'ours / transformers':>21}"
          f"{'fastest calls':>15}")
    for r in res.data["rows"]:
        print(f"{r['model']:<8}{str(r['batch']) + 'x' + str(r['tokens']):>7}{r['ms']['ours (default)']:>16.1f}"
              f"{r['ms']['transformers (default)']:>24.1f}{r['ours_over_transformers']:>20.2f}x"
              f"{r['fastest_ours_over_transformers']:>14.2f}x")


if __name__ == "__main__":
    main()
