"""Helpers of the DeBERTa tests. The tiny random checkpoints (DEBERTA_CONFIGS,
deberta_checkpoint, hf_deberta) live in mlab_tfs.testing.tiny with the other parts'."""

from __future__ import annotations

import math

import torch

from mlab_tfs.deberta import solution
from mlab_tfs.testing.tiny import DEBERTA_CONFIGS, deberta_checkpoint, hf_deberta, load_submodule  # noqa: F401

def config_of(hf_model) -> solution.DebertaV2Config:
    return solution.DebertaV2Config.from_dict(hf_model.config.to_dict())


def load_into(module: torch.nn.Module, hf_model, prefix: str = "") -> torch.nn.Module:
    """Copy a transformers DeBERTa's weights into one of our modules (prefix picks a submodule),
    with the solution's name map, so component tests don't depend on later exercises."""
    return load_submodule(module, solution.mlm_from_hf_state_dict(hf_model.state_dict(), config_of(hf_model)), prefix)


def right_padded_batch(vocab_size: int, lengths: list[int], seed: int = 0, type_vocab_size: int = 0):
    """Random sequences of the given lengths, right-padded with id 0 (BERT-style).

    Returns input_ids, attention_mask (long) and token_type_ids (None when type_vocab_size is 0;
    else segment 0 then segment 1 over the real tokens).
    """
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(1, vocab_size, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    ids = ids.masked_fill(mask == 0, 0)
    types = None
    if type_vocab_size > 0:
        types = torch.zeros_like(ids)
        for b, n in enumerate(lengths):
            types[b, n // 2 : n] = 1
    return ids, mask, types


def mlm_labels(ids: torch.Tensor, mask: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Labels on about half the real tokens, -100 elsewhere."""
    g = torch.Generator().manual_seed(seed + 1000)
    chosen = (torch.rand(ids.shape, generator=g) < 0.5) & mask.bool()
    chosen[:, 0] |= mask[:, 0].bool()  # at least one scored token per row
    return ids.masked_fill(~chosen, -100)


def named_grads(model: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    """Gradients by parameter name; a tied parameter is listed once, under its first name."""
    return {n: p.grad for n, p in model.named_parameters()}


def is_key_bias(name: str) -> bool:
    """key_proj.bias and pos_key_proj.bias: gradients made of cancelling terms.

    Softmax ignores a constant added to a whole row of scores. A key bias b adds q_i . b to
    every score of row i (content term), and a pos_key_proj bias adds q_i . b through c2p:
    in exact arithmetic neither has any gradient through those terms. In float32 they come
    out as the difference of large, nearly equal sums: noise of about 1e-7 x the key
    weight's gradient, on both sides (the fp64 gradients of the two implementations agree
    to 1e-12). Only p2c (k_j . Qr, which varies along a row) gives key_proj.bias a real
    gradient, which can be smaller than the weight's by 1e3, so a comparison relative to the
    bias's own largest entry measures the noise, not the code.
    """
    return name.endswith(("attention.self.key_proj.bias", "attention.self.pos_key_proj.bias"))


def assert_model_grads_close(actual: dict, expected: dict, config: solution.DebertaV2Config, hint: str | None = None):
    """Every gradient within 1e-5 relative (per parameter, to its largest entry), except the
    key biases (see is_key_bias): those within 1e-5 x the largest gradient entry of the same
    layer's key_proj.weight, the scale of their rounding noise."""
    __tracebackhide__ = True  # failures point at the test's line
    from mlab_tfs.testing.compare import Mismatch, assert_grads_close

    keys = {n for n in expected if is_key_bias(n)}
    assert_grads_close({k: v for k, v in actual.items() if k not in keys},
                       {k: v for k, v in expected.items() if k not in keys}, rtol=1e-5, hint=hint)
    for name in sorted(keys):
        bound = 1e-5 * float(expected[name.rsplit(".", 2)[0] + ".key_proj.weight"].abs().max())
        a, e = actual.get(name), expected[name]
        if a is None or a.shape != e.shape or float((a - e).abs().max()) > bound:
            err = "missing" if a is None else (
                f"shape {tuple(a.shape)}" if a.shape != e.shape else f"off by {float((a - e).abs().max()):.3g}")
            raise Mismatch(f"gradient of {name}: {err}, allowed {bound:.3g} (1e-5 x the key weight's gradient)"
                           + (f"\n  hint: {hint}" if hint else ""))


def assert_attention_points(points: dict, hf_self, cfg: solution.DebertaV2Config, x: torch.Tensor,
                            table: torch.Tensor | None, mask: torch.Tensor, where: str = "") -> None:
    """The hook points of one DisentangledSelfAttention (``points``: short name -> value) by hand,
    from transformers' module ``hf_self`` with the same weights, its input x (B, T, H), the
    relative table (2k, H) and the padding mask (B, T) bool: hook_q/k/v the projections split
    into (B, T, nh, hs); hook_c2p_scores = q_i . Kr[clamp(r(i, j) + k)] / scale and
    hook_p2c_scores = k_j . Qr[clamp(-r(j, i) + k)] / scale (Kr, Qr: the table through the
    key/query projections, or pos_key_proj/pos_query_proj); hook_attn_scores their sum with the
    content term, finfo.min where masked; hook_pattern its softmax; hook_z = pattern @ v."""
    __tracebackhide__ = True  # failures point at the test's line
    from transformers.models.deberta_v2 import modeling_deberta_v2 as hf_mod

    from mlab_tfs.testing.compare import assert_close

    heads = lambda t: t.reshape(*t.shape[:-1], cfg.num_attention_heads, cfg.head_dim)  # noqa: E731
    shape_hint = "hook_q/k/v/z are (batch, pos, head, d_head): split H into (nh, hs) before moving the heads forward"
    T, k = x.shape[1], cfg.att_span
    scale = math.sqrt(cfg.head_dim * (1 + len(cfg.pos_att_type)))
    keep = mask[:, None, :, None] & mask[:, None, None, :]  # (B, 1, T, T)
    q, key, v = (heads(proj(x)) for proj in (hf_self.query_proj, hf_self.key_proj, hf_self.value_proj))
    for name, value in (("hook_q", q), ("hook_k", key), ("hook_v", v)):
        assert name in points, f"nothing passed through {where}{name}"
        assert_close(points[name], value, name=where + name, atol=1e-5, hint=shape_hint)
    total = torch.einsum("bihd,bjhd->bhij", q, key) / scale  # content -> content
    terms = [t for t in ("c2p", "p2c") if cfg.relative_attention and t in cfg.pos_att_type]
    if terms:
        rel = hf_mod.build_relative_position(x, x, cfg.position_buckets, cfg.max_relative)[0]  # (T, T)
        table = table[: 2 * k]
    for term in terms:
        if term == "c2p":
            proj = hf_self.key_proj if cfg.share_att_key else hf_self.pos_key_proj
            row = (rel + k).clamp(0, 2 * k - 1)  # (T, T): the table row of the pair (i, j)
            value = torch.einsum("bihd,ijhd->bhij", q, heads(proj(table))[row]) / scale
        else:
            proj = hf_self.query_proj if cfg.share_att_key else hf_self.pos_query_proj
            row = (-rel.T + k).clamp(0, 2 * k - 1)  # p2c reads row -r(j, i) + k for the pair (i, j)
            value = torch.einsum("bjhd,ijhd->bhij", key, heads(proj(table))[row]) / scale
        assert f"hook_{term}_scores" in points, f"nothing passed through {where}hook_{term}_scores"
        assert_close(points[f"hook_{term}_scores"], value, name=f"{where}hook_{term}_scores", atol=1e-5,
                     hint=f"hook_{term}_scores is the {term} term divided by the scale, before it is added")
        total = total + value
    scores = points["hook_attn_scores"]
    assert_close(torch.where(keep, scores, 0.0), torch.where(keep, total, 0.0),
                 name=f"{where}hook_attn_scores (unmasked entries)", atol=1e-5,
                 hint="hook_attn_scores: (q k^T + c2p + p2c) / scale, after the masked_fill")
    assert bool((scores[~keep.expand_as(scores)] == torch.finfo(scores.dtype).min).all()), (
        f"masked entries of {where}hook_attn_scores must be torch.finfo(dtype).min (pass the scores through it after "
        f"the masked_fill)")
    pattern = points["hook_pattern"]
    assert_close(pattern, torch.softmax(scores, -1), name=f"{where}hook_pattern", atol=1e-6,
                 hint="hook_pattern: the softmax of the masked scores, before dropout")
    real_query_pad_key = (mask[:, None, :, None] & ~mask[:, None, None, :]).expand_as(pattern)
    assert bool((pattern[real_query_pad_key] == 0).all()), "a real query must give padded keys exactly zero weight"
    assert_close(points["hook_z"], torch.einsum("bhij,bjhd->bihd", pattern, v), name=f"{where}hook_z", atol=1e-5,
                 hint=shape_hint)
