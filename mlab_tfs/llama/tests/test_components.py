"""The building blocks against transformers' own functions and modules
(models/llama/modeling_llama.py, models/qwen3/modeling_qwen3.py), and the two rotary layouts
against each other."""

from __future__ import annotations

import pytest
import torch
from transformers.models.llama import modeling_llama as hf

from mlab_tfs.testing.compare import assert_close


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_rms_norm_equals_transformers_in_every_dtype(llama, dtype):
    """fp32 statistics, cast back to the input's dtype, then times the (fp32) weight: bit for bit."""
    x = _randn(3, 5, 16, dtype=dtype) * 4
    ours, theirs = llama.RMSNorm(16, eps=1e-3), hf.LlamaRMSNorm(16, eps=1e-3)
    with torch.no_grad():
        ours.weight.copy_(_randn(16, seed=1))
        theirs.weight.copy_(ours.weight)
    a, b = ours(x), theirs(x)
    assert a.dtype == b.dtype and torch.equal(a, b)


def test_rms_norm_by_hand(llama):
    x = torch.tensor([[3.0, -4.0]])
    norm = llama.RMSNorm(2, eps=0.5)
    # mean(x^2) = 12.5; sqrt(12.5 + 0.5) = sqrt(13)
    assert_close(norm(x), x / 13**0.5, name="RMSNorm([3, -4], eps=0.5)", atol=1e-7)


def test_rotate_half_and_rotary_equal_transformers(llama):
    q, k = _randn(2, 4, 5, 8), _randn(2, 2, 5, 8, seed=1)
    assert torch.equal(llama.rotate_half(q), hf.rotate_half(q))
    assert torch.equal(llama.rotate_half(torch.arange(4.0)), torch.tensor([-2.0, -3.0, 0.0, 1.0]))
    angle = torch.arange(5.0)[None, :, None] * torch.tensor([1.0, 0.1, 0.01, 0.001]).repeat(2)[None, None]
    cos, sin = angle.cos().expand(2, 5, 8), angle.sin().expand(2, 5, 8)
    for a, b in zip(llama.apply_rotary_pos_emb(q, k, cos, sin), hf.apply_rotary_pos_emb(q, k, cos, sin)):
        assert_close(a, b, name="apply_rotary_pos_emb", atol=1e-7)


def test_scores_depend_on_relative_position_only(llama):
    """q at position t and k at s: the rotated dot product is the same for every (t, s) with one t - s."""
    cfg = llama.LlamaConfig(hidden_size=32, num_attention_heads=2, head_dim=16, num_hidden_layers=1)
    rope = llama.LlamaRotaryEmbedding(cfg)
    q, k = _randn(1, 1, 1, 16), _randn(1, 1, 1, 16, seed=1)

    def score(t, s):
        cq, sq = rope(q, torch.tensor([[t]]))
        ck, sk = rope(k, torch.tensor([[s]]))
        return (llama.apply_rotary_pos_emb(q, q, cq, sq)[0] * llama.apply_rotary_pos_emb(k, k, ck, sk)[0]).sum()

    assert_close(score(7, 3), score(4, 0), name="score(7, 3) vs score(4, 0)", atol=1e-5)
    assert_close(score(100, 96), score(4, 0), name="score(100, 96) vs score(4, 0)", atol=1e-4)
    assert (score(7, 3) - score(7, 4)).abs() > 1e-3


def test_repeat_kv_equals_transformers_and_repeat_interleave(llama):
    x = _randn(2, 3, 4, 5)
    for n in (1, 2, 4):
        assert torch.equal(llama.repeat_kv(x, n), hf.repeat_kv(x, n))
        assert torch.equal(llama.repeat_kv(x, n), x.repeat_interleave(n, dim=1))
    # Heads kv0, kv0, kv1, kv1, ...: query head h reads kv head h // n_rep.
    assert torch.equal(llama.repeat_kv(x, 2)[:, 1], x[:, 0]) and torch.equal(llama.repeat_kv(x, 2)[:, 2], x[:, 1])


def test_swiglu_mlp_equals_transformers(llama):
    cfg = llama.LlamaConfig(hidden_size=12, intermediate_size=20, num_attention_heads=2, num_hidden_layers=1,
                            mlp_bias=True)
    import transformers

    theirs = hf.LlamaMLP(transformers.LlamaConfig(hidden_size=12, intermediate_size=20, mlp_bias=True,
                                                  num_attention_heads=2))
    ours = llama.LlamaMLP(cfg)
    ours.load_state_dict(theirs.state_dict())
    x = _randn(2, 3, 12)
    assert_close(ours(x), theirs(x), name="LlamaMLP", atol=1e-6)


def test_interleaved_layout_needs_the_qk_permutation(llama):
    """Meta's interleaved rotation on weights W gives the same scores as transformers'
    rotate-half rotation on W with its rows permuted (convert_llama_weights_to_hf.py's permute);
    rotate-half on the unpermuted W gives other scores."""
    nh, hd, C, T = 2, 8, 16, 6
    wq, wk, x = _randn(nh * hd, C), _randn(nh * hd, C, seed=1), _randn(T, C, seed=2)
    inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
    angle = torch.arange(T).float()[:, None] * inv[None]  # (T, hd/2)
    cos_i, sin_i = angle.cos().repeat_interleave(2, -1), angle.sin().repeat_interleave(2, -1)  # per pair
    cos_h, sin_h = angle.cos().repeat(1, 2), angle.sin().repeat(1, 2)  # per half

    def heads(w):
        return (x @ w.T).view(T, nh, hd).transpose(0, 1)  # (nh, T, hd)

    def interleaved(w):
        h = heads(w)
        return h * cos_i + llama.rotate_interleaved(h) * sin_i

    def half(w):
        h = heads(w)
        return h * cos_h + llama.rotate_half(h) * sin_h

    meta = interleaved(wq) @ interleaved(wk).transpose(-1, -2)
    permuted = half(llama.interleaved_to_half(wq, nh)) @ half(llama.interleaved_to_half(wk, nh)).transpose(-1, -2)
    assert_close(permuted, meta, name="scores, rotate-half on permuted weights", atol=1e-4)
    unpermuted = half(wq) @ half(wk).transpose(-1, -2)
    assert (unpermuted - meta).abs().max() > 1e-2
    # The permutation is transformers' conversion script's.
    ref = wq.view(nh, hd // 2, 2, C).transpose(1, 2).reshape(nh * hd, C)
    assert torch.equal(llama.interleaved_to_half(wq, nh), ref)
    assert torch.equal(llama.rotate_interleaved(torch.arange(4.0)), torch.tensor([-1.0, 0.0, -3.0, 2.0]))
