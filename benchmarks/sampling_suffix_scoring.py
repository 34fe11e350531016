"""Suffix scoring, as filtered_sample does it: a "bad" and a "good" suffix scored after N
completions of one prompt, three ways side by side in one run, on our GPT-2 and on
transformers' with the same weights:

- naive: score_suffix_naive for each suffix, one full forward per text (2N forwards);
- two calls: score_suffix once per suffix, each running the prompt and every completion
  again (4 forwards);
- one pass: score_suffixes with both suffixes, the prompt once, the completions once, both
  suffixes after every completion in one batch (3 forwards).

    python benchmarks/sampling_suffix_scoring.py                       # CPU, the course model, N = 64 and 256
    python benchmarks/sampling_suffix_scoring.py --device cuda --model gpt2-124m --out suffix.json

Models: ``course`` (mlab_tfs.assets.course_model_path(): 6 layers, width 256, vocabulary
4,096, 256 positions; its own tokenizer gives the suffixes " -- and that was bad" and
" -- and that was good" and the prompt), ``gpt2-124m`` (GPT-2 small's shape, random weights,
1,024 positions), ``small`` (4 layers, width 256, vocabulary 5,000, random weights) or
``tiny`` (2 layers, width 32, vocabulary 97: the tests' smoke run). The
random models' prompt and suffixes are random ids of the given lengths. Completions are
random ids, lengths drawn from [completion_len / 2, completion_len].

Before timing, the two fast paths are checked against naive (fp32; max |difference| under
1e-4, else the run stops). Timings are wall-clock medians of --repeats rounds (naive
scoring, the slow one, in --naive-repeats of them, the check's own naive run being the first);
each round times the paths one after the other, so that load from other processes on a shared machine falls on all three. On the CPU, torch uses --threads threads (OMP_NUM_THREADS is
set to the same number before torch starts).
"""

from __future__ import annotations

import argparse
import os
import sys

if __name__ == "__main__":  # the thread count, before torch is imported
    _threads = next((sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == "--threads"), "2")
    os.environ.setdefault("OMP_NUM_THREADS", _threads)

import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from _common import Results, describe, log, require_cuda  # noqa: E402

BAD, GOOD = " -- and that was bad", " -- and that was good"
PROMPT = ("ROMEO:\nBut, soft! what light through yonder window breaks? It is the east, and Juliet is the sun. "
          "Arise, fair sun, and kill the envious moon, who is already sick and pale with grief, that thou her "
          "maid art far more fair than she: be not her maid, since she is envious; her vestal livery is but "
          "sick and green and none but fools do wear it; cast it off. It is my lady, O, it is my love! O, that "
          "she knew she were! She speaks yet she says nothing: what of that? Her eye discourses; I will answer "
          "it. I am too bold, 'tis not to me she speaks: two of the fairest stars in all the heaven, having some "
          "business, do entreat her eyes to twinkle in their spheres till they return.")
