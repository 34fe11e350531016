"""Hand-written Triton kernels for one decode step: a block in six kernels.

A decode step of GPT-2 over a static KV cache, written with PyTorch's modules and compiled,
runs about 13 CUDA kernels per block (layer norm, matmul, bias and split, two cache writes,
attention with its mask, matmul, residual add, layer norm, matmul, GELU, matmul, residual add;
154 per step on an H200, benchmarks/README.md, "The decode step"): at batch 1 each reads a few
kilobytes to a few megabytes and takes a few microseconds. Here a block is six kernels, the
four matrix products each one pass over its weights with the small work around it folded in:

1. ``norm_linear`` with ``norm``: ln_1, then x @ c_attn^T + bias; the keys and values written
   straight into the cache's column, the queries returned;
2. ``flash_decode``: one query per row and head over the cache's filled columns only (it reads
   the current column from the device), cut into pieces that run in parallel and softmaxed
   online within each (Flash-Decoding: Dao et al. 2023; online softmax: Milakov &
   Gimelshein 2018), padding and causality from the cache's ``key_mask``;
3. ``combine_splits``: the pieces combined into the attention's output;
4. ``norm_linear`` with ``residual``: c_proj + bias + the residual;
5. ``norm_linear`` with ``norm`` and ``act``: ln_2, c_fc + bias, GELU;
6. ``norm_linear`` with ``residual``: c_proj + bias + the residual;

then ln_f and the head, one more ``norm_linear``: 73 kernels for GPT-2 small. (Combining the
pieces inside c_proj's kernel, as its prologue, measured 5x slower than this on an H200: each
of its programs gathered every piece's maximum for every input column.) Every kernel
rounds where the modules round (the layer norm's and the attention's outputs, the matmul's
output after its bias, each residual sum, to the model's dtype; statistics, accumulation,
scores and softmax in float32), so in float32 the step equals the modules' to float rounding
(tested at 1e-5); the activation is computed in float32 where GPT-2's ``gelu_new`` in bf16
is a chain of bf16 operations, so there it may differ in the last bit.

On a CUDA tensor the kernels are compiled (``norm_linear``'s tile shape chosen by
``triton.autotune`` once per shape, on the first call, which must not be inside a CUDA
graph's capture: ``generate_fast`` runs one step eagerly first); on a CPU tensor they run in Triton's
interpreter (``TRITON_INTERPRET=1``, chosen before triton is imported), slowly, which is how
the tests check them on a machine without a GPU. The interpreter has no bfloat16.

Shapes: B batch (rows), C = n_embd, N output features, K input features, nh heads, hs head
size, M cache columns, V vocabulary.
"""

from __future__ import annotations

import os
import sys

import torch

if "triton" not in sys.modules and not torch.cuda.is_available():
    # No GPU: run the kernels in Triton's interpreter, which must be chosen before triton is
    # imported (its own library functions are wrapped for one mode or the other at import).
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from mlab_tfs import activations

Tensor = torch.Tensor

# The activations the kernels compute, by the function the model's MLP holds.
ACT_CODES = {None: 0, activations.gelu_new: 1, activations.gelu: 2, torch.relu: 3, activations.silu: 4}


