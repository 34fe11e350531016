"""Where generate_fast's decode step spends its time: µs per step, CUDA kernels per step and
model bandwidth utilisation (MBU), per variant of the compiled step, at several batch sizes.

    python benchmarks/decode_profile.py --out decode.json      # one CUDA GPU, under 5 minutes
    python benchmarks/decode_profile.py --smoke                 # a 2-layer model on the CPU

Model: GPT-2 124M's shape with random weights in bf16, prompts of 256 random tokens and
256 new ones, greedy (as benchmarks/gpt2_generate.py). Variants of
``mlab_tfs.sampling.fast.generate_fast``:

  sdpa         the decode step's attention through F.scaled_dot_product_attention
               (decode_attention=False, the default), torch.compile(mode="reduce-overhead")
  decode       decode_attention=True: mlab_tfs.attention.decode_attention,
               products and sums inductor fuses
  decode+cdt   decode, plus inductor's coordinate_descent_tuning (which also turns
               matrix-vector products with one row into fused reductions), CUDA graphs kept
  sums         decode, and at batch 1 the linear layers as matrix-vector sums
               (linear_as_sums=1, mlab_tfs.gpt2.fast.LinearAsSums): bias, GELU and residual
               adds fused into them (skipped at larger batches: the same step as decode)
  sums+cdt     sums with coordinate_descent_tuning
  sums8+cdt    sums+cdt up to batch 8 (linear_as_sums=8): each row's sums read the weights
               again (from L2 where they fit), so this may lose at batch 8
  decode+pad   decode, on a copy of the model whose vocabulary mlab_tfs.gpt2.fast.pad_vocab
               padded to 50,304 rows (the head's matrix without a ragged edge)
  sums+cdt+pad sums+cdt on that padded copy
(default: sdpa, decode, decode+cdt, sums+cdt, decode+pad; --variants picks others). --time-limit stops
starting new runs after that many seconds, so that the script ends in time (what was
measured is kept; the JSON lists what was skipped).

For each batch and variant, before any timing, generate_fast's greedy tokens are checked
against our eager ``generate`` (gpt2_generate.check_greedy: where they first differ, the
chosen token's eager logit must be within --tie-tol of the largest); then:

- step_us: one replay of the compiled step (a CUDA graph), timed with CUDA events over
  --steps replays;
- token_us: generate_fast's time per new token, loop included: (t(new) - t(new / 4)) over
  the difference in tokens;
- kernels_per_step: CUDA kernels the profiler records over --profile-steps replays, divided
  by their number;
- bytes_per_step: the weights plus the keys and values at the average filled length (as
  gpt2_generate's floor); bytes_static_cache: what the step reads with every cache column;
- mbu: bytes_per_step / step_us / the measured device copy bandwidth.

Writes one JSON (--out) and prints a table. On the CPU (--smoke) nothing is timed for real
and the kernel count is left out (the profiler has no CUDA kernels to count).
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import Results, copy_bandwidth_gbs, describe, log, require_cuda
from gpt2_generate import _sync, build_models, check_greedy, floor_tokens_per_s

CDT = {"options": {"coordinate_descent_tuning": True}}
VARIANTS = {
    "sdpa": dict(decode_attention=False),
    "decode": dict(decode_attention=True),
    "decode+cdt": dict(decode_attention=True, compile_options=CDT),
    "sums": dict(decode_attention=True, linear_as_sums=1),
    "sums+cdt": dict(decode_attention=True, linear_as_sums=1, compile_options=CDT),
    "sums8+cdt": dict(decode_attention=True, linear_as_sums=8, compile_options=CDT),
    "decode+pad": dict(decode_attention=True, pad_vocab=64),
    "sums+cdt+pad": dict(decode_attention=True, linear_as_sums=1, compile_options=CDT, pad_vocab=64),
}
DEFAULT_VARIANTS = "sdpa,decode,decode+cdt,sums+cdt,decode+pad"


def generate_kwargs(variant: dict) -> dict:
    """variant's generate_fast arguments (pad_vocab picks the model, it is not one)."""
    return {k: v for k, v in variant.items() if k != "pad_vocab"}


