"""The solution's attention takes two short cuts on the way to the same scores: q, k and v are
made contiguous once (each is read by two matmuls), and the scale divides k^T and the two
projected relative tables instead of the three (B, nh, T, T) terms. These tests hold it equal
(1e-5, outputs, hook values and gradients, padding included) to the attention as the exercise
describes it: every term formed, then divided by the scale."""

from __future__ import annotations

import math

import pytest
import torch
from einops import rearrange
from transformers.models.deberta_v2 import modeling_deberta_v2 as hf_mod

from mlab_tfs.deberta import solution
from mlab_tfs.hooks import capture
from mlab_tfs.testing.compare import assert_close

from .helpers import DEBERTA_CONFIGS, assert_model_grads_close, config_of, load_into, right_padded_batch

pytestmark = pytest.mark.solution_only


def _as_written(attn: solution.DisentangledSelfAttention, x, keep, rel, rel_emb):
    """The exercise's formula: (q k^T / scale) + c2p / scale + p2c / scale, masked with finfo.min,
    softmax, @ v. Returns the context (B, T, H) and each term (B, nh, T, T) divided by the scale."""
    nh = attn.num_attention_heads
    heads = lambda t: rearrange(t, "b t (nh hs) -> b nh t hs", nh=nh)  # noqa: E731  (views, not copies)
    q, k, v = heads(attn.query_proj(x)), heads(attn.key_proj(x)), heads(attn.value_proj(x))
    scale = math.sqrt(attn.head_dim * attn.scale_factor)
    scores = torch.matmul(q, k.transpose(-1, -2)) / scale
    terms = {}
    if attn.relative_attention:
        table = rel_emb[: 2 * attn.att_span]
        per_head = lambda t: rearrange(t, "r (nh hs) -> nh r hs", nh=nh)  # noqa: E731
        if "c2p" in attn.pos_att_type:
            proj = attn.key_proj if attn.share_att_key else attn.pos_key_proj
            terms["c2p"] = solution.c2p_scores(q, per_head(proj(table)), rel, attn.att_span) / scale
        if "p2c" in attn.pos_att_type:
            proj = attn.query_proj if attn.share_att_key else attn.pos_query_proj
            terms["p2c"] = solution.p2c_scores(k, per_head(proj(table)), rel, attn.att_span) / scale
        for term in terms.values():
            scores = scores + term
    probs = torch.softmax(scores.masked_fill(~keep, torch.finfo(scores.dtype).min), dim=-1)
    return rearrange(torch.matmul(probs, v), "b nh t hs -> b t (nh hs)"), terms


def _inputs(cfg, seed=0):
    ids, mask, _ = right_padded_batch(cfg.vocab_size, [9, 4, 7], seed)
    T = ids.shape[1]
    keep = mask[:, None, :, None].bool() & mask[:, None, None, :].bool()  # (B, 1, T, T)
    x = torch.randn(3, T, cfg.hidden_size, generator=torch.Generator().manual_seed(seed)) * 2
    rel = rel_emb = None
    if cfg.relative_attention:
        rel = hf_mod.build_relative_position(x, x, cfg.position_buckets, cfg.max_relative)[0]
        rel_emb = torch.randn(2 * cfg.att_span, cfg.hidden_size, generator=torch.Generator().manual_seed(seed + 1))
    return x, keep, rel, rel_emb


@pytest.mark.parametrize("name", list(DEBERTA_CONFIGS))
def test_attention_equals_the_written_formula(hf_models, name):
    cfg = config_of(hf_models[name])
    attn = solution.DisentangledSelfAttention(cfg)
    attn = load_into(attn, hf_models[name], "deberta.encoder.layer.0.attention.self.")
    x, keep, rel, rel_emb = _inputs(cfg)
    x.requires_grad_(True)
    points = [p for p in ("hook_c2p_scores", "hook_p2c_scores") if hasattr(attn, p)]
    with capture([getattr(attn, p) for p in points]) as seen:
        fast = attn(x, keep, rel, rel_emb)
    (fast * torch.linspace(-1, 1, fast.numel()).view_as(fast)).sum().backward()
    # Named as in a model, for the key-bias rule of assert_model_grads_close.
    grads = lambda: {f"encoder.layer.0.attention.self.{n}": p.grad.clone()  # noqa: E731
                     for n, p in attn.named_parameters() if p.grad is not None}
    fast_grads = grads()
    fast_dx = x.grad.clone()
    attn.zero_grad(), x.grad.zero_()

    written, terms = _as_written(attn, x, keep, rel, rel_emb)
    (written * torch.linspace(-1, 1, written.numel()).view_as(written)).sum().backward()
    written_grads = grads()

    assert float(written.detach().abs().max()) > 0.1, "the reference context is not degenerate"
    assert_close(fast, written, name=f"context ({name})", atol=1e-5)
    for point, value in zip(points, seen):
        term = terms["c2p" if "c2p" in point else "p2c"]
        assert float(term.detach().abs().max()) > 1e-3
        assert_close(value, term, name=f"{point} ({name})", atol=1e-5)
    assert len(points) == len(terms) == len(cfg.pos_att_type) * cfg.relative_attention
    assert_close(fast_dx, x.grad, name=f"d context / d x ({name})", atol=1e-5)
    assert set(fast_grads) == set(written_grads) and fast_grads
    assert_model_grads_close(fast_grads, written_grads, cfg)


def test_the_scale_divides_small_tensors_only():
    """The (B, nh, T, T) scores are never divided: each division in the v3 attention is of k^T or
    of a projected table (nh, 2k, hs)."""
    cfg = solution.DebertaV2Config(**{k: v for k, v in DEBERTA_CONFIGS["v3"].items() if k != "legacy"})
    attn = solution.DisentangledSelfAttention(cfg).eval()
    x, keep, rel, rel_emb = _inputs(cfg)
    divided = []
    real_div = torch.Tensor.__truediv__

    def spy(self, other):
        divided.append(tuple(self.shape))
        return real_div(self, other)

    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.Tensor, "__truediv__", spy)
        attn(x, keep, rel, rel_emb)
    B, T, nh, hs, k2 = x.shape[0], x.shape[1], cfg.num_attention_heads, cfg.head_dim, 2 * cfg.att_span
    assert sorted(divided) == sorted([(B, nh, hs, T), (nh, k2, hs), (nh, k2, hs)]), divided
