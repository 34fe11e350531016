"""mlab_tfs.attention: the fused-kernel path and its rule for queries that see no key,
against a softmax written out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from mlab_tfs.attention import additive_mask, check_attn_implementation, sdpa, sees_any_key
from mlab_tfs.testing.compare import assert_close


def _qkv(T, S, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 3, T, 4, generator=g), torch.randn(2, 3, S, 4, generator=g),
            torch.randn(2, 3, S, 4, generator=g))


def _by_hand(q, k, v, allowed, scale):
    """softmax over the allowed keys only; a query with none outputs 0."""
    scores = q @ k.transpose(-1, -2) * scale  # (B, nh, T, S)
    weights = torch.where(allowed, scores.exp(), 0.0)
    total = weights.sum(-1, keepdim=True)
    return torch.where(total > 0, weights / total.clamp_min(1e-30), 0.0) @ v


@pytest.mark.parametrize("T,S", [(4, 4), (2, 5), (1, 6)])
def test_is_causal_puts_the_queries_last(T, S):
    """With a cache the T queries are the last of S positions: query t sees keys 0..S-T+t,
    not the kernel's own top-left alignment (keys 0..t)."""
    q, k, v = _qkv(T, S)
    allowed = torch.ones(T, S, dtype=torch.bool).tril(S - T)
    assert_close(sdpa(q, k, v, None, 0.5, is_causal=True), _by_hand(q, k, v, allowed, 0.5),
                 name=f"sdpa(is_causal=True) with {T} queries over {S} keys", atol=1e-6,
                 mistakes={"the kernel's top-left causal mask": _by_hand(q, k, v, torch.ones(T, S).tril().bool(), 0.5)})


@pytest.mark.parametrize("dropout_p", [0.0, 0.5])
def test_a_query_that_sees_no_key_outputs_zero_and_passes_back_zero(dropout_p):
    q, k, v = (t.requires_grad_() for t in _qkv(4, 4, seed=1))
    pad = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    mask = torch.ones(4, 4, dtype=torch.bool).tril()[None, None] & pad[:, None, None, :]  # (2, 1, 4, 4)
    torch.manual_seed(0)
    y = sdpa(q, k, v, mask, 0.5, dropout_p=dropout_p)
    (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(2))).sum().backward()
    assert_close(y[0, :, :2], torch.zeros(3, 2, 4), name=f"outputs of queries that see no key (dropout {dropout_p})",
                 atol=0)
    assert_close(q.grad[0, :, :2], torch.zeros(3, 2, 4), name="gradient of those queries", atol=0)
    if dropout_p == 0.0:
        assert_close(y, _by_hand(q, k, v, mask, 0.5), name="sdpa with a padding mask", atol=1e-6)


def test_a_key_padding_mask_broadcasts_over_queries():
    """BERT's (B, 1, 1, S) mask; the second sequence is all padding."""
    q, k, v = _qkv(3, 3, seed=3)
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)[:, None, None, :]
    assert_close(sdpa(q, k, v, mask, 0.5), _by_hand(q, k, v, mask, 0.5), name="sdpa with a key padding mask",
                 atol=1e-6)