def _norm_linear(X, stride_xm, G, Bn, W, stride_wn, Bias, R, stride_rm, Y, stride_ym,
                 Q, Kc, Vc, CP, stride_cb, stride_ch, stride_cm, M, N, eps,
                 K: tl.constexpr, NORM: tl.constexpr, ACT: tl.constexpr, HAS_BIAS: tl.constexpr,
                 HAS_RES: tl.constexpr, QKV: tl.constexpr, HS: tl.constexpr, FP32: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Y = act(prologue(X) @ W^T + Bias) (+ R), or with QKV the queries to Q and the keys and
    values into the caches Kc / Vc at column CP[0]. W (N, K), nn.Linear's layout.

    X (M, K); NORM 1: a layer norm of X first (gamma G, beta Bn, eps)."""
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BM,) rows
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # (BN,) output features
    row_ok = rm < M
    col_ok = rn < N
    if NORM == 1:  # layer norm statistics of each row, in float32: two passes over K
        total = tl.zeros([BLOCK_M], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            x = tl.load(X + rm[:, None] * stride_xm + rk[None, :], mask=row_ok[:, None] & (rk[None, :] < K), other=0.0)
            total += tl.sum(x.to(tl.float32), axis=1)
        mean = total / K
        total = tl.zeros([BLOCK_M], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            ok = row_ok[:, None] & (rk[None, :] < K)
            x = tl.load(X + rm[:, None] * stride_xm + rk[None, :], mask=ok, other=0.0)
            d = tl.where(ok, x.to(tl.float32) - mean[:, None], 0.0)
            total += tl.sum(d * d, axis=1)
        rstd = (1.0 / tl.sqrt(total / K + eps)).to(tl.float32)  # eps may arrive as a float64 constant
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        k_ok = rk < K
        ok = row_ok[:, None] & k_ok[None, :]
        w = tl.load(W + rn[:, None] * stride_wn + rk[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
        x = tl.load(X + rm[:, None] * stride_xm + rk[None, :], mask=ok, other=0.0)
        if NORM == 1:
            g = tl.load(G + rk, mask=k_ok, other=0.0).to(tl.float32)
            b = tl.load(Bn + rk, mask=k_ok, other=0.0).to(tl.float32)
            x = (x.to(tl.float32) - mean[:, None]) * rstd[:, None] * g[None, :] + b[None, :]
        # the input rounded to the weights' dtype, as the layer norm's output is
        if BLOCK_M == 1:  # one row: a matrix-vector product, as sums (tl.dot needs 16 rows)
            acc += tl.sum(w.to(tl.float32) * x.to(w.dtype).to(tl.float32), axis=1)[None, :]
        elif FP32:
            acc += tl.dot(x.to(w.dtype), tl.trans(w), input_precision="ieee")  # (BM, BN); no TF32
        else:
            acc += tl.dot(x.to(w.dtype), tl.trans(w))
    if HAS_BIAS:
        acc += tl.load(Bias + rn, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    y = acc.to(Y.dtype.element_ty).to(tl.float32)  # the matmul's rounding
    if ACT == 1:  # gelu_new: the tanh approximation; tanh(u) = 2 sigmoid(2u) - 1
        u = 0.7978845608028654 * (y + 0.044715 * y * y * y)  # sqrt(2 / pi) (x + 0.044715 x^3)
        y = 0.5 * y * (2.0 * tl.sigmoid(2.0 * u))
    elif ACT == 2:  # the exact GELU
        y = 0.5 * y * (1.0 + tl.erf(y * 0.7071067811865476))
    elif ACT == 3:
        y = tl.maximum(y, 0.0)
    elif ACT == 4:
        y = y * tl.sigmoid(y)
    ok = row_ok[:, None] & col_ok[None, :]
    if HAS_RES:
        r = tl.load(R + rm[:, None] * stride_rm + rn[None, :], mask=ok, other=0.0)
        y = y.to(Y.dtype.element_ty).to(tl.float32) + r.to(tl.float32)
    if QKV:  # columns [0, C) queries, [C, 2C) keys, [2C, 3C) values; C = N // 3
        C = N // 3
        part = rn // C
        within = rn - part * C
        head = within // HS
        pos = tl.load(CP)
        cache = rm[:, None] * stride_cb + head[None, :] * stride_ch + pos * stride_cm + (within - head * HS)[None, :]
        tl.store(Q + rm[:, None] * stride_ym + within[None, :], y.to(Q.dtype.element_ty), mask=ok & (part == 0)[None, :])
        tl.store(Kc + cache, y.to(Kc.dtype.element_ty), mask=ok & (part == 1)[None, :])
        tl.store(Vc + cache, y.to(Vc.dtype.element_ty), mask=ok & (part == 2)[None, :])
    else:
        tl.store(Y + rm[:, None] * stride_ym + rn[None, :], y.to(Y.dtype.element_ty), mask=ok)


def _flash_decode(Q, Kc, Vc, KM, CP, ACC, ML, stride_qb, stride_cb, stride_ch, stride_cm, stride_kmb, scale,
                      CHUNK, N_REP: tl.constexpr, HS: tl.constexpr, HS_P2: tl.constexpr, SPLITS: tl.constexpr,
                      BLOCK_S: tl.constexpr):
    """One program per (row b, query head h, split): the query's scores over cache columns
    [split * CHUNK, (split + 1) * CHUNK) that are <= CP[0] and real in KM, softmaxed online;
    writes the unnormalised sum ACC[b, h, split] (HS,) and its running max and sum ML[b, h,
    split] = (m, l), which ``_combine`` combines (flash-decoding). Query head h
    reads key/value head h // N_REP."""
    b = tl.program_id(0)
    h = tl.program_id(1)
    sp = tl.program_id(2)
    kv = h // N_REP
    d = tl.arange(0, HS_P2)
    d_ok = d < HS
    # Scaled once; float32 whatever type the caller's float arrives as (torch.compile may pass
    # it as a float64 constant, and the loop's carried values must keep one type).
    q = (tl.load(Q + b * stride_qb + h * HS + d, mask=d_ok, other=0.0).to(tl.float32) * scale).to(tl.float32)
    pos = tl.load(CP)
    base = b * stride_cb + kv * stride_ch
    m_i = tl.zeros([1], dtype=tl.float32) - float("inf")  # running max and sum of the scores
    l_i = tl.zeros([1], dtype=tl.float32)
    acc = tl.zeros([HS_P2], dtype=tl.float32)
    first = sp * CHUNK
    last = tl.minimum(first + CHUNK, pos + 1)  # the filled columns only
    for s0 in range(first, last, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        in_range = s < last
        real = tl.load(KM + b * stride_kmb + s, mask=in_range, other=0) != 0
        seen = in_range & real
        k = tl.load(Kc + base + s[:, None] * stride_cm + d[None, :], mask=seen[:, None] & d_ok[None, :], other=0.0)
        scores = tl.where(seen, tl.sum(k.to(tl.float32) * q[None, :], axis=1), float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # no key seen yet: keep exp() finite
        p = tl.exp(scores - m_safe)  # (BLOCK_S,), 0 where not seen
        alpha = tl.exp(m_i - m_safe)
        v = tl.load(Vc + base + s[:, None] * stride_cm + d[None, :], mask=seen[:, None] & d_ok[None, :], other=0.0)
        acc = acc * alpha + tl.sum(p[:, None] * v.to(tl.float32), axis=0)
        l_i = l_i * alpha + tl.sum(p, axis=0)
        m_i = m_new
    out = ((b * tl.num_programs(1) + h) * SPLITS + sp)
    tl.store(ACC + out * HS + d, acc, mask=d_ok)
    two = tl.arange(0, 2)
    tl.store(ML + out * 2 + two, tl.where(two == 0, m_i, l_i))


def _combine(ACC, ML, Z, stride_zb, SPLITS: tl.constexpr, SPLITS_P2: tl.constexpr, HS: tl.constexpr,
             HS_P2: tl.constexpr):
    """Z[b, h] = sum_s e^(m_s - m) ACC[b, h, s] / sum_s e^(m_s - m) l_s, m the largest m_s; 0
    when every piece saw no key. One program per (row, head)."""
    b = tl.program_id(0)
    h = tl.program_id(1)
    sp = tl.arange(0, SPLITS_P2)
    piece = (b * tl.num_programs(1) + h) * SPLITS + sp  # (SPLITS_P2,)
    sp_ok = sp < SPLITS
    d = tl.arange(0, HS_P2)
    d_ok = d < HS
    m = tl.load(ML + piece * 2, mask=sp_ok, other=float("-inf"))
    l = tl.load(ML + piece * 2 + 1, mask=sp_ok, other=0.0)
    top = tl.max(m, axis=0)
    w = tl.exp(m - tl.where(top == float("-inf"), 0.0, top))  # 0 for a piece that saw no key
    acc = tl.load(ACC + piece[:, None] * HS + d[None, :], mask=sp_ok[:, None] & d_ok[None, :], other=0.0)
    num = tl.sum(w[:, None] * acc, axis=0)  # (HS_P2,)
    den = tl.sum(w * l, axis=0)
    out = tl.where(den > 0, num / tl.where(den > 0, den, 1.0), 0.0)  # a query that saw no key: 0
    tl.store(Z + b * stride_zb + h * HS + d, out.to(Z.dtype.element_ty), mask=d_ok)


def _configs() -> list[triton.Config]:
    """Tile shapes for the matrix-vector products of a decode step (a few rows, K up to a few
    thousand): narrow output tiles, so that even a 768-wide layer spreads over many SMs, and
    long K steps, so that each program has many bytes in flight (one program walks all of K)."""
    return [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)
            for n, k, w, s in ((16, 128, 4, 3), (16, 256, 4, 3), (32, 128, 4, 3), (32, 256, 4, 3),
                               (64, 128, 4, 3), (64, 64, 4, 4), (128, 64, 4, 3), (128, 128, 8, 3),
                               (16, 512, 4, 2), (16, 512, 8, 3), (16, 1024, 8, 2), (32, 512, 8, 3))]


def _gemv_configs() -> list[triton.Config]:
    """Tile shapes for one row (``BLOCK_M`` 1, the products as sums): outputs as narrow as 2
    columns, so that a 768-wide layer runs 96 to 384 programs, each reading a few rows of the
    weights with long K steps; wide tiles for the vocabulary's head."""
    return [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)
            for n, k, w, s in ((2, 512, 2, 3), (4, 256, 2, 3), (4, 512, 4, 3), (4, 1024, 4, 2), (8, 256, 4, 3),
                               (8, 512, 4, 3), (8, 1024, 8, 2), (16, 256, 4, 3), (16, 512, 8, 3), (32, 256, 8, 3),
                               (64, 128, 4, 3), (128, 64, 4, 3))]


# The interpreter (every tensor copied to the host and back), as triton decided at its import.
INTERPRET = bool(triton.knobs.runtime.interpret) if hasattr(triton, "knobs") else \
    os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")
_KEY = ["N", "K", "BLOCK_M", "NORM", "QKV"]
if INTERPRET:
    _norm_linear_kernel = _norm_gemv_kernel = triton.jit(_norm_linear)
else:  # the same kernel twice, autotuned over tiles for several rows (tl.dot) and for one
    _norm_linear_kernel = triton.autotune(_configs(), key=_KEY)(triton.jit(_norm_linear))
    _norm_gemv_kernel = triton.autotune(_gemv_configs(), key=_KEY)(triton.jit(_norm_linear))
_flash_decode_kernel = triton.jit(_flash_decode)
_combine_kernel = triton.jit(_combine)


def _check_device(x: Tensor) -> None:
    if not (x.is_cuda or INTERPRET):
        raise ValueError(f"mlab_tfs.decode_kernels: a tensor on {x.device} needs Triton's interpreter, which is "
                         "chosen only before triton is first imported: set TRITON_INTERPRET=1 in the environment "
                         "(it is set for you on a machine without a GPU when this module imports triton first)")


def _block_m(rows: int) -> int:
    """Rows per program: 1 (sums) for one row, else 16 or more, as tl.dot needs."""
    return 1 if rows == 1 else (16 if rows <= 16 else (32 if rows <= 32 else 64))


def norm_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                norm: tuple[Tensor, Tensor, float] | None = None, act: int = 0, residual: Tensor | None = None, out: Tensor | None = None,
                qkv: tuple[Tensor, Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """``act(layer_norm(x) @ weight.T + bias) (+ residual)`` in one kernel.

    x: (B, K); norm: (gamma, beta, eps) of a LayerNorm over K applied to x first, or None. weight: (N, K) (an nn.Linear's;
    only its first N rows are read when ``out`` is narrower); bias: (N,) or None; act: an
    ``ACT_CODES`` value; residual: (B, N) added after the activation; out: (B, N), default a
    new tensor of the weight's dtype. qkv: (q, k_cache, v_cache, cache_position) for c_attn
    (N = 3 nh hs): queries to q (B, nh hs), keys and values into the caches (B, nh, M, hs),
    contiguous, at column cache_position[0]; nothing to out. Returns out (or q).

    One row (B = 1) runs the matrix-vector form (products as sums over tiles as narrow as two
    outputs); more rows run tl.dot over tiles of 16 to 64 rows.

    The kernel is launched from a custom op (``torch.ops.mlab_tfs.norm_linear_out`` and
    ``norm_linear_qkv``), which torch.compile keeps opaque: inside a compiled step (and its
    CUDA graph) it is Triton's own launch of the tile shape Triton's autotuner chose on real
    tensors. Traced into inductor's graph instead, the same kernels measured 18.6 µs per call
    in GPT-2's decode step on an H200, against 4.5 as an opaque op (benchmarks/README.md).

    x, weight, residual and out must have unit stride in their last dimension (the kernel
    indexes each row's elements at stride 1; a transposed view gives wrong numbers, unchecked).
    Nothing is checked here but the device (``mlab_tfs.gpt2.fast.check_triton_decode``
    checks a model once): this runs inside a compiled decode step.
    """
    gamma, beta, eps = norm if norm is not None else (None, None, 0.0)
    if qkv is not None:
        q, kc, vc, cp = qkv
        torch.ops.mlab_tfs.norm_linear_qkv(x, weight, bias, gamma, beta, float(eps), q, kc, vc, cp)
        return q
    if out is None:
        out = torch.empty(x.shape[0], weight.shape[0], dtype=weight.dtype, device=x.device)
    torch.ops.mlab_tfs.norm_linear_out(x, weight, bias, gamma, beta, float(eps), act, residual, out)
    return out


def _norm_linear_launch(x: Tensor, weight: Tensor, bias: Tensor | None, gamma: Tensor | None, beta: Tensor | None,
                        eps: float, act: int, residual: Tensor | None, y: Tensor,
                        qkv: tuple[Tensor, Tensor, Tensor, Tensor] | None) -> None:
    """The launch of ``_norm_linear`` behind both custom ops; y is out, or q with qkv."""
    _check_device(x)
    B, K = x.shape
    N = weight.shape[0] if qkv is not None else y.shape[1]
    q, kc, vc, cp = qkv if qkv is not None else (y, y, y, y)  # unused pointers: any tensor
    g, bn = (gamma, beta) if gamma is not None else (y, y)
    args = (x, x.stride(0), g, bn, weight, weight.stride(0), bias if bias is not None else y,
            residual if residual is not None else y, residual.stride(0) if residual is not None else 0, y,
            y.stride(0), q, kc, vc, cp, kc.stride(0) if qkv else 0, kc.stride(1) if qkv else 0,
            kc.stride(2) if qkv else 0, B, N, eps)
    meta = dict(K=K, NORM=int(gamma is not None), ACT=act, HAS_BIAS=bias is not None, HAS_RES=residual is not None,
                QKV=qkv is not None, HS=kc.shape[3] if qkv else 1, FP32=weight.dtype == torch.float32,
                BLOCK_M=_block_m(B))
    kernel = _norm_gemv_kernel if meta["BLOCK_M"] == 1 else _norm_linear_kernel
    if INTERPRET:  # one tile shape: autotuning would time the interpreter
        kernel[(triton.cdiv(N, 32), triton.cdiv(B, meta["BLOCK_M"]))](*args, **meta, BLOCK_N=32, BLOCK_K=32)
    else:
        grid = lambda m: (triton.cdiv(N, m["BLOCK_N"]), triton.cdiv(B, m["BLOCK_M"]))  # noqa: E731
        kernel[grid](*args, **meta)


@torch.library.custom_op("mlab_tfs::norm_linear_out", mutates_args=("out",))
def _norm_linear_out(x: Tensor, weight: Tensor, bias: Tensor | None, gamma: Tensor | None, beta: Tensor | None,
                     eps: float, act: int, residual: Tensor | None, out: Tensor) -> None:
    """``norm_linear`` without qkv: the result written into out (B, N)."""
    _norm_linear_launch(x, weight, bias, gamma, beta, eps, act, residual, out, None)


@torch.library.custom_op("mlab_tfs::norm_linear_qkv", mutates_args=("q", "k_cache", "v_cache"))
def _norm_linear_qkv(x: Tensor, weight: Tensor, bias: Tensor | None, gamma: Tensor | None, beta: Tensor | None,
                     eps: float, q: Tensor, k_cache: Tensor, v_cache: Tensor, cache_position: Tensor) -> None:
    """``norm_linear`` with qkv: queries into q, keys and values into the caches' column."""
    _norm_linear_launch(x, weight, bias, gamma, beta, eps, 0, None, q, (q, k_cache, v_cache, cache_position))


@_norm_linear_out.register_fake
def _(x, weight, bias, gamma, beta, eps, act, residual, out) -> None:
    return None  # writes into out only


@_norm_linear_qkv.register_fake
def _(x, weight, bias, gamma, beta, eps, q, k_cache, v_cache, cache_position) -> None:
    return None  # writes into q and the caches only


BLOCK_S = 64  # cache columns a flash_decode program reads per step


def attention_splits(batch: int, n_head: int, max_len: int) -> int:
    """How many pieces ``flash_decode`` cuts each query's cache columns into: enough programs
    (batch x heads x splits, about 256) to keep a GPU's SMs busy at batch 1, a power of two up
    to 16, and no piece shorter than BLOCK_S columns."""
    want = triton.next_power_of_2(max(1, -(-256 // (batch * n_head))))
    return max(1, min(16, want, triton.next_power_of_2(-(-max_len // BLOCK_S))))


def flash_decode(q: Tensor, k_cache: Tensor, v_cache: Tensor, key_mask: Tensor, cache_position: Tensor,
                 scale: float, splits: int | None = None) -> tuple[Tensor, Tensor]:
    """Attention of one new query per row and head over a static cache, its columns cut into
    ``splits`` pieces that run in parallel (Flash-Decoding: Dao, Haziza, Massa and Sizov 2023);
    one kernel. Only columns <= cache_position[0] are read.

    q: (B, nh hs), the heads side by side (c_attn's layout); k_cache, v_cache: (B, nkv, M, hs)
    contiguous, nh a multiple of nkv (query head h reads key/value head h // (nh // nkv));
    key_mask: bool (B, M), True where a column holds a real token; cache_position: (1,) long,
    the query's column; splits: default ``attention_splits(B, nh, M)``. Returns the partial
    results: acc (B, nh, splits, hs) float32, each piece's sum of e^(score - m) v, and ml
    (B, nh, splits, 2) float32, its max score m and sum of e^(score - m) (-inf and 0 for a piece
    with no visible key), which ``combine_splits`` combines.
    """
    B, nkv, M, hs = k_cache.shape
    nh = q.shape[1] // hs
    splits = attention_splits(B, nh, M) if splits is None else splits
    chunk = -(-M // splits)
    acc = torch.empty(B, nh, splits, hs, dtype=torch.float32, device=q.device)
    ml = torch.empty(B, nh, splits, 2, dtype=torch.float32, device=q.device)
    _check_device(q)
    args = (q, k_cache, v_cache, key_mask, cache_position, acc, ml, q.stride(0), k_cache.stride(0),
            k_cache.stride(1), k_cache.stride(2), key_mask.stride(0), scale, chunk)
    meta = dict(N_REP=nh // nkv, HS=hs, HS_P2=triton.next_power_of_2(hs), SPLITS=splits, BLOCK_S=BLOCK_S)
    _flash_decode_kernel[(B, nh, splits)](*args, **meta)
    return acc, ml


def combine_splits(acc: Tensor, ml: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``flash_decode``'s pieces combined into the attention's output, in one kernel:
    (B, nh, S, hs), (B, nh, S, 2) -> (B, nh hs) in ``dtype`` (default float32), each head's
    sum_s e^(m_s - m) acc_s / sum_s e^(m_s - m) l_s with m the largest m_s (Flash-Decoding's
    reduction); a query whose pieces all saw no key gets 0."""
    B, nh, S, hs = acc.shape
    out = torch.empty(B, nh * hs, dtype=dtype or torch.float32, device=acc.device)
    _check_device(acc)
    _combine_kernel[(B, nh)](acc, ml, out, out.stride(0), SPLITS=S, SPLITS_P2=triton.next_power_of_2(S), HS=hs,
                             HS_P2=triton.next_power_of_2(hs))
    return out