def compiled_step(model, batch: int, max_len: int, variant: dict):
    """The decode step generate_fast compiled for this model and variant, and its static cache."""
    from mlab_tfs.sampling import fast

    state = fast._STATE[model]
    w = model.lm_head.weight
    cache = state[("cache", batch, max_len, w.dtype, w.device)]
    settings = fast._frozen(variant.get("compile_options") or {})
    sums = variant.get("linear_as_sums", 0)
    steps = [v for k, v in state.items() if k[0] == "step" and k[3:] == (settings, variant["decode_attention"])
             and k[1].linear_as_sums == (sums if batch <= sums else 0)]
    if len(steps) != 1:
        raise SystemExit(f"decode_profile.py: found {len(steps)} compiled steps for {variant}, expected one")
    return steps[0], cache


def time_replays(step, args, n: int, cuda: bool) -> float:
    """Median-free mean µs of one call of `step` over n calls (CUDA events on a GPU)."""
    for _ in range(3):
        torch.compiler.cudagraph_mark_step_begin()
        step(*args)
    _sync()
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
    t = time.perf_counter()
    for _ in range(n):
        torch.compiler.cudagraph_mark_step_begin()
        step(*args)
    if cuda:
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) * 1e3 / n
    return (time.perf_counter() - t) * 1e6 / n