def test_bad_masks_are_refused_naming_them():
    q, k, v = _qkv(2, 5)
    with pytest.raises(TypeError, match=r"mask must be a bool tensor.*got a tensor of dtype torch.float32"):
        sdpa(q, k, v, torch.zeros(2, 5), 0.5)
    with pytest.raises(ValueError, match=r"mask must end in \(T or 1, S\) = \(2 or 1, 5\).*got shape \(5,\)"):
        sdpa(q, k, v, torch.ones(5, dtype=torch.bool), 0.5)
    with pytest.raises(ValueError, match=r"got shape \(2, 1, 3, 5\)"):
        sdpa(q, k, v, torch.ones(2, 1, 3, 5, dtype=torch.bool), 0.5)
    with pytest.raises(ValueError, match="either a mask or is_causal=True, not both"):
        sdpa(q, k, v, torch.ones(2, 5, dtype=torch.bool), 0.5, is_causal=True)
    with pytest.raises(ValueError, match="is_causal with 5 queries but 2 keys"):
        sdpa(k, q, q, None, 0.5, is_causal=True)
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        sees_any_key(torch.zeros(2, 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_additive_mask(dtype):
    mask = torch.tensor([[True, False], [False, False]])
    expected = torch.tensor([[0.0, torch.finfo(dtype).min], [torch.finfo(dtype).min] * 2], dtype=dtype)
    assert_close(additive_mask(mask, dtype), expected, name=f"additive_mask in {dtype}", atol=0)
    assert additive_mask(mask, dtype).dtype == dtype


@pytest.mark.parametrize("bad", ["flash_attention_2", "SDPA", "sdpa ", None, 0, math.nan])
def test_check_attn_implementation(bad):
    assert check_attn_implementation("eager") == "eager" and check_attn_implementation("sdpa") == "sdpa"
    with pytest.raises(ValueError, match=r"where: must be one of \('eager', 'sdpa'\), got"):
        check_attn_implementation(bad, "where:")


@pytest.mark.parametrize("has_gqa", [True, False], ids=["enable_gqa", "repeated (PyTorch < 2.5)"])
@pytest.mark.parametrize("masked", [False, True], ids=["causal", "masked"])
def test_enable_gqa_equals_the_repeated_heads(monkeypatch, has_gqa, masked):
    """Six query heads over two key/value heads: query head h reads kv head h // 3, the same
    numbers as repeating each kv head three times in a row (repeat_kv's layout)."""
    import mlab_tfs.attention as attention

    monkeypatch.setattr(attention, "_SDPA_HAS_GQA", has_gqa)
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 6, 5, 4, generator=g)
    k, v = torch.randn(2, 2, 5, 4, generator=g), torch.randn(2, 2, 5, 4, generator=g)
    k3, v3 = k.repeat_interleave(3, dim=1), v.repeat_interleave(3, dim=1)
    allowed = torch.ones(5, 5, dtype=torch.bool).tril()
    if masked:
        mask = allowed & torch.tensor([True, True, False, True, True])  # key 2 hidden too
        y, ref = sdpa(q, k, v, mask, 0.5, enable_gqa=True), _by_hand(q, k3, v3, mask, 0.5)
    else:
        y, ref = sdpa(q, k, v, None, 0.5, is_causal=True, enable_gqa=True), _by_hand(q, k3, v3, allowed, 0.5)
    assert_close(y, ref, name="sdpa(enable_gqa=True)", atol=1e-6)
    repeated = sdpa(q, k3, v3, mask if masked else None, 0.5, is_causal=not masked)
    assert_close(y, repeated, name="against repeated heads", atol=1e-6)
    assert not torch.allclose(y[:, 0], y[:, 3]), "heads 0 and 3 read different kv heads"


@pytest.mark.parametrize("has_gqa", [True, False], ids=["enable_gqa", "repeated (PyTorch < 2.5)"])
def test_grouped_heads_that_do_not_fit_are_refused(monkeypatch, has_gqa):
    """Fewer key/value heads than query heads without enable_gqa, or a count that does not
    divide q's, failed inside PyTorch's kernel (or, repeated before PyTorch 2.5, silently
    dropped heads); enable_gqa takes a bool only."""
    import mlab_tfs.attention as attention

    monkeypatch.setattr(attention, "_SDPA_HAS_GQA", has_gqa)
    q, k = torch.zeros(1, 6, 3, 4), torch.zeros(1, 4, 3, 4)
    with pytest.raises(ValueError, match="sdpa: q has 6 heads and k, v 4 and 4: with enable_gqa=True"):
        sdpa(q, k, k, None, 0.5, enable_gqa=True)
    with pytest.raises(ValueError, match=r"q has 6 heads and k, v 2 and 2.*\(enable_gqa=False\)"):
        sdpa(q, k[:, :2], k[:, :2], None, 0.5, is_causal=True)
    with pytest.raises(ValueError, match="q has 6 heads and k, v 2 and 3"):
        sdpa(q, k[:, :2], k[:, :3], None, 0.5, enable_gqa=True)
    with pytest.raises(TypeError, match="sdpa: enable_gqa must be True or False, got str 'yes'"):
        sdpa(q, k[:, :2], k[:, :2], None, 0.5, enable_gqa="yes")
