"""Greedy generation with GPT-2 124M in bf16: our sampler on our model against
transformers' generate on its model, same random weights, same prompts.

    python benchmarks/gpt2_generate.py --out generate.json        # on a CUDA machine

For each batch size (default 1, 8, 64; prompts of 256 random tokens, 256 new tokens,
eos off so every row runs to the end):

- transformers: ``model.generate(do_sample=False)`` with its default (dynamic) cache;
- transformers, static compiled: ``model.generate(..., cache_implementation="static")``, its
  own fast path: on a GPU generate compiles the decode forward itself
  (``_valid_auto_compile_criteria``, ``get_compiled_call``: torch.compile with its
  CompileConfig, mode="reduce-overhead"); a warm-up call of the same shapes compiles and
  captures it before timing, and the run stops if no compiled call was made;
- ours, generate: ``mlab_tfs.sampling.generate``, the eager loop over the model's dynamic KV cache;
- ours, generate_fast: ``mlab_tfs.sampling.fast.generate_fast``, a static KV cache and a
  decode step compiled with torch.compile(mode="reduce-overhead") (CUDA graphs);
- ours, generate_fast, padded vocabulary (fast_pad): the same on a copy of our model whose
  vocabulary mlab_tfs.gpt2.fast.pad_vocab padded to 50,304 rows (same logits; the head's
  matrix without a ragged edge);
- ours, generate_fast with kernels="triton" (triton, triton_pad): the decode step's forward
  in the hand-written Triton kernels of mlab_tfs.decode_kernels (six per block).

tokens/s counts new tokens (batch x 256) over the whole call, prefill included; µs/token
(generate_fast and transformers' static path) is the same call's time over its 256 new
tokens (so the prefill, about 1% of it, is included), and MBU the bandwidth use: the
floor's bytes per step over that time over the copy bandwidth. Before any
timing, the greedy outputs are checked: where generate_fast's (or transformers') tokens
first differ from our eager generate's in a row, the token it chose must be a greedy
choice of the eager model within bf16 rounding (its logit within --tie-tol of the
largest); otherwise the run stops. The floor is the decode step's memory traffic, bytes
of the weights plus the KV cache it must read (average length), over the card's
measured device-to-device copy bandwidth.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import Results, copy_bandwidth_gbs, describe, log, require_cuda


def build_models(n_positions: int, device: str = "cuda", small: bool = False):
    import transformers

    from mlab_tfs.gpt2 import GPT2Config, GPT2LMHeadModel, from_hf_state_dict

    shape = dict(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, bos_token_id=0, eos_token_id=0) if small else {}
    config = transformers.GPT2Config(n_positions=n_positions, **shape)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    cfg = GPT2Config.from_dict({**config.to_dict(), "attn_implementation": "sdpa"})
    ours = GPT2LMHeadModel(cfg)
    ours.load_state_dict(from_hf_state_dict(hf.state_dict(), cfg))
    dtype = torch.float32 if small else torch.bfloat16  # the CPU check: Triton's interpreter has no bfloat16
    hf = hf.to(device=device, dtype=dtype)
    ours = ours.to(device=device, dtype=dtype).eval()
    hf.generation_config.eos_token_id = None  # run every row to max_new_tokens
    hf.generation_config.pad_token_id = 0
    return hf, ours


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        _sync()
        t = time.perf_counter()
        out = fn()
        _sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


@torch.no_grad()
def check_greedy(name: str, model, ids: torch.Tensor, reference: torch.Tensor, got: torch.Tensor, tol: float) -> dict:
    """Fail unless every row of `got` follows `reference` (our eager generate) up to a bf16 tie.

    At the first column where a row differs, both rows share the text before it; the token
    `got` chose there must have an eager logit within tol of the eager model's largest.
    After that the two texts differ and are not compared.
    """
    T = ids.shape[1]
    if got.shape != reference.shape:
        raise SystemExit(f"{name}: output shape {tuple(got.shape)} differs from eager generate's {tuple(reference.shape)}")
    same_prefix, worst = [], 0.0
    for b in range(got.shape[0]):
        diff = (got[b, T:] != reference[b, T:]).nonzero()
        if len(diff) == 0:
            same_prefix.append(got.shape[1] - T)
            continue
        d = T + int(diff[0])
        same_prefix.append(d - T)
        logits = model(reference[b : b + 1, :d]).logits[0, -1].float()
        gap = float(logits.max() - logits[got[b, d]])
        worst = max(worst, gap)
        if gap > tol:
            raise SystemExit(
                f"{name}: row {b} first differs from eager greedy decoding at new token {d - T}: it chose "
                f"{int(got[b, d])} whose eager logit is {gap:.3g} below the largest ({int(reference[b, d])}); "
                f"beyond bf16 tolerance {tol}. The fast path is wrong, not just rounded differently.")
    return dict(rows_identical=sum(n == got.shape[1] - T for n in same_prefix), rows=got.shape[0],
                mean_identical_new_tokens=statistics.mean(same_prefix), worst_tie_gap=worst)


def floor_tokens_per_s(model, batch: int, prompt: int, new: int, bandwidth_gbs: float) -> tuple[float, float]:
    """(tokens/s, bytes per step) if a decode step only had to read the weights and the KV cache once."""
    cfg = model.config
    weights = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "wpe" not in n)
    elem = model.lm_head.weight.element_size()
    avg_len = prompt + new / 2
    kv = 2 * cfg.n_layer * batch * cfg.n_embd * avg_len * elem  # keys and values, every layer
    step_bytes = weights + kv
    return batch / (step_bytes / (bandwidth_gbs * 1e9)), step_bytes


IMPLS = ("hf", "hf_static", "ours", "fast", "fast_pad", "triton", "triton_pad")
# generate_fast's rows: impl -> (result key suffix, padded vocabulary?, generate_fast's extra arguments)
FAST_ROWS = {"fast": ("", False, {}), "fast_pad": ("_pad", True, {}),
             "triton": ("_triton", False, {"kernels": "triton"}), "triton_pad": ("_triton_pad", True, {"kernels": "triton"})}


def per_token_us(t: float, new: int) -> float:
    """µs per new token: the whole call's time over its new tokens (the prefill included: one
    forward of the prompt, about 1% of a 256-token call; timing a shorter call instead would
    need other cache shapes, so another compile and capture)."""
    return t / new * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--prompt", type=int, default=256)
    p.add_argument("--new", type=int, default=256)
    p.add_argument("--impls", default="hf,hf_static,ours,fast,fast_pad", help=f"comma-separated, of {IMPLS}")
    p.add_argument("--repeats", type=int, default=1, help="timed runs of the eager generators (median)")
    p.add_argument("--fast-repeats", type=int, default=3, help="timed runs of generate_fast (median)")
    p.add_argument("--tie-tol", type=float, default=0.125,
                   help="largest eager-logit gap accepted where greedy tokens differ (bf16 rounding)")
    p.add_argument("--out", default=None)
    p.add_argument("--smoke", action="store_true", help="a 2-layer model on the CPU: checks the script, times nothing real")
    args = p.parse_args()
    if not args.smoke:
        require_cuda("gpt2_generate.py")
    device = "cpu" if args.smoke else "cuda"
    import transformers  # noqa: F401

    from mlab_tfs.sampling import generate
    from mlab_tfs.sampling.fast import generate_fast

    torch.backends.cuda.matmul.allow_tf32 = True
    hf, ours = build_models(max(1024, args.prompt + args.new), device, small=args.smoke)
    bw = copy_bandwidth_gbs() if device == "cuda" else 10.0
    res = Results(args.out, "generate", prompt=args.prompt, new=args.new, copy_bandwidth_gbs=bw,
                  tie_tol=args.tie_tol)
    log(f"{describe(res.data['environment'])}; device copy bandwidth {bw:.0f} GB/s")
    impls = args.impls.split(",")
    unknown = set(impls) - set(IMPLS)
    if unknown:
        raise SystemExit(f"unknown --impls {sorted(unknown)}; expected some of {IMPLS}")
    padded = None
    if "fast_pad" in impls or "triton_pad" in impls:  # the same weights, the vocabulary padded to a multiple of 64 (50,304 rows)
        import copy

        from mlab_tfs.gpt2.fast import pad_vocab

        padded = pad_vocab(copy.deepcopy(ours), 64)
    V = ours.config.vocab_size
    for B in (int(b) for b in args.batches.split(",")):
        g = torch.Generator().manual_seed(B)
        ids = torch.randint(0, V, (B, args.prompt), generator=g).to(device)
        mask = torch.ones_like(ids)
        floor, step_bytes = floor_tokens_per_s(ours, B, args.prompt, args.new, bw)
        row = dict(batch=B, floor_tokens_per_s=floor, bytes_per_step=step_bytes)
        res.set(current=row)

        # Our eager generate is the reference the others are checked against (it is always run).
        log(f"batch {B}: ours, generate (eager) ...")
        eager = lambda: generate(ours, ids, mask, max_new_tokens=args.new)  # noqa: E731
        generate(ours, ids, mask, max_new_tokens=4)  # warm-up
        t, reference = timed(eager, args.repeats)
        row["ours_generate_tokens_per_s"] = B * args.new / t

        for impl, (key, pad, extra) in FAST_ROWS.items():
            if impl not in impls:
                continue
            model = padded if pad else ours
            if extra and device == "cpu":  # --smoke: the kernels in Triton's interpreter, uncompiled
                extra = {**extra, "compile": False}
            label = "generate_fast" + (" (Triton kernels)" if extra else "") + (" (padded vocabulary)" if pad else "")
            log(f"batch {B}: ours, {label}: compiling and capturing ...")
            fast = lambda m=model, n=args.new, x=extra: generate_fast(m, ids, mask, max_new_tokens=n, **x)  # noqa: E731
            t0 = time.perf_counter()
            first = fast()
            _sync()
            row[f"fast{key}_first_call_s"] = time.perf_counter() - t0
            row[f"fast{key}_check"] = check_greedy(label, ours, ids, reference, first, args.tie_tol)
            log(f"batch {B}: {label} agrees with eager generate: {row[f'fast{key}_check']}")
            t, _ = timed(fast, args.fast_repeats)
            row[f"ours_fast{key}_tokens_per_s"] = B * args.new / t
            row[f"fast{key}_token_us"] = per_token_us(t, args.new)
            row[f"fast{key}_mbu"] = step_bytes / (row[f"fast{key}_token_us"] * 1e-6) / (bw * 1e9)
        if "hf" in impls:
            log(f"batch {B}: transformers generate ...")
            run_hf = lambda n: hf.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,  # noqa: E731
                                           do_sample=False, pad_token_id=0)
            run_hf(4)  # warm-up
            t, out = timed(lambda: run_hf(args.new), args.repeats)
            row["hf_tokens_per_s"] = B * args.new / t
            try:  # recorded, not fatal: it checks that both models hold the same weights, not our fast path
                row["hf_check"] = check_greedy("transformers generate", ours, ids, reference, out, args.tie_tol)
            except SystemExit as e:
                row["hf_check"] = f"MISMATCH: {e}"
                log(row["hf_check"])
        if "hf_static" in impls:
            log(f"batch {B}: transformers generate, static cache, compiled: compiling and capturing ...")
            run_static = lambda n: hf.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,  # noqa: E731
                                               do_sample=False, pad_token_id=0, cache_implementation="static")
            t0 = time.perf_counter()
            out = run_static(args.new)  # the warm-up: compiles and captures for these shapes
            _sync()
            row["hf_static_first_call_s"] = time.perf_counter() - t0
            row["hf_static_compiled"] = getattr(hf, "_compiled_call", None) is not None
            if device == "cuda" and not row["hf_static_compiled"]:  # on a CPU transformers does not compile
                raise SystemExit("transformers' generate(cache_implementation='static') did not compile its decode "
                                 "forward (no _compiled_call): the anchor would be its eager path")
            run_static(args.new)  # a second call: the CUDA graphs recorded, caches reused
            t, _ = timed(lambda: run_static(args.new), args.fast_repeats)
            row["hf_static_tokens_per_s"] = B * args.new / t
            row["hf_static_token_us"] = per_token_us(t, args.new)
            row["hf_static_mbu"] = step_bytes / (row["hf_static_token_us"] * 1e-6) / (bw * 1e9)
            try:  # recorded, not fatal, as transformers' plain generate
                row["hf_static_check"] = check_greedy("transformers generate (static, compiled)", ours, ids, reference,
                                                      out, args.tie_tol)
            except SystemExit as e:
                row["hf_static_check"] = f"MISMATCH: {e}"
                log(row["hf_static_check"])
        if "hf_tokens_per_s" in row:
            for k in ("ours_generate", "ours_fast"):
                if f"{k}_tokens_per_s" in row:
                    row[f"{k}_vs_hf"] = row[f"{k}_tokens_per_s"] / row["hf_tokens_per_s"]
        for key, _, _ in FAST_ROWS.values():
            if "hf_static_tokens_per_s" in row and f"ours_fast{key}_tokens_per_s" in row:
                row[f"ours_fast{key}_vs_hf_static"] = row[f"ours_fast{key}_tokens_per_s"] / row["hf_static_tokens_per_s"]
        if "ours_fast_tokens_per_s" in row:
            row["fast_of_floor"] = row["ours_fast_tokens_per_s"] / floor
        res.add(**row)
    res.set(current=None)
    res.done()
    print(f"\n{describe(res.data['environment'])}; copy bandwidth {bw:.0f} GB/s; prompt {args.prompt}, "
          f"{args.new} new tokens, greedy, {str(ours.dtype).replace('torch.', '')}")
    print("tokens/s (new tokens over the whole call); µs per new token and MBU of the decode loop")
    print(f"{'batch':>5} {'transformers':>13} {'hf static':>10} {'ours generate':>14} {'ours fast':>10} "
          f"{'fast/hf':>8} {'fast/static':>12} {'pad fast':>9} {'pad/static':>11} {'fast µs':>8} {'fast MBU':>9} {'static µs':>10} {'static MBU':>11} "
          f"{'floor':>9} {'triton':>9} {'tri/static':>11} {'tri µs':>7} {'tri MBU':>8} {'tri pad':>8} "
          f"{'tp/static':>10} {'tp µs':>6} {'tp MBU':>7}")
    for r in res.data["rows"]:
        f = lambda k, spec=".0f": format(r[k], spec) if isinstance(r.get(k), float) else "-"  # noqa: E731
        print(f"{r['batch']:>5} {f('hf_tokens_per_s'):>13} {f('hf_static_tokens_per_s'):>10} "
              f"{f('ours_generate_tokens_per_s'):>14} {f('ours_fast_tokens_per_s'):>10} {f('ours_fast_vs_hf', '.1f'):>8} "
              f"{f('ours_fast_vs_hf_static', '.2f'):>12} {f('ours_fast_pad_tokens_per_s'):>9} "
              f"{f('ours_fast_pad_vs_hf_static', '.2f'):>11} {f('fast_token_us'):>8} {f('fast_mbu', '.1%'):>9} "
              f"{f('hf_static_token_us'):>10} {f('hf_static_mbu', '.1%'):>11} {f('floor_tokens_per_s'):>9} "
              f"{f('ours_fast_triton_tokens_per_s'):>9} {f('ours_fast_triton_vs_hf_static', '.2f'):>11} "
              f"{f('fast_triton_token_us'):>7} {f('fast_triton_mbu', '.1%'):>8} {f('ours_fast_triton_pad_tokens_per_s'):>8} "
              f"{f('ours_fast_triton_pad_vs_hf_static', '.2f'):>10} {f('fast_triton_pad_token_us'):>6} "
              f"{f('fast_triton_pad_mbu', '.1%'):>7}")


if __name__ == "__main__":
    main()
