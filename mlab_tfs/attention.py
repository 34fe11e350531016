"""Attention plumbing shared by the model parts: the choice of attention path, and the
fused-kernel path with its rule for queries that may see no key.

The rule, on every path (hand-written, ``F.scaled_dot_product_attention``, static cache,
compiled): a query whose mask row is all False (a left-padding position in GPT-2, any
position of an all-padding sequence in BERT) gets a zero attention output, and no
gradient flows through it. That is what transformers' default path ("sdpa",
``transformers/integrations/sdpa_attention.py``, which passes a bool mask to PyTorch's
kernel, whose softmax gives such rows zeros) computes. Its "eager" path instead gives such a
row a uniform pattern over *all* keys, later ones included, so in a causal model a
padding position's output depends on future tokens; in GPT-2 the last padding
position's logits predict the first real token, so that dependence reaches the loss.

Shapes: B batch, nh heads, T queries, S keys, hs head size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

ATTN_IMPLEMENTATIONS = ("eager", "sdpa")
# F.scaled_dot_product_attention's enable_gqa appeared in PyTorch 2.5.
_SDPA_HAS_GQA = torch.__version__ >= "2.5"


def additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """A bool mask (True = allowed) as the float mask transformers' eager attention adds to
    its scores: 0 where allowed, ``torch.finfo(dtype).min`` where masked. Same shape.

    Adding it is not harmless in half precision: in float16 a score of -16 or less plus
    finfo.min (-65504) rounds to -inf, and a row of -inf is NaN after softmax. The
    attention paths here fill masked scores instead (``masked_fill``).
    """
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zero, torch.finfo(dtype).min)


def check_bool_mask(name: str, mask: Tensor | None) -> None:
    """A TypeError naming the argument unless mask is None or a bool tensor (True = attend):
    a float mask (0 / -inf, as some libraries pass) would otherwise be inverted bit-wise or
    fail deep inside."""
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool):
        got = f"a tensor of dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"{name} must be a bool tensor, True where a query may attend to a key; got {got}")


def sees_any_key(mask: Tensor) -> Tensor:
    """mask: bool (..., T, S), True = query t may see key s. Returns bool (..., T, 1):
    True where the query sees at least one key. Queries where it is False get a zero output."""
    check_bool_mask("mask", mask)
    return mask.any(dim=-1, keepdim=True)


def sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float, dropout_p: float = 0.0,
         is_causal: bool = False, enable_gqa: bool = False) -> Tensor:
    """``F.scaled_dot_product_attention`` with the zero-output rule for blind queries.

    q: (B, nh, T, hs), k and v: (B, nh, S, hs); mask: None or bool broadcastable to
    (B, nh, T, S) (its last two dims (T or 1, S)), True = may attend. ``is_causal`` (mask
    None): query t sees keys 0 .. S - T + t, the queries being the last T of the S
    positions (a KV cache holds the first S - T), as ``gpt2.solution.causal_mask``; with
    T == S the kernel's own causal masking. ``enable_gqa``: k and v may have nkv heads, nh
    a multiple of nkv, query head h reading key/value head h // (nh // nkv) (the layout of
    ``llama.solution.repeat_kv``), without the repeated copy (PyTorch >= 2.5; before,
    the heads are repeated here). Returns (B, nh, T, hs).

    Raises ValueError for a mask whose last two dims are not (T or 1, S), for both a mask
    and ``is_causal``, for ``is_causal`` with more queries than keys, and for k / v with
    fewer heads than q unless ``enable_gqa`` (then q's head count must be a multiple of
    theirs); TypeError for a mask that is not bool or an enable_gqa that is not a bool.

    A query that sees no key is given every key inside the kernel, so that no kernel
    (math, memory-efficient, flash, cuDNN; eager or compiled) meets an empty row, whose
    handling differs between them; its output is then set to zero. Its gradient is zero
    too: the kernel's backward gets a zero output gradient for that row. So any kernel
    may run, in training as well, and all of them agree with the hand-written path.
    """
    T, S = q.shape[-2], k.shape[-2]
    if not isinstance(enable_gqa, bool):
        raise TypeError(f"sdpa: enable_gqa must be True or False, got {type(enable_gqa).__name__} {enable_gqa!r}")
    gqa = {}
    if q.dim() >= 3 and k.dim() >= 3 and q.shape[-3] != k.shape[-3]:
        nh, nkv = q.shape[-3], k.shape[-3]
        if not enable_gqa or nh % nkv or v.shape[-3] != nkv:
            raise ValueError(f"sdpa: q has {nh} heads and k, v {nkv} and {v.shape[-3]}: with enable_gqa=True the "
                             f"key/value head count must divide q's (grouped-query attention), without it equal q's "
                             f"(enable_gqa={enable_gqa})")
        if _SDPA_HAS_GQA:
            gqa = dict(enable_gqa=True)
        else:
            n_rep = q.shape[-3] // k.shape[-3]
            k, v = k.repeat_interleave(n_rep, dim=-3), v.repeat_interleave(n_rep, dim=-3)
    if mask is not None and is_causal:
        raise ValueError("sdpa: pass either a mask or is_causal=True, not both")
    if mask is None and is_causal and T != S:
        if T > S:
            raise ValueError(f"sdpa: is_causal with {T} queries but {S} keys; the queries are the last keys")
        # The kernel's is_causal aligns query 0 with key 0 (top left); with a cache, query t
        # sits at position S - T + t.
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **gqa)
    check_bool_mask("mask", mask)
    if mask.dim() < 2 or mask.shape[-1] != S or mask.shape[-2] not in (1, T):
        raise ValueError(f"sdpa: mask must end in (T or 1, S) = ({T} or 1, {S}) for {T} queries and {S} keys, "
                         f"got shape {tuple(mask.shape)}")
    seen = sees_any_key(mask)  # (B, 1, T, 1)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~seen, dropout_p=dropout_p, scale=scale, **gqa)
    return y.masked_fill(~seen, 0.0)  # (B, nh, T, hs)


def check_attn_implementation(attn_implementation: object, where: str = "attn_implementation") -> str:
    """The name itself if it is one of ATTN_IMPLEMENTATIONS; else a ValueError naming
    ``where`` and the choices. The attention layers call it at every forward, so a config
    edited by hand to an unknown name fails instead of silently running one path."""
    if not isinstance(attn_implementation, str) or attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"{where} must be one of {ATTN_IMPLEMENTATIONS}, got {attn_implementation!r}")
    return attn_implementation


class AttnImplementationMixin:
    """``set_attn_implementation`` for a model whose attention layers read
    ``config.attn_implementation`` at every forward (one shared config object)."""

    config: object

    def set_attn_implementation(self, attn_implementation: str) -> None:
        """Switch every attention layer to "eager" (the hand-written attention) or "sdpa"
        (``F.scaled_dot_product_attention``), as transformers' method of the same name.

        The two compute the same function (tested equal, gradients included). Raises a
        ValueError naming the argument and the choices for any other value.
        """
        check_attn_implementation(attn_implementation, "set_attn_implementation: attn_implementation")
        self.config.attn_implementation = attn_implementation


def uses_decode_attention(cache: object, q: Tensor, mask: Tensor | None, training: bool) -> bool:
    """Whether an attention layer's "sdpa" path runs ``decode_attention``: one query per row
    (q (B, nh, 1, hs)) over a static KV cache whose ``decode_attention`` flag is set, with its
    mask (B or 1, 1, 1, M), and no dropout (not training). Everywhere else, ``sdpa``."""
    return (getattr(cache, "is_static", False) and getattr(cache, "decode_attention", False)
            and q.shape[2] == 1 and mask is not None and not training)


def decode_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float) -> Tensor:
    """Attention of one new query per row over a static KV cache's whole buffers, written as
    broadcast products and sums that torch.compile's inductor fuses (mask, scale, softmax
    and the weighted sum in a few kernels) instead of a fused-attention kernel call plus its
    mask preparation. For the decode step of ``mlab_tfs.sampling.fast`` (T == 1, no
    dropout); the same function as ``sdpa`` and the hand-written attention (tested equal).

    q: (B, nh, 1, hs); k, v: (B, nkv, M, hs) with nh a multiple of nkv (grouped-query
    attention: query head h reads key/value head h // (nh // nkv), as ``repeat_kv``, without
    repeating the cache); mask: bool (B or 1, 1, 1, M), True = may attend. Scores, softmax
    and the weighted sum in float32 (as the fused kernels accumulate); returns (B, nh, 1, hs)
    in v's dtype. A query that sees no key gets a zero output (the module's rule).

    Raises ValueError for q, k or v that are not 4-D, more than one query, heads that do
    not divide, k and v whose batch or head size differ from q's, or a mask not (B or 1,
    1, 1, M); TypeError for a mask that is not a bool tensor.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, Tensor) or x.dim() != 4:
            got = f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else f"a {type(x).__name__}"
            raise ValueError(f"decode_attention: {name} must be a 4-D tensor ({'(B, nh, 1, hs)' if name == 'q' else '(B, nkv, M, hs)'}), "
                             f"got {got}")
    B, nh, T, hs = q.shape
    nkv, M = k.shape[1], k.shape[2]
    if k.shape[0] != B or k.shape[3] != hs:
        raise ValueError(f"decode_attention: k and v must be (B={B}, nkv, M, hs={hs}) for q of shape {tuple(q.shape)}, "
                         f"got k of shape {tuple(k.shape)}")
    if T != 1:
        raise ValueError(f"decode_attention: one query per row (T == 1), got q of shape {tuple(q.shape)}")
    if nh % nkv or v.shape != k.shape:
        raise ValueError(f"decode_attention: q has {nh} heads, k {tuple(k.shape)} and v {tuple(v.shape)}: k and v "
                         f"must share a shape whose head count divides q's")
    if mask is None:
        raise TypeError("decode_attention: mask must be a bool tensor (B or 1, 1, 1, M), True = may attend; got None")
    check_bool_mask("decode_attention: mask", mask)
    if mask.dim() != 4 or mask.shape[1:] != (1, 1, M) or mask.shape[0] not in (1, B):
        raise ValueError(f"decode_attention: mask must be (B or 1, 1, 1, M={M}), got shape {tuple(mask.shape)} "
                         f"for B={B}")
    qg = q.reshape(B, nkv, nh // nkv, 1, hs).float()  # (B, nkv, rep, 1, hs): the heads sharing a key head
    scores = (qg * k[:, :, None].float()).sum(-1) * scale  # (B, nkv, rep, M)
    allowed = mask.reshape(mask.shape[0], 1, 1, M)
    scores = scores.masked_fill(~allowed, torch.finfo(torch.float32).min)
    pattern = torch.softmax(scores, dim=-1).masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)
    y = (pattern[..., None] * v[:, :, None].float()).sum(-2)  # (B, nkv, rep, hs)
    return y.reshape(B, nh, 1, hs).to(v.dtype)
