"""Suffix scoring: the shared-prompt path (score_suffix) against naive scoring
(score_suffix_naive, one full forward per completion), side by side in one run, on our GPT-2
and on transformers' with the same random weights.

    python benchmarks/sampling_suffix_scoring.py                      # CPU, N = 64
    python benchmarks/sampling_suffix_scoring.py --device cuda -n 64 256 --out suffix.json
    python benchmarks/sampling_suffix_scoring.py --small              # a quicker, smaller model

Both paths are checked equal (1e-4 here: larger model, longer sums; fp32 on either device)
before timing. Timings are wall-clock medians of --repeats runs; on a shared machine they
are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from _common import Results, describe, log, require_cuda


def timed(fn, repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    from mlab_tfs.gpt2 import GPT2LMHeadModel
    from mlab_tfs.sampling import score_suffix, score_suffix_naive
    from mlab_tfs.testing.tiny import gpt2_checkpoint, hf_gpt2

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, nargs="+", default=[64], help="numbers of completions")
    parser.add_argument("--prompt-len", type=int, default=256)
    parser.add_argument("--completion-len", type=int, default=32, help="longest completion (others are shorter)")
    parser.add_argument("--suffix-len", type=int, default=7, help='" -- and that was bad" is 7 GPT-2 tokens')
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--small", action="store_true", help="4 layers, width 256, vocabulary 5000")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.device == "cuda":
        require_cuda("sampling_suffix_scoring.py --device cuda")
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 for the 1e-4 check

    shape = (dict(n_layer=4, n_embd=256, n_head=4, vocab_size=5000) if args.small
             else dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257))
    res = Results(args.out, "suffix", shape=shape, prompt_len=args.prompt_len, completion_len=args.completion_len,
                  suffix_len=args.suffix_len, repeats=args.repeats, device=args.device)
    log(f"{describe(res.data['environment'])}; model GPT-2 {shape}, random weights; prompt {args.prompt_len} "
        f"tokens, completions up to {args.completion_len}, suffix {args.suffix_len}; median of {args.repeats}")
    V = shape["vocab_size"]
    with tempfile.TemporaryDirectory() as folder:
        gpt2_checkpoint(folder, "base", seed=0, n_positions=1024, **shape)
        models = {"ours": GPT2LMHeadModel.from_pretrained(folder).to(args.device),
                  "transformers": hf_gpt2(folder).to(args.device)}
    with torch.no_grad():
        for n in args.n:
            g = torch.Generator().manual_seed(n)
            prompt = torch.randint(0, V, (args.prompt_len,), generator=g).to(args.device)
            lengths = torch.randint(args.completion_len // 2, args.completion_len + 1, (n,), generator=g).tolist()
            completions = [torch.randint(0, V, (k,), generator=g).to(args.device) for k in lengths]
            suffix = torch.randint(0, V, (args.suffix_len,), generator=g).to(args.device)
            for name, model in models.items():
                log(f"N={n}: {name} ...")
                fast = score_suffix(model, prompt, completions, suffix)
                slow = score_suffix_naive(model, prompt, completions, suffix)
                diff = float((fast - slow).abs().max())
                if not diff < 1e-4:
                    raise SystemExit(f"{name}, N={n}: the two paths disagree by {diff}")
                t_naive = timed(lambda: score_suffix_naive(model, prompt, completions, suffix), args.repeats, args.device)
                t_fast = timed(lambda: score_suffix(model, prompt, completions, suffix), args.repeats, args.device)
                res.add(n=n, model=name, naive_s=t_naive, shared_s=t_fast, speedup=t_naive / t_fast, max_abs_diff=diff)
    res.done()
    print(f"\n{describe(res.data['environment'])}")
    print(f"{'N':>4} {'model':<14}{'naive (s)':>12}{'shared prompt (s)':>20}{'speed-up':>10}{'max |diff|':>12}")
    for r in res.data["rows"]:
        print(f"{r['n']:>4} {r['model']:<14}{r['naive_s']:>12.3f}{r['shared_s']:>20.3f}{r['speedup']:>9.1f}x"
              f"{r['max_abs_diff']:>12.2g}")


if __name__ == "__main__":
    main()
