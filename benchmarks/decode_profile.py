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
  sdpa+pad     sdpa, on a copy of the model whose vocabulary mlab_tfs.gpt2.fast.pad_vocab
               padded to 50,304 rows
  decode+pad   decode, on a copy of the model whose vocabulary mlab_tfs.gpt2.fast.pad_vocab
               padded to 50,304 rows (the head's matrix without a ragged edge)
  sums+cdt+pad sums+cdt on that padded copy
  triton       kernels="triton": the step's forward in mlab_tfs.decode_kernels' hand-written
               Triton kernels (six per block), compiled with CUDA graphs as sdpa
  triton+pad   triton on the padded copy
(default: sdpa, triton, triton+pad, decode, sums+cdt; --variants picks others). --time-limit stops
starting new runs after that many seconds, so that the script ends in time (what was
measured is kept; the JSON lists what was skipped).

For each batch and variant, before any timing, generate_fast's greedy tokens are checked
against our eager ``generate`` (gpt2_generate.check_greedy: where they first differ, the
chosen token's eager logit must be within --tie-tol of the largest); then:

- token_us: generate_fast's time per decode step, loop included: (t(new) - t(short)) over
  new - short, where the short call (193 new tokens by default) has the same cache columns,
  so the same compiled step and CUDA graph, and the prefill and set-up cancel out (medians
  of 3 calls each);
- kernels_per_step: the CUDA kernels the profiler records in the long call less those in
  the short one, over new - short (replaying the compiled step outside generate_fast
  instead adds the CUDA-graph input copies and misstates both figures);
- bytes_per_step: the weights plus the keys and values at the average filled length (as
  gpt2_generate's floor); bytes_static_cache: what the step reads with every cache column;
- gpu_us_per_step: those kernels' GPU time per step (the same difference); token_us above it
  is time the GPU waits between kernels or on the host; top_kernels: the eight that take the
  most of it, by name;
- mbu: bytes_per_step / token_us / the measured device copy bandwidth.

Writes one JSON (--out) and prints a table. On the CPU (--smoke) nothing is timed for real
and the kernel count is left out (the profiler has no CUDA kernels to count).
"""

from __future__ import annotations

import argparse
import statistics
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
    "sdpa+pad": dict(pad_vocab=64),
    "decode+pad": dict(decode_attention=True, pad_vocab=64),
    "sums+cdt+pad": dict(decode_attention=True, linear_as_sums=1, compile_options=CDT, pad_vocab=64),
    "triton": dict(kernels="triton"),
    "triton+pad": dict(kernels="triton", pad_vocab=64),
}
DEFAULT_VARIANTS = "sdpa,triton,triton+pad,decode,sums+cdt"


def generate_kwargs(variant: dict, cpu: bool = False) -> dict:
    """variant's generate_fast arguments (pad_vocab picks the model, it is not one); on the
    CPU (--smoke) the Triton kernels run uncompiled, in Triton's interpreter."""
    kw = {k: v for k, v in variant.items() if k != "pad_vocab"}
    return {**kw, "compile": False} if cpu and kw.get("kernels") == "triton" else kw


def kernels_in(call) -> dict[str, list[float]]:
    """CUDA kernels the profiler records during call() (CUDA-graph replays' kernels included),
    by name: [how many, µs of GPU time in all]."""
    from torch.profiler import ProfilerActivity, profile

    _sync()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        _sync()
    by_name: dict[str, list[float]] = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA and not e.name.startswith(("Memcpy", "Memset")):
            entry = by_name.setdefault(e.name, [0, 0.0])
            entry[0] += 1
            entry[1] += e.time_range.elapsed_us()
    return by_name


def per_step(long: dict[str, list[float]], short: dict[str, list[float]], steps: int) -> dict[str, list[float]]:
    """kernels_in's figures of the long call less the short one's, per decode step."""
    return {name: [(n - short.get(name, [0, 0.0])[0]) / steps, (us - short.get(name, [0, 0.0])[1]) / steps]
            for name, (n, us) in long.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", default="1,64,8", help="the goals' batch sizes (1, 64) first")
    p.add_argument("--prompt", type=int, default=256)
    p.add_argument("--new", type=int, default=256)
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, of {list(VARIANTS)}")
    p.add_argument("--time-limit", type=float, default=270, help="seconds after which no new run starts")
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
        args.batches, args.prompt, args.new = "1,2", 8, 8
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
            out = generate_fast(model, ids, mask, max_new_tokens=args.new, **generate_kwargs(kw, not cuda))
            _sync()
            row["first_call_s"] = time.perf_counter() - t0
            row["check"] = check_greedy(f"generate_fast ({name})", ours, ids, reference, out, args.tie_tol)

            # A shorter call whose cache has the same columns (the same compiled step and CUDA
            # graph): the difference is decode steps only, prefill and set-up cancelled out.
            short = max(2, M - 63 - args.prompt)
            times = {}
            for n in (short, args.new):
                generate_fast(model, ids, mask, max_new_tokens=n, **generate_kwargs(kw, not cuda))  # warm
                runs = []
                for _ in range(3):
                    _sync()
                    t = time.perf_counter()
                    generate_fast(model, ids, mask, max_new_tokens=n, **generate_kwargs(kw, not cuda))
                    _sync()
                    runs.append(time.perf_counter() - t)
                times[n] = statistics.median(runs)
            row["token_us"] = (times[args.new] - times[short]) / (args.new - short) * 1e6
            row["tokens_per_s"] = B * args.new / times[args.new]
            if cuda:
                counts = {n: kernels_in(lambda n=n: generate_fast(model, ids, mask, max_new_tokens=n,
                                                                  **generate_kwargs(kw, not cuda))) for n in (short, args.new)}
                step = per_step(counts[args.new], counts[short], args.new - short)
                row["kernels_per_step"] = sum(n for n, _ in step.values())
                row["gpu_us_per_step"] = sum(us for _, us in step.values())
                top = sorted(step.items(), key=lambda kv: -kv[1][1])[:8]
                row["top_kernels"] = [dict(name=k[:90], per_step=n, us_per_step=us) for k, (n, us) in top]
            else:
                row["kernels_per_step"] = row["gpu_us_per_step"] = None
            row["mbu"] = step_bytes / (row["token_us"] * 1e-6) / (bw * 1e9)
            res.add(**row)
    res.set(current=None, wall_s=time.perf_counter() - t_start)
    res.done()
    print(f"\n{describe(res.data['environment'])}; copy bandwidth {bw:.0f} GB/s; prompt {args.prompt}, "
          f"{args.new} new tokens, greedy, {str(ours.dtype).replace('torch.', '')}")
    print(f"{'batch':>5} {'variant':>12} {'token µs':>9} {'GPU µs':>7} {'kernels':>8} {'MB/step':>8} {'MBU':>6} "
          f"{'tokens/s':>9} {'identical rows':>15}")
    for r in res.data["rows"]:
        k = "-" if r["kernels_per_step"] is None else f"{r['kernels_per_step']:.0f}"
        gpu = "-" if r.get("gpu_us_per_step") is None else f"{r['gpu_us_per_step']:.0f}"
        print(f"{r['batch']:>5} {r['variant']:>12} {r['token_us']:>9.0f} {gpu:>7} {k:>8} "
              f"{r['bytes_per_step'] / 1e6:>8.1f} {r['mbu']:>6.1%} {r['tokens_per_s']:>9.0f} "
              f"{r['check']['rows_identical']:>7}/{r['check']['rows']}")
    for r in res.data["rows"]:
        for t in r.get("top_kernels") or []:
            print(f"  batch {r['batch']} {r['variant']}: {t['us_per_step']:7.1f} µs, {t['per_step']:5.1f} per step  "
                  f"{t['name']}")


if __name__ == "__main__":
    main()
