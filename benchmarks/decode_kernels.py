"""Each hand-written decode kernel (mlab_tfs.decode_kernels) timed alone beside what PyTorch runs
for the same work, at GPT-2 small's shapes, in bf16.

    PYTHONPATH=. python benchmarks/decode_kernels.py --out kernels.json     # one CUDA GPU, about a minute
    PYTHONPATH=. python benchmarks/decode_kernels.py --smoke                # the CPU (Triton's interpreter), tiny

Per batch size (default 1, 8, 64) and layer of a decode step (c_attn with ln_1 and the cache
write, c_proj with the residual, c_fc with ln_2 and GELU, the MLP's
c_proj with the residual, the head with ln_f; and flash_decode over a cache of --cache filled
columns of 512): µs per call in a CUDA graph of --reps calls (launch gaps included, as in the
decode step's graph), the bytes it must read over that time (GB/s), and the same for PyTorch's
kernels doing the same (F.layer_norm, F.linear, GELU, add; F.scaled_dot_product_attention over
the filled columns). ``norm_linear``'s autotuned tile shape is printed where triton reports it.
Every output is checked against PyTorch's (bf16 tolerance) before timing.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from _common import Results, describe, log, require_cuda


def graph_us(fn, reps: int, cuda: bool) -> float:
    """µs per call of fn: a CUDA graph of reps calls, replayed (a plain loop on the CPU)."""
    import time

    if not cuda:
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t) / reps * 1e6
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):  # autotuning and compiling happen here, outside the capture
            fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(5):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / (5 * reps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--cache", type=int, default=384, help="filled cache columns (of 512)")
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--out", default=None)
    p.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU in float32: checks the script")
    args = p.parse_args()
    if not args.smoke:
        require_cuda("decode_kernels.py")
    cuda = not args.smoke
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    from mlab_tfs import activations
    from mlab_tfs import decode_kernels as dk

    C, nh, M, V = (768, 12, 512, 50257) if cuda else (64, 4, 64, 97)
    hs, filled = C // nh, min(args.cache, M - 1) if cuda else 40
    reps = args.reps if cuda else 1
    tol = dict(atol=0.06, rtol=0.02) if cuda else dict(atol=1e-4, rtol=1e-4)
    res = Results(args.out, "decode_kernels", C=C, n_head=nh, max_len=M, filled=filled, reps=reps)
    log(describe(res.data["environment"]))
    g = torch.Generator().manual_seed(0)
    rnd = lambda *shape, s=0.05: (torch.randn(*shape, generator=g) * s).to(device, dtype)  # noqa: E731
    gamma, beta = 1 + rnd(C), rnd(C)
    w_attn, b_attn, w_proj, b_proj = rnd(3 * C, C), rnd(3 * C), rnd(C, C), rnd(C)
    w_fc, b_fc, w_fc2, b_fc2, w_head = rnd(4 * C, C), rnd(4 * C), rnd(C, 4 * C), rnd(C), rnd(V, C)
    pos = torch.tensor([filled], device=device)
    elem = torch.tensor([], dtype=dtype).element_size()
    for B in (int(b) for b in args.batches.split(",")):
        x, h = rnd(B, C, s=1.0), rnd(B, 4 * C, s=1.0)
        kc, vc = rnd(B, nh, M, hs, s=1.0), rnd(B, nh, M, hs, s=1.0)
        key_mask = torch.ones(B, M, dtype=torch.bool, device=device)
        q = torch.empty(B, C, device=device, dtype=dtype)
        acc, ml = dk.flash_decode(rnd(B, C, s=1.0), kc, vc, key_mask, pos, hs ** -0.5)
        z = dk.combine_splits(acc, ml, dtype)
        logits = torch.empty(B, V, device=device, dtype=dtype)
        ln = lambda t: F.layer_norm(t, (C,), gamma, beta, 1e-5)  # noqa: E731
        qkv_ref = lambda: F.linear(ln(x), w_attn, b_attn)  # noqa: E731
        cases = {
            # name: (ours, PyTorch's, weight bytes read, ours' output and PyTorch's for the check)
            "c_attn+ln_1+cache": (lambda: dk.norm_linear(x, w_attn, b_attn, norm=(gamma, beta, 1e-5),
                                                         qkv=(q, kc, vc, pos)),
                                  qkv_ref, w_attn.numel(), lambda: q, lambda: qkv_ref()[:, :C]),
            "c_proj+residual": (lambda: dk.norm_linear(z, w_proj, b_proj, residual=x),
                                lambda: x + F.linear(z, w_proj, b_proj), w_proj.numel(), None, None),
            "c_fc+ln_2+gelu": (lambda: dk.norm_linear(x, w_fc, b_fc, norm=(gamma, beta, 1e-5), act=1),
                               lambda: activations.gelu_new(F.linear(ln(x), w_fc, b_fc)), w_fc.numel(), None, None),
            "mlp.c_proj+residual": (lambda: dk.norm_linear(h, w_fc2, b_fc2, residual=x),
                                    lambda: x + F.linear(h, w_fc2, b_fc2), w_fc2.numel(), None, None),
            "lm_head+ln_f": (lambda: dk.norm_linear(x, w_head, None, norm=(gamma, beta, 1e-5), out=logits),
                             lambda: F.linear(ln(x), w_head), w_head.numel(), None, None),
        }
        for name, (ours, torch_fn, weights, got, want) in cases.items():
            out = ours()
            torch.testing.assert_close((got or (lambda: out))().float(), (want or torch_fn)().float(), **tol)
            row = dict(batch=B, kernel=name, bytes=weights * elem)
            row["ours_us"], row["torch_us"] = graph_us(ours, reps, cuda), graph_us(torch_fn, reps, cuda)
            res.add(**row)
        kv_bytes = 2 * B * nh * (filled + 1) * hs * elem
        qa = rnd(B, C, s=1.0)
        sd_k, sd_v = kc[:, :, : filled + 1], vc[:, :, : filled + 1]
        ref = lambda: F.scaled_dot_product_attention(qa.view(B, nh, 1, hs), sd_k, sd_v)  # noqa: E731
        torch.testing.assert_close(dk.combine_splits(*dk.flash_decode(qa, kc, vc, key_mask, pos, hs ** -0.5)),
                                   ref().reshape(B, C).float(), **tol)
        res.add(batch=B, kernel=f"flash_decode ({dk.attention_splits(B, nh, M)} pieces)", bytes=kv_bytes,
                ours_us=graph_us(lambda: dk.flash_decode(qa, kc, vc, key_mask, pos, hs ** -0.5), reps, cuda),
                torch_us=graph_us(ref, reps, cuda))
    tuned = getattr(dk._norm_linear_kernel, "cache", {})
    res.set(autotuned={str(k): str(v) for k, v in tuned.items()})
    res.done()
    print(f"\n{describe(res.data['environment'])}; {str(dtype).replace('torch.', '')}; µs per call in a CUDA graph")
    print(f"{'batch':>5} {'kernel':>28} {'MB':>7} {'ours µs':>8} {'GB/s':>6} {'torch µs':>9} {'GB/s':>6} {'ours/torch':>10}")
    for r in res.data["rows"]:
        print(f"{r['batch']:>5} {r['kernel']:>28} {r['bytes'] / 1e6:>7.2f} {r['ours_us']:>8.1f} "
              f"{r['bytes'] / r['ours_us'] / 1e3:>6.0f} {r['torch_us']:>9.1f} {r['bytes'] / r['torch_us'] / 1e3:>6.0f} "
              f"{r['ours_us'] / r['torch_us']:>10.2f}")
    for k, v in res.data.get("autotuned", {}).items():
        print(f"autotuned {k}: {v}")


if __name__ == "__main__":
    main()