def kernels_per_step(step, args, n: int) -> float:
    """CUDA kernels the profiler records per call of `step` (a CUDA graph replay's kernels included)."""
    from torch.profiler import ProfilerActivity, profile

    _sync()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            torch.compiler.cudagraph_mark_step_begin()
            step(*args)
        _sync()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
               and not e.name.startswith(("Memcpy", "Memset"))]
    return len(kernels) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", default="1,64,8", help="the goals' batch sizes (1, 64) first")
    p.add_argument("--prompt", type=int, default=256)
    p.add_argument("--new", type=int, default=256)
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, of {list(VARIANTS)}")
    p.add_argument("--time-limit", type=float, default=270, help="seconds after which no new run starts")
    p.add_argument("--steps", type=int, default=300, help="replays timed per variant")
    p.add_argument("--profile-steps", type=int, default=20, help="replays profiled for the kernel count")
    p.add_argument("--tie-tol", type=float, default=0.125,
                   help="largest eager-logit gap accepted where greedy tokens differ (bf16 rounding)")
    p.add_argument("--out", default=None)
    p.add_argument("--smoke", action="store_true", help="a 2-layer model on the CPU: checks the script, times nothing real")
    args = p.parse_args()
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; expected some of {list(VARIANTS)}")
    if args.smoke:
        args.batches, args.prompt, args.new, args.steps = "1,2", 8, 8, 5
    else:
        require_cuda("decode_profile.py")
    device = "cpu" if args.smoke else "cuda"
    cuda = device == "cuda"

    from mlab_tfs.sampling import generate
    from mlab_tfs.sampling.fast import _round_up, generate_fast

    torch.backends.cuda.matmul.allow_tf32 = True
    _, ours = build_models(max(1024, args.prompt + args.new), device, small=args.smoke)
    bw = copy_bandwidth_gbs() if cuda else 10.0
    res = Results(args.out, "decode_profile", prompt=args.prompt, new=args.new, copy_bandwidth_gbs=bw,
                  tie_tol=args.tie_tol, variants={v: str(VARIANTS[v]) for v in variants})
    log(f"{describe(res.data['environment'])}; device copy bandwidth {bw:.0f} GB/s")
    padded = {}  # pad_vocab multiple -> a padded copy of ours, made when a variant needs it

    def model_for(kw: dict):
        if not kw.get("pad_vocab"):
            return ours
        if kw["pad_vocab"] not in padded:
            import copy

            from mlab_tfs.gpt2.fast import pad_vocab

            padded[kw["pad_vocab"]] = pad_vocab(copy.deepcopy(ours), kw["pad_vocab"])
        return padded[kw["pad_vocab"]]

    cfg = ours.config
    V, elem = cfg.vocab_size, ours.lm_head.weight.element_size()
    M = min(_round_up(args.prompt + args.new, 64), cfg.n_positions)  # generate_fast's cache columns
    t_start = time.perf_counter()
    for B in (int(b) for b in args.batches.split(",")):
        g = torch.Generator().manual_seed(B)
        ids = torch.randint(0, V, (B, args.prompt), generator=g).to(device)
        mask = torch.ones_like(ids)
        _, step_bytes = floor_tokens_per_s(ours, B, args.prompt, args.new, bw)
        static_bytes = step_bytes + 2 * cfg.n_layer * B * cfg.n_embd * (M - args.prompt - args.new / 2) * elem
        log(f"batch {B}: eager generate (the reference) ...")
        reference = generate(ours, ids, mask, max_new_tokens=args.new)
        for name in variants:
            kw = VARIANTS[name]
            model = model_for(kw)
            if B > kw.get("linear_as_sums", B):
                continue  # the linear layers stay matrix multiplies: the same step as "decode"
            if time.perf_counter() - t_start > args.time_limit:
                log(f"batch {B}, {name}: skipped (past --time-limit {args.time_limit:.0f} s)")
                res.data.setdefault("skipped", []).append(f"batch {B}, {name}")
                continue
            row = dict(batch=B, variant=name, bytes_per_step=step_bytes, bytes_static_cache=static_bytes)
            res.set(current=row)
            log(f"batch {B}, {name}: compiling and checking ...")
            t0 = time.perf_counter()
            out = generate_fast(model, ids, mask, max_new_tokens=args.new, **generate_kwargs(kw))
            _sync()
            row["first_call_s"] = time.perf_counter() - t0
            row["check"] = check_greedy(f"generate_fast ({name})", ours, ids, reference, out, args.tie_tol)

            short = max(2, args.new // 4)
            times = {}
            for n in (short, args.new):
                generate_fast(model, ids, mask, max_new_tokens=n, **generate_kwargs(kw))  # warm (a shorter call reuses the step)
                _sync()
                t = time.perf_counter()
                generate_fast(model, ids, mask, max_new_tokens=n, **generate_kwargs(kw))
                _sync()
                times[n] = time.perf_counter() - t
            row["token_us"] = (times[args.new] - times[short]) / (args.new - short) * 1e6
            row["tokens_per_s"] = B * args.new / times[args.new]

            step, cache = compiled_step(model, B, M, kw)
            token = out[:, -1:].clone()
            position = torch.full((B, 1), args.prompt + args.new // 2, dtype=torch.long, device=device)
            cache_position = torch.full((1,), args.prompt + args.new // 2, dtype=torch.long, device=device)
            call = (model, cache, token, position, cache_position, torch.ones(B, dtype=torch.bool, device=device),
                    None, None, torch.full((1,), args.prompt, dtype=torch.long, device=device), None)
            row["step_us"] = time_replays(step, call, args.steps, cuda)
            row["kernels_per_step"] = kernels_per_step(step, call, args.profile_steps) if cuda else None
            row["mbu"] = step_bytes / (row["step_us"] * 1e-6) / (bw * 1e9)
            res.add(**row)
    res.set(current=None, wall_s=time.perf_counter() - t_start)
    res.done()
    print(f"\n{describe(res.data['environment'])}; copy bandwidth {bw:.0f} GB/s; prompt {args.prompt}, "
          f"{args.new} new tokens, greedy, bf16")
    print(f"{'batch':>5} {'variant':>12} {'step µs':>8} {'token µs':>9} {'kernels':>8} {'MB/step':>8} {'MBU':>6} "
          f"{'tokens/s':>9} {'identical rows':>15}")
    for r in res.data["rows"]:
        k = "-" if r["kernels_per_step"] is None else f"{r['kernels_per_step']:.0f}"
        print(f"{r['batch']:>5} {r['variant']:>12} {r['step_us']:>8.0f} {r['token_us']:>9.0f} {k:>8} "
              f"{r['bytes_per_step'] / 1e6:>8.1f} {r['mbu']:>6.1%} {r['tokens_per_s']:>9.0f} "
              f"{r['check']['rows_identical']:>7}/{r['check']['rows']}")


if __name__ == "__main__":
    main()