RANDOM_SHAPES = {"gpt2-124m": dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024),
                 "small": dict(n_layer=4, n_embd=256, n_head=4, vocab_size=5000, n_positions=1024),
                 "tiny": dict(n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_positions=64)}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed_rounds(fns: dict, repeats: int, device: str, fewer: dict[str, int] | None = None) -> dict[str, list[float]]:
    """Seconds of each function in each of `repeats` rounds, the functions in turn in each
    round; a function named in `fewer` only in that many rounds (the first ones)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(repeats):
        for name, fn in fns.items():
            if i >= (fewer or {}).get(name, repeats):
                continue
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def load_models(name: str, device: str, suffix_len: int, prompt_len: int | None):
    """(models, prompt ids, [bad, good] suffix ids, shape facts) for --model."""
    from mlab_tfs.gpt2 import GPT2LMHeadModel
    from mlab_tfs.testing.tiny import gpt2_checkpoint, hf_gpt2

    if name == "course":
        import transformers

        from mlab_tfs.assets import course_model_path
        from mlab_tfs.tokenizers import ByteLevelBPETokenizer

        folder = course_model_path()
        if not (folder / "model.safetensors").exists():
            raise SystemExit(f"sampling_suffix_scoring.py: the course model is not at {folder}; use --model small")
        tok = ByteLevelBPETokenizer.from_pretrained(folder)
        models = {"ours": GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32).eval(),
                  "transformers": transformers.GPT2LMHeadModel.from_pretrained(
                      folder, dtype=torch.float32, attn_implementation="eager").eval()}
        prompt = torch.tensor(tok.encode(PROMPT)[: prompt_len or 128])
        suffixes = [torch.tensor(tok.encode(BAD)), torch.tensor(tok.encode(GOOD))]
        shape = {k: getattr(models["ours"].config, k) for k in ("n_layer", "n_embd", "n_head", "vocab_size",
                                                                  "n_positions")}
        weights = f"the course model ({folder.name}, trained)"
    else:
        shape = RANDOM_SHAPES[name]
        with tempfile.TemporaryDirectory() as folder:
            gpt2_checkpoint(folder, "base", seed=0, **shape)
            models = {"ours": GPT2LMHeadModel.from_pretrained(folder).eval(), "transformers": hf_gpt2(folder)}
        g = torch.Generator().manual_seed(0)
        V = shape["vocab_size"]
        prompt = torch.randint(0, V, (prompt_len or 256,), generator=g)
        suffixes = [torch.randint(0, V, (suffix_len,), generator=g), torch.randint(0, V, (suffix_len + 1,),
                                                                                   generator=g)]
        weights = f"GPT-2 {name} shape, random weights"
    models = {k: m.to(device) for k, m in models.items()}
    return models, prompt.to(device), [s.to(device) for s in suffixes], shape, weights


def main() -> None:
    from mlab_tfs.sampling import score_suffix, score_suffix_naive, score_suffixes

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, nargs="+", default=[64, 256], help="numbers of completions")
    parser.add_argument("--model", default="course", choices=["course", *RANDOM_SHAPES])
    parser.add_argument("--prompt-len", type=int, default=None,
                        help="prompt tokens (default: 128 for the course model, 256 for the random ones)")
    parser.add_argument("--completion-len", type=int, default=32, help="longest completion (others are shorter)")
    parser.add_argument("--suffix-len", type=int, default=7,
                        help='random models: the bad suffix\'s length (the good one is one longer); '
                             '" -- and that was bad" is 7 GPT-2 tokens')
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--naive-repeats", type=int, default=None,
                        help="rounds in which naive scoring is timed too (default: all); it is the slow one")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.device == "cuda":
        require_cuda("sampling_suffix_scoring.py --device cuda")
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 for the 1e-4 check
    else:
        torch.set_num_threads(args.threads)

    models, prompt, suffixes, shape, weights = load_models(args.model, args.device, args.suffix_len, args.prompt_len)
    V = shape["vocab_size"]
    res = Results(args.out, "suffix", model=args.model, weights=weights, shape=shape, prompt_len=len(prompt),
                  completion_len=args.completion_len, suffix_lens=[len(s) for s in suffixes], repeats=args.repeats,
                  naive_repeats=args.naive_repeats or args.repeats,
                  device=args.device, omp_num_threads=os.environ.get("OMP_NUM_THREADS"))
    log(f"{describe(res.data['environment'])}; {weights} {shape}; prompt {len(prompt)} tokens, completions up to "
        f"{args.completion_len}, suffixes {[len(s) for s in suffixes]}; median of {args.repeats} rounds")
    with torch.no_grad():
        for n in args.n:
            g = torch.Generator().manual_seed(n)
            lengths = torch.randint(args.completion_len // 2, args.completion_len + 1, (n,), generator=g).tolist()
            completions = [torch.randint(0, V, (k,), generator=g).to(args.device) for k in lengths]
            paths = {
                "naive": lambda m: torch.stack([score_suffix_naive(m, prompt, completions, s) for s in suffixes]),
                "two_calls": lambda m: torch.stack([score_suffix(m, prompt, completions, s) for s in suffixes]),
                "one_pass": lambda m: score_suffixes(m, prompt, completions, suffixes),
            }
            for name, model in models.items():
                log(f"N={n}: {name} ...")
                sync(args.device)
                t0 = time.perf_counter()
                ref = paths["naive"](model)
                sync(args.device)
                first_naive = time.perf_counter() - t0  # the check's naive run counts as its first round
                diffs = {p: float((paths[p](model) - ref).abs().max()) for p in ("two_calls", "one_pass")}
                if not max(diffs.values()) < 1e-4:
                    raise SystemExit(f"{name}, N={n}: a fast path disagrees with naive scoring: {diffs}")
                times = timed_rounds({p: (lambda p=p: paths[p](model)) for p in paths}, args.repeats, args.device,
                                     fewer={"naive": (args.naive_repeats or args.repeats) - 1})
                times["naive"].insert(0, first_naive)
                t = {p: statistics.median(ts) for p, ts in times.items()}
                res.add(n=n, model=name, naive_s=t["naive"], two_calls_s=t["two_calls"], one_pass_s=t["one_pass"],
                        speedup=t["naive"] / t["one_pass"], one_pass_vs_two_calls=t["two_calls"] / t["one_pass"],
                        max_abs_diff=max(diffs.values()), times_s=times, load_average=os.getloadavg())
    res.done()
    print(f"\n{describe(res.data['environment'])}; {weights}")
    print(f"{'N':>4} {'model':<14}{'naive (s)':>11}{'two calls (s)':>15}{'one pass (s)':>14}"
          f"{'vs naive':>10}{'vs two calls':>14}{'max |diff|':>12}")
    for r in res.data["rows"]:
        print(f"{r['n']:>4} {r['model']:<14}{r['naive_s']:>11.3f}{r['two_calls_s']:>15.3f}{r['one_pass_s']:>14.3f}"
              f"{r['speedup']:>9.1f}x{r['one_pass_vs_two_calls']:>13.2f}x{r['max_abs_diff']:>12.2g}")


if __name__ == "__main__":
    main()
