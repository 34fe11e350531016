"""Each hand-written decode kernel (mlab_tfs.decode_kernels) timed alone beside what PyTorch runs
for the same work, at GPT-2 small's shapes, in bf16.

    PYTHONPATH=. python benchmarks/decode_kernels.py --out kernels.json     # one CUDA GPU, about 3 minutes (autotuning)
    PYTHONPATH=. python benchmarks/decode_kernels.py --smoke                # the CPU (Triton's interpreter), tiny

Per batch size (default 1, 8, 64) and layer of a decode step (c_attn with ln_1 and the cache
write, c_proj with the residual, c_fc with ln_2 and GELU, the MLP's
c_proj with the residual, the head with ln_f; and flash_decode over a cache of --cache filled
columns of 512; combine_splits alone): µs per call in a CUDA graph of --reps calls (launch gaps
included, as in the decode step's graph), the calls cycling through copies of the weights that
together fill twice the L2 cache (as a decode step reads each layer's weights once: --warm
keeps one copy, read from L2 where it fits), the bytes it must read over that time (GB/s), and
the same for PyTorch's
kernels doing the same (F.layer_norm, F.linear, GELU, add; F.scaled_dot_product_attention over
the filled columns). ``norm_linear``'s autotuned tile shape is printed where triton reports it.
Every output is checked against PyTorch's (bf16 tolerance) before timing.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

from _common import Results, describe, log, require_cuda


def graph_us(fn, reps: int, cuda: bool, copies: int = 1) -> float:
    """µs per call of fn(i): a CUDA graph of reps calls, the i-th on copy i % copies of the
    operands, replayed (a plain loop on the CPU)."""
    import time

    if not cuda:
        t = time.perf_counter()
        for i in range(reps):
            fn(i % copies)
        return (time.perf_counter() - t) / reps * 1e6
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(3):  # autotuning and compiling happen here, outside the capture
            fn(i % copies)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(reps):
            fn(i % copies)
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
    p.add_argument("--warm", action="store_true",
                   help="every call on the same weights (from L2 where they fit), not rotated copies")
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
    pos = torch.tensor([filled], device=device)
    elem = torch.tensor([], dtype=dtype).element_size()
    # In a decode step each layer's weights are read once and the next layer's are others, so
    # by default the calls cycle through enough copies of the weights (twice the L2 cache,
    # 50 MB on an H200) that none is still in L2 when it is read again.
    l2 = torch.cuda.get_device_properties(0).L2_cache_size if cuda else 1 << 16
    shapes = dict(w_attn=(3 * C, C), b_attn=(3 * C,), w_proj=(C, C), b_proj=(C,), w_fc=(4 * C, C), b_fc=(4 * C,),
                  w_fc2=(C, 4 * C), b_fc2=(C,), w_head=(V, C))
    n_copies = {k: 1 if args.warm else max(1, min(reps, -(-2 * l2 // (math.prod(v) * elem))))
                for k, v in shapes.items()}
    n_copies.update(b_attn=n_copies["w_attn"], b_proj=n_copies["w_proj"], b_fc=n_copies["w_fc"],
                    b_fc2=n_copies["w_fc2"])
    W = {k: [rnd(*v) for _ in range(n_copies[k])] for k, v in shapes.items()}
    res.set(l2_bytes=l2, weight_copies={k: n_copies[k] for k in ("w_attn", "w_proj", "w_fc", "w_fc2", "w_head")})
    for B in (int(b) for b in args.batches.split(",")):
        x, h = rnd(B, C, s=1.0), rnd(B, 4 * C, s=1.0)
        kc, vc = rnd(B, nh, M, hs, s=1.0), rnd(B, nh, M, hs, s=1.0)
        key_mask = torch.ones(B, M, dtype=torch.bool, device=device)
        q = torch.empty(B, C, device=device, dtype=dtype)
        acc, ml = dk.flash_decode(rnd(B, C, s=1.0), kc, vc, key_mask, pos, hs ** -0.5)
        z = dk.combine_splits(acc, ml, dtype)
        logits = torch.empty(B, V, device=device, dtype=dtype)
        ln = lambda t: F.layer_norm(t, (C,), gamma, beta, 1e-5)  # noqa: E731
        w = lambda name, i: W[name][i % len(W[name])]  # noqa: E731
        qkv_ref = lambda i=0: F.linear(ln(x), w("w_attn", i), w("b_attn", i))  # noqa: E731
        cases = {
            # name: (ours(i), PyTorch's(i) on copy i, weight, ours' output and PyTorch's for the check)
            "c_attn+ln_1+cache": (lambda i=0: dk.norm_linear(x, w("w_attn", i), w("b_attn", i),
                                                             norm=(gamma, beta, 1e-5), qkv=(q, kc, vc, pos)),
                                  qkv_ref, "w_attn", lambda: q, lambda: qkv_ref()[:, :C]),
            "c_proj+residual": (lambda i=0: dk.norm_linear(z, w("w_proj", i), w("b_proj", i), residual=x),
                                lambda i=0: x + F.linear(z, w("w_proj", i), w("b_proj", i)), "w_proj", None, None),
            "c_fc+ln_2+gelu": (lambda i=0: dk.norm_linear(x, w("w_fc", i), w("b_fc", i), norm=(gamma, beta, 1e-5),
                                                          act=1),
                               lambda i=0: activations.gelu_new(F.linear(ln(x), w("w_fc", i), w("b_fc", i))), "w_fc",
                               None, None),
            "mlp.c_proj+residual": (lambda i=0: dk.norm_linear(h, w("w_fc2", i), w("b_fc2", i), residual=x),
                                    lambda i=0: x + F.linear(h, w("w_fc2", i), w("b_fc2", i)), "w_fc2", None, None),
            "lm_head+ln_f": (lambda i=0: dk.norm_linear(x, w("w_head", i), None, norm=(gamma, beta, 1e-5),
                                                        out=logits),
                             lambda i=0: F.linear(ln(x), w("w_head", i)), "w_head", None, None),
        }
        for name, (ours, torch_fn, weight, got, want) in cases.items():
            out = ours()
            torch.testing.assert_close((got or (lambda: out))().float(), (want or torch_fn)().float(), **tol)
            k = n_copies[weight]
            row = dict(batch=B, kernel=name, bytes=W[weight][0].numel() * elem, weight_copies=k)
            row["ours_us"], row["torch_us"] = graph_us(ours, reps, cuda, k), graph_us(torch_fn, reps, cuda, k)
            res.add(**row)
        kv_bytes = 2 * B * nh * (filled + 1) * hs * elem
        qa = rnd(B, C, s=1.0)
        sd_k, sd_v = kc[:, :, : filled + 1], vc[:, :, : filled + 1]
        ref = lambda: F.scaled_dot_product_attention(qa.view(B, nh, 1, hs), sd_k, sd_v)  # noqa: E731
        torch.testing.assert_close(dk.combine_splits(*dk.flash_decode(qa, kc, vc, key_mask, pos, hs ** -0.5)),
                                   ref().reshape(B, C).float(), **tol)
        res.add(batch=B, kernel=f"flash_decode ({dk.attention_splits(B, nh, M)} pieces)", bytes=kv_bytes,
                weight_copies=1,  # one cache (the real step's caches differ by layer: these figures are warm)
                ours_us=graph_us(lambda i: dk.flash_decode(qa, kc, vc, key_mask, pos, hs ** -0.5), reps, cuda),
                torch_us=graph_us(lambda i: ref(), reps, cuda))
        res.add(batch=B, kernel=f"combine_splits ({acc.shape[2]} pieces)", bytes=acc.numel() * 4, weight_copies=1,
                ours_us=graph_us(lambda i: dk.combine_splits(acc, ml, dtype), reps, cuda),
                torch_us=float("nan"))  # PyTorch's sdpa has no separate reduction
    tuned = {**getattr(dk._norm_gemv_kernel, "cache", {}), **getattr(dk._norm_linear_kernel, "cache", {})}
    res.set(autotuned={str(k): str(v) for k, v in tuned.items()})
    res.done()
    print(f"\n{describe(res.data['environment'])}; {str(dtype).replace('torch.', '')}; µs per call in a CUDA graph")
    print(f"weights {'warm (one copy)' if args.warm else 'cold (copies past twice the L2 cache)'}")
    print(f"{'batch':>5} {'kernel':>28} {'MB':>7} {'ours µs':>8} {'GB/s':>6} {'torch µs':>9} {'GB/s':>6} {'ours/torch':>10}")
    for r in res.data["rows"]:
        print(f"{r['batch']:>5} {r['kernel']:>28} {r['bytes'] / 1e6:>7.2f} {r['ours_us']:>8.1f} "
              f"{r['bytes'] / r['ours_us'] / 1e3:>6.0f} {r['torch_us']:>9.1f} {r['bytes'] / r['torch_us'] / 1e3:>6.0f} "
              f"{r['ours_us'] / r['torch_us']:>10.2f}")
    for k, v in res.data.get("autotuned", {}).items():
        print(f"autotuned {k}: {v}")


if __name__ == "__main__":
    main()
