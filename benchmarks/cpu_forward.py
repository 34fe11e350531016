"""Forward latency on a CPU like CI's (2 threads): our GPT-2 and BERT against transformers'
on the same small configs and random weights, inference (no_grad, eval).

    python benchmarks/cpu_forward.py --out cpu.json

Ours runs three ways: hand-written attention ("eager"), attn_implementation="sdpa", and
sdpa plus mlab_tfs.gpt2.fast.use_fused_ops (F.layer_norm / F.gelu for the hand-written
ones); transformers runs eager and sdpa (its default). Outputs are checked equal (1e-4 of their scale,
fp32) before timing. Each figure is the median of --repeats calls after 2 warm-ups.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from _common import Results, describe, log

GPT2_SHAPE = dict(n_layer=6, n_embd=384, n_head=6, vocab_size=50257, n_positions=512)
BERT_SHAPE = dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=12, intermediate_size=1536,
                  vocab_size=30522, max_position_embeddings=512)  # all-MiniLM-L6-v2's shape


def median_ms(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def models(kind: str, folder: str):
    """name -> (model, output getter): ours three ways, transformers two ways, same weights."""
    from mlab_tfs.gpt2.fast import use_fused_ops
    from mlab_tfs.testing import tiny

    if kind == "gpt2":
        from mlab_tfs.gpt2 import GPT2LMHeadModel as Ours

        load_hf = lambda attn: tiny.hf_gpt2(folder, attn_implementation=attn)  # noqa: E731
        out = lambda o: o.logits  # noqa: E731
    else:
        from mlab_tfs.bert.solution import BertModel as Ours

        load_hf = lambda attn: tiny.hf_bert(folder, attn_implementation=attn)  # noqa: E731
        out = lambda o: o.last_hidden_state  # noqa: E731
    result = {
        "ours (eager attention)": Ours.from_pretrained(folder, attn_implementation="eager").eval(),
        "ours (sdpa)": Ours.from_pretrained(folder, attn_implementation="sdpa").eval(),
        "ours (sdpa + fused ops)": use_fused_ops(Ours.from_pretrained(folder, attn_implementation="sdpa").eval()),
        "transformers (eager)": load_hf("eager"),
        "transformers (sdpa)": load_hf("sdpa"),
    }
    return result, out


def main() -> None:
    from mlab_tfs.testing import tiny

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--shapes", default="1x128,8x128", help="batch x tokens, comma-separated")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    res = Results(args.out, "cpu", gpt2_shape=GPT2_SHAPE, bert_shape=BERT_SHAPE, repeats=args.repeats)
    log(describe(res.data["environment"]))
    with torch.no_grad(), tempfile.TemporaryDirectory() as root:
        for kind in ("gpt2", "bert"):
            folder = f"{root}/{kind}"
            if kind == "gpt2":
                tiny.gpt2_checkpoint(folder, "base", seed=0, **GPT2_SHAPE)
            else:
                tiny.bert_checkpoint(folder, "base", seed=0, **BERT_SHAPE)
            named, out = models(kind, folder)
            V = GPT2_SHAPE["vocab_size"] if kind == "gpt2" else BERT_SHAPE["vocab_size"]
            for B, T in shapes:
                g = torch.Generator().manual_seed(B * T)
                ids = torch.randint(1, V, (B, T), generator=g)
                kwargs = {}
                if kind == "bert":  # right padding, as BERT tokenizers pad: the last quarter of odd rows
                    mask = torch.ones(B, T, dtype=torch.long)
                    mask[1::2, 3 * T // 4 :] = 0
                    kwargs = dict(attention_mask=mask, token_type_ids=torch.zeros_like(ids))
                ref = None
                times = {}
                for name, model in named.items():
                    y = out(model(ids, **kwargs))
                    if ref is None:
                        ref = y
                    keep = kwargs["attention_mask"].bool() if kind == "bert" else slice(None)
                    diff = float((y[keep] - ref[keep]).abs().max())
                    # fp32 through 6 layers at this width: float rounding stays near 1e-5 of the scale.
                    if diff > 1e-4 * max(1.0, float(ref[keep].abs().max())):
                        raise SystemExit(f"{kind} {B}x{T}: {name} differs from ours by {diff}")
                    times[name] = median_ms(lambda: model(ids, **kwargs), args.repeats)
                    log(f"{kind} {B}x{T} {name}: {times[name]:.1f} ms")
                best = min((t, n) for n, t in times.items() if n.startswith("ours"))
                hf_default = times["transformers (sdpa)"]
                res.add(model=kind, batch=B, tokens=T, ms=times, best_ours=best[1],
                        best_ours_over_transformers_sdpa=best[0] / hf_default,
                        ours_sdpa_over_transformers_sdpa=times["ours (sdpa)"] / hf_default)
    res.done()
    print(f"\n{describe(res.data['environment'])}; forward latency, ms (median of {args.repeats})")
    names = list(res.data["rows"][0]["ms"])
    print(f"{'model':<6}{'shape':>8} " + " ".join(f"{n[:24]:>24}" for n in names) + f"{'best ours / hf sdpa':>21}")
    for r in res.data["rows"]:
        print(f"{r['model']:<6}{str(r['batch']) + 'x' + str(r['tokens']):>8} "
              + " ".join(f"{r['ms'][n]:>24.1f}" for n in names) + f"{r['best_ours_over_transformers_sdpa']:>20.2f}x")


if __name__ == "__main__":
    main()
