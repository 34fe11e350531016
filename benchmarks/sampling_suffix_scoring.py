"""Suffix scoring at N = 64: the shared-prompt path (score_suffix) against naive scoring
(score_suffix_naive, one full forward per completion), side by side in one run, on our GPT-2
and on transformers' with the same random weights.

    python benchmarks/sampling_suffix_scoring.py            # GPT-2 small's shape, random weights
    python benchmarks/sampling_suffix_scoring.py --small    # a quicker, smaller model

Both paths are checked equal (1e-4 here: larger model, longer sums) before timing. Timings are
wall-clock medians of --repeats runs; on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch

from mlab_tfs.gpt2 import GPT2LMHeadModel
from mlab_tfs.sampling import score_suffix, score_suffix_naive
from mlab_tfs.testing.tiny import gpt2_checkpoint, hf_gpt2


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=64, help="number of completions")
    parser.add_argument("--prompt-len", type=int, default=256)
    parser.add_argument("--completion-len", type=int, default=32, help="longest completion (others are shorter)")
    parser.add_argument("--suffix-len", type=int, default=7, help='" -- and that was bad" is 7 GPT-2 tokens')
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="4 layers, width 256, vocabulary 5000")
    args = parser.parse_args()

    shape = (dict(n_layer=4, n_embd=256, n_head=4, vocab_size=5000) if args.small
             else dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257))
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    V = shape["vocab_size"]
    prompt = torch.randint(0, V, (args.prompt_len,), generator=g)
    lengths = torch.randint(args.completion_len // 2, args.completion_len + 1, (args.n,), generator=g).tolist()
    completions = [torch.randint(0, V, (n,), generator=g) for n in lengths]
    suffix = torch.randint(0, V, (args.suffix_len,), generator=g)

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads")
    print(f"model: GPT-2 {shape}, random weights; N={args.n}, prompt {args.prompt_len} tokens, completions "
          f"{min(lengths)}-{max(lengths)} tokens, suffix {args.suffix_len} tokens; median of {args.repeats}\n")
    with tempfile.TemporaryDirectory() as folder:
        gpt2_checkpoint(folder, "base", seed=0, n_positions=1024, **shape)
        models = {"ours": GPT2LMHeadModel.from_pretrained(folder), "transformers": hf_gpt2(folder)}
        print(f"{'model':<14}{'naive (s)':>12}{'shared prompt (s)':>20}{'speed-up':>10}{'max |diff|':>12}")
        with torch.no_grad():
            for name, model in models.items():
                fast = score_suffix(model, prompt, completions, suffix)
                slow = score_suffix_naive(model, prompt, completions, suffix)
                diff = float((fast - slow).abs().max())
                assert diff < 1e-4, f"{name}: the two paths disagree by {diff}"
                t_naive = timed(lambda: score_suffix_naive(model, prompt, completions, suffix), args.repeats)
                t_fast = timed(lambda: score_suffix(model, prompt, completions, suffix), args.repeats)
                print(f"{name:<14}{t_naive:>12.3f}{t_fast:>20.3f}{t_naive / t_fast:>9.1f}x{diff:>12.2g}")


if __name__ == "__main__":
    main()
