"""Exercises 1-8: each building block against PyTorch or transformers' own module."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from einops import rearrange

from mlab_tfs.gpt2.mistakes import MISTAKES as M
from mlab_tfs.testing.compare import assert_close, assert_grads_close
from mlab_tfs.testing.mistakes import likely
from mlab_tfs.testing.shortcuts import additive, no_shortcuts
from mlab_tfs.testing.tiny import hf_gpt2

from mlab_tfs.hooks import capture

from .helpers import config_of, hook_point, keep_mask, load_into, nearest, returns_tensor, zero_blind_rows


# ----------------------------------------------------------------------------- 1. layer norm


def _ln_reference_and_mistakes(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var_b = x.var(-1, keepdim=True, unbiased=False)
    var_u = x.var(-1, keepdim=True, unbiased=True)
    return F.layer_norm(x, x.shape[-1:], w, b, eps), {
        M["unbiased_variance"]: (x - mean) / torch.sqrt(var_u + eps) * w + b,
        M["eps_outside_sqrt"]: (x - mean) / (torch.sqrt(var_b) + eps) * w + b,
        M["no_eps"]: (x - mean) / torch.sqrt(var_b) * w + b,
        M["variance_not_std"]: (x - mean) / (var_b + eps) * w + b,
        M["weight_bias_swapped"]: (x - mean) / torch.sqrt(var_b + eps) * b + w,
        M["wrong_dim"]: (
            (x - x.mean(-2, keepdim=True)) / torch.sqrt(x.var(-2, keepdim=True, unbiased=False) + eps) * w + b
        ),
    }


@pytest.mark.exercise("layer_norm")
def test_layer_norm_parameters(gpt2):
    ln = gpt2.LayerNorm(16, eps=0.25)
    params = dict(ln.named_parameters())
    assert set(params) == {"weight", "bias"}, f"LayerNorm should have parameters weight and bias, has {sorted(params)}"
    assert torch.equal(ln.weight.detach(), torch.ones(16)), "LayerNorm.weight should start at ones"
    assert torch.equal(ln.bias.detach(), torch.zeros(16)), "LayerNorm.bias should start at zeros"
    assert ln.eps == 0.25, "keep eps as self.eps"


@pytest.mark.exercise("layer_norm")
@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_layer_norm_matches_torch(gpt2, eps):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16) * 3 + 1
    ln = gpt2.LayerNorm(16, eps=eps)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(16))
        ln.bias.copy_(torch.randn(16))
    with no_shortcuts((F, "layer_norm"), (torch, "layer_norm")):
        actual = ln(x)
    expected, mistakes = _ln_reference_and_mistakes(x, ln.weight.detach(), ln.bias.detach(), eps)
    assert_close(actual, expected, name="LayerNorm(x)", atol=1e-5, mistakes=mistakes,
                 hint="(x - mean) / sqrt(var + eps) * weight + bias, statistics over the last dim")


@pytest.mark.exercise("layer_norm")
def test_layer_norm_gradients(gpt2):
    torch.manual_seed(1)
    x = (torch.randn(3, 7, 12) * 2).requires_grad_()
    ln = gpt2.LayerNorm(12, eps=1e-5)
    ref = nn.LayerNorm(12, eps=1e-5)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(12))
        ln.bias.copy_(torch.randn(12))
        ref.load_state_dict(ln.state_dict())
    g = torch.randn(3, 7, 12)
    (ln(x) * g).sum().backward()
    x_grad = x.grad.clone()
    x.grad = None
    (ref(x) * g).sum().backward()
    assert_close(x_grad, x.grad, name="d LayerNorm(x) / dx", atol=1e-5,
                 hint="are you detaching the mean or the variance? Gradients must flow through both")
    assert_grads_close({n: p.grad for n, p in ln.named_parameters()}, {n: p.grad for n, p in ref.named_parameters()})


# ----------------------------------------------------------------------------- 2. embedding


@pytest.mark.exercise("embedding")
def test_embedding(gpt2):
    torch.manual_seed(0)
    emb = gpt2.Embedding(11, 6)
    assert isinstance(emb.weight, nn.Parameter), (
        f"Embedding.weight should be an nn.Parameter, got {type(emb.weight).__name__}\n  "
        f"{likely(M['weight_not_parameter'])}")
    shape = tuple(emb.weight.shape)
    assert shape == (11, 6), (
        f"Embedding.weight should be (num_embeddings, embedding_dim) = (11, 6), got {shape}"
        + (f"\n  {likely(M['weight_transposed'])}" if shape == (6, 11) else ""))
    ids = torch.tensor([[0, 3, 10], [10, 10, 1]])
    with no_shortcuts((F, "embedding")):
        actual = emb(ids)
    assert_close(actual, emb.weight.detach()[ids], name="Embedding(ids)", atol=0,
                 hint="row i of the weight is the vector of id i: index the weight with the ids")
    actual.sum().backward()
    counts = torch.bincount(ids.flatten(), minlength=11).float()[:, None].expand(11, 6)
    assert_close(emb.weight.grad, counts, name="Embedding.weight.grad", atol=0,
                 hint="each row's gradient is the number of times its id was looked up")


@pytest.mark.exercise("embedding")
def test_embedding_padding_idx_gets_no_gradient(gpt2):
    """BERT and DeBERTa build their word embeddings with this class and their pad id."""
    torch.manual_seed(0)
    emb = gpt2.Embedding(7, 4, padding_idx=2)
    assert emb.padding_idx == 2, "Embedding should store padding_idx as self.padding_idx"
    ids = torch.tensor([[2, 3, 2], [0, 2, 3]])
    out = emb(ids)
    rows = emb.weight.detach()[ids]
    assert_close(out, rows, name="Embedding(ids) with padding_idx", atol=0,
                 mistakes={M["padding_row_zeroed"]: rows.masked_fill((ids == 2)[..., None], 0.0)},
                 hint="padding_idx changes only the gradient, not the values looked up")
    out.sum().backward()
    expected = torch.bincount(ids.flatten(), minlength=7).float()[:, None].expand(7, 4).clone()
    trained = expected.clone()
    expected[2] = 0.0
    assert_close(emb.weight.grad, expected, name="Embedding.weight.grad with padding_idx=2", atol=0,
                 mistakes={M["padding_row_trained"]: trained},
                 hint="the padding row must get no gradient (torch's nn.Embedding(padding_idx=...)): "
                      "use the detached rows where ids == padding_idx")
    assert gpt2.Embedding(5, 3).padding_idx is None, "Embedding's padding_idx defaults to None"


# ----------------------------------------------------------------------------- 3. attention pattern


def _qk_mask(seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, 3, 4, 8, generator=g)
    k = torch.randn(2, 3, 6, 8, generator=g)
    mask = torch.rand(2, 1, 4, 6, generator=g) > 0.3
    mask[..., 0] = True
    mask[1, 0, 2] = False  # one fully masked row, as a padding query has
    return q, k, mask


UNIFORM_ROW = M["blind_row_uniform"]


def _pattern_reference(q, k, mask, scale):
    """By hand: softmax over the allowed keys; a query that sees no key gets a row of zeros
    (transformers' default sdpa path; its eager path leaves the uniform row)."""
    scores = q @ k.transpose(-1, -2) * scale
    return zero_blind_rows(torch.softmax(scores + additive(mask), dim=-1), mask)


@pytest.mark.exercise("attention_pattern")
def test_attention_pattern(gpt2):
    q, k, mask = _qk_mask()
    scale = 8**-0.5
    with no_shortcuts((F, "scaled_dot_product_attention")):
        actual = gpt2.attention_pattern(q, k, mask, scale)
    scores = q @ k.transpose(-1, -2)
    zero = lambda p: zero_blind_rows(p, mask)  # noqa: E731  (each mistake, with the rule kept)
    mistakes = {
        UNIFORM_ROW: torch.softmax(scores * scale + additive(mask), -1),
        M["no_scale"]: zero(torch.softmax(scores + additive(mask), -1)),
        M["divide_by_head_size"]: zero(torch.softmax(scores / 8 + additive(mask), -1)),
        M["softmax_over_queries"]:
            zero(torch.softmax(scores * scale + additive(mask), -2)),
        M["mask_inverted"]: zero_blind_rows(torch.softmax(scores * scale + additive(~mask), -1), ~mask),
        M["mask_with_inf"]: torch.softmax((scores * scale).masked_fill(~mask, -math.inf), -1),
        M["scores_times_mask"]: zero(torch.softmax(scores * scale * mask, -1)),
        M["mask_after_softmax"]: torch.softmax(scores * scale, -1).masked_fill(~mask, 0.0),
        M["zero_rows_by_own_key"]: zero(torch.softmax(scores * scale + additive(mask), -1)).masked_fill(
                ~mask.diagonal(offset=2, dim1=-2, dim2=-1)[..., None], 0.0),
    }
    assert_close(actual, _pattern_reference(q, k, mask, scale), name="attention_pattern(q, k, mask, scale)",
                 atol=1e-6, mistakes=mistakes,
                 hint="softmax over keys of q @ k^T * scale, masked where mask is False; rows of queries that see "
                      "no key are all 0")


@pytest.mark.exercise("attention_pattern")
def test_attention_pattern_without_mask(gpt2):
    q, k, _ = _qk_mask(1)
    actual = gpt2.attention_pattern(q, k, None, 0.5)
    assert_close(actual, torch.softmax(q @ k.transpose(-1, -2) * 0.5, -1), name="attention_pattern(q, k, None, 0.5)",
                 atol=1e-6, hint="mask=None means every query sees every key")


@pytest.mark.exercise("attention_pattern")
def test_attention_pattern_of_a_query_that_sees_no_key(gpt2):
    """A left-padding query: causal keys 0..t, all padding. Its row is exactly 0, whatever the
    keys hold, and no gradient flows through it."""
    q, k, _ = _qk_mask(4)
    pad = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    keep = torch.ones(4, 6, dtype=torch.bool).tril(2)[None, None] & pad[:, None, None, :]  # (2, 1, 4, 6)
    q = q.clone().requires_grad_()
    pattern = gpt2.attention_pattern(q, k, keep, 0.35)
    blind = ~keep.any(-1)  # (2, 1, 4): True for batch 0, query 0 only
    assert blind.sum() == 1 and blind[0, 0, 0]
    assert_close(pattern[0, :, 0], torch.zeros(3, 6), name="pattern row of a query that sees no key", atol=0,
                 mistakes={UNIFORM_ROW: torch.full((3, 6), 1 / 6)},
                 hint="pattern.masked_fill(~mask.any(-1, keepdim=True), 0): a query with no visible key attends to "
                      "nothing")
    (pattern * torch.randn(pattern.shape, generator=torch.Generator().manual_seed(6))).sum().backward()
    assert_close(q.grad[0, :, 0], torch.zeros(3, 8), name="d pattern / dq at a query that sees no key", atol=0,
                 mistakes={M["additive_inf_mask"]: torch.full((3, 8), math.nan)},
                 hint="zero the row with masked_fill or torch.where (not by multiplying a NaN row by 0): nothing may "
                      "flow back through a query that attends to nothing")
    seen = ~blind.expand(2, 3, 4)
    reference = _pattern_reference(q, k, keep, 0.35)
    first_key = reference.masked_fill(~keep[..., :1], 0.0)  # every row of the left-padded sequence zeroed
    assert_close(pattern[seen].detach(), reference[seen], name="pattern rows of queries that see a key", atol=1e-6,
                 mistakes={M["zero_rows_by_first_key"]: first_key[seen]})


@pytest.mark.exercise("attention_pattern")
def test_attention_pattern_gradients_of_masked_rows(gpt2):
    q, k, mask = _qk_mask(2)
    g = torch.randn(2, 3, 4, 6, generator=torch.Generator().manual_seed(3))
    grads = []
    for fn in (gpt2.attention_pattern, _pattern_reference):
        qq, kk = q.clone().requires_grad_(), k.clone().requires_grad_()
        (fn(qq, kk, mask, 0.3) * g).sum().backward()
        grads.append((qq.grad, kk.grad))
    hint = ("fill masked scores with torch.finfo(dtype).min (an added -inf mask makes a fully masked row NaN, and "
            "its backward NaN even after zeroing it) and zero the rows of queries that see no key with masked_fill")
    assert_close(grads[0][0], grads[1][0], name="d pattern / dq", atol=1e-6, hint=hint)
    assert_close(grads[0][1], grads[1][1], name="d pattern / dk", atol=1e-6, hint=hint)


@pytest.mark.exercise("attention_pattern")
def test_attention_pattern_in_float16_is_finite(gpt2):
    """finfo.min *added* to a float16 score of -16 or less rounds to -inf: a fully masked row
    of such scores is NaN after softmax. Filling (masked_fill) cannot overflow."""
    q = torch.full((1, 1, 2, 4), 4.0, dtype=torch.float16)
    k = torch.full((1, 1, 2, 4), -4.0, dtype=torch.float16)  # every score -64
    keep = torch.tensor([[False, False], [True, False]])[None, None]  # query 0 sees no key
    q.requires_grad_()
    pattern = gpt2.attention_pattern(q, k, keep, 1.0)
    expected = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float16)[None, None]
    assert_close(pattern, expected, name="float16 pattern with scores of -64", atol=0,
                 mistakes={UNIFORM_ROW: torch.tensor([[0.5, 0.5], [1.0, 0.0]], dtype=torch.float16)[None, None],
                           M["mask_after_softmax"]: torch.tensor([[0.0, 0.0], [0.5, 0.0]], dtype=torch.float16)[None, None]},
                 hint="masked_fill(~mask, finfo.min) rather than scores + finfo.min: -64 + finfo.min is -inf in "
                      "float16")
    pattern.float().sum().backward()
    finite = bool(torch.isfinite(q.grad).all())  # a plain bool: the message alone, no assert introspection
    assert finite, (
        f"float16 gradient through a fully masked row is not finite: {q.grad.flatten().tolist()}. The pattern is "
        "right, so a NaN arose on the way and was hidden in the forward. Often the row was zeroed after a NaN "
        "softmax: finfo.min *added* to a float16 score of -16 or less is -inf (as is an added -inf mask), and the "
        "softmax's backward through that row reaches q; fill the masked scores instead, "
        "scores.masked_fill(~mask, torch.finfo(scores.dtype).min). Or a row was divided by its sum, 0 for that row "
        "(a small float32 floor such as 1e-30 is 0 in float16)"
    )


# ----------------------------------------------------------------------------- 4. causal mask


@pytest.mark.exercise("causal_mask")
@pytest.mark.parametrize("q_len,k_len", [(1, 1), (5, 5), (2, 6), (1, 7)])
def test_causal_mask(gpt2, q_len, k_len):
    actual = gpt2.causal_mask(q_len, k_len)
    assert isinstance(actual, torch.Tensor) and actual.dtype == torch.bool, (
        f"causal_mask should return a bool tensor, got {getattr(actual, 'dtype', type(actual))}"
    )
    expected = torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len)
    ones = torch.ones(q_len, k_len, dtype=torch.bool)
    mistakes = {
        M["diagonal_left_out"]: ones.tril(k_len - q_len - 1),
        M["upper_triangle"]: ones.triu(k_len - q_len),
        M["offset_ignored"]: ones.tril(),
        M["offset_off_by_one"]: ones.tril(k_len - q_len + 1),
    }
    assert_close(actual.float(), expected.float(), name=f"causal_mask({q_len}, {k_len})", atol=0,
                 mistakes={k: v.float() for k, v in mistakes.items()})


@pytest.mark.exercise("causal_mask")
def test_causal_mask_device(gpt2):
    assert gpt2.causal_mask(3, 4, device="cpu").device.type == "cpu", "causal_mask should honour device="


# ----------------------------------------------------------------------------- 5. attention


def _attention_by_hand(hf_attn, x, keep, *, scale=None, split_heads_first=False, heads="nh hs",
                       merge="b t (nh hs)"):
    """(pattern, output) of transformers' attention layer recomputed from its weights, one step
    done otherwise where an argument says so (what a mistake gives); rows of queries that see no
    key zeroed, as transformers' default path. keep: bool (B or 1, 1, T, T), or None: every key.
    heads: how each of q, k, v's C features are read as heads ("hs nh": hs outermost)."""
    B, T, C = x.shape
    nh = hf_attn.num_heads
    hs = C // nh
    qkv = hf_attn.c_attn(x)  # (B, T, 3C): [q | k | v]
    if split_heads_first:
        q, k, v = rearrange(qkv, "b t (nh three hs) -> three b nh t hs", three=3, nh=nh)
    else:
        q, k, v = (rearrange(t, f"b t ({heads}) -> b nh t hs", nh=nh) for t in qkv.split(C, dim=-1))
    scores = q @ k.transpose(-1, -2) * (hs**-0.5 if scale is None else scale)  # (B, nh, T, T)
    if keep is None:
        pattern = torch.softmax(scores, dim=-1)
    else:
        pattern = zero_blind_rows(torch.softmax(scores + additive(keep), dim=-1), keep)
    y = pattern @ v  # (B, nh, T, hs)
    merged = y.reshape(B, T, C) if merge == "view" else rearrange(y, f"b nh t hs -> {merge}")
    return pattern, hf_attn.c_proj(merged)


def _attention_mistakes(hf_attn, x, keep):
    """{mistake: (pattern, output)} of the attention layer's common mistakes."""
    C = x.shape[-1]
    return {
        M["scale_by_n_embd"]: _attention_by_hand(hf_attn, x, keep, scale=C**-0.5),
        M["attention_unscaled"]: _attention_by_hand(hf_attn, x, keep, scale=1.0),
        M["qkv_split_wrong"]: _attention_by_hand(hf_attn, x, keep, split_heads_first=True),
        # Split and merged the same wrong way: the pattern shows it.
        M["heads_split_wrong_order"]: _attention_by_hand(hf_attn, x, keep, heads="hs nh", merge="b t (hs nh)"),
    }


@pytest.mark.exercise("attention")
@pytest.mark.parametrize("padded", [False, True], ids=["causal", "causal+padding"])
def test_attention_matches_transformers(gpt2, hf_base, hf_default_base, padded):
    """Against transformers' default (sdpa) attention; the pattern, which that path does not
    return, against its eager path's with the rows of queries that see no key zeroed."""
    cfg = config_of(hf_base)
    attn = load_into(gpt2.GPT2Attention(cfg, layer_idx=1), hf_base, "transformer.h.1.attn.")
    torch.manual_seed(0)
    x = torch.randn(2, 5, cfg.n_embd)
    pad = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]) if padded else None
    keep = keep_mask(pad, 5, 5)
    with no_shortcuts((F, "scaled_dot_product_attention"), (nn.MultiheadAttention, "forward")):
        with capture([hook_point(attn, "hook_pattern")]) as seen:
            out = returns_tensor(attn(x, keep), "GPT2Attention.forward")
    pattern = seen[0]
    assert pattern is not None, "hook_pattern never ran: call self.hook_pattern(pattern) after the softmax"
    with torch.no_grad():
        expected = hf_default_base.transformer.h[1].attn(x, attention_mask=keep)[0]
        hf_attn = hf_base.transformer.h[1].attn
        eager_out, eager_pattern = hf_attn(x, attention_mask=additive(keep))
        mistakes = _attention_mistakes(hf_attn, x, keep)
        merged_otherwise = [_attention_by_hand(hf_attn, x, keep, merge=m)[1] for m in ("view", "b t (hs nh)")]
    assert_close(pattern, zero_blind_rows(eager_pattern, keep), name="attention pattern (hook_pattern)",
                 atol=1e-6, mistakes={UNIFORM_ROW: eager_pattern, **{m: p for m, (p, _) in mistakes.items()}},
                 hint="split c_attn's output into q, k, v in that order, then heads: (B, T, C) -> (B, nh, T, hs)")
    assert_close(out, expected, name="GPT2Attention output", atol=1e-5,
                 mistakes={UNIFORM_ROW: eager_out, **{m: o for m, (_, o) in mistakes.items()},
                           M["heads_merged_wrong_order"]: nearest(out, *merged_otherwise)},
                 hint="pattern @ v, heads merged back to (B, T, C) in the same order they were split, then c_proj")


@pytest.mark.exercise("attention")
def test_attention_without_mask_is_causal(gpt2, hf_base):
    cfg = config_of(hf_base)
    attn = load_into(gpt2.GPT2Attention(cfg, layer_idx=0), hf_base, "transformer.h.0.attn.")
    x = torch.randn(2, 6, cfg.n_embd, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = hf_base.transformer.h[0].attn(x, attention_mask=additive(keep_mask(None, 6, 6)))[0]
        seeing_all = _attention_by_hand(hf_base.transformer.h[0].attn, x, None)[1]
        assert_close(attn(x), expected, name="GPT2Attention output with attention_mask=None", atol=1e-5,
                     mistakes={M["causal_mask_missing"]: seeing_all},
                     hint="attention_mask=None means causal only: build causal_mask(T, S) when none is given")


@pytest.mark.exercise("attention")
def test_attention_gradients(gpt2, hf_base, hf_default_base):
    """Gradients with a padding query that sees no key, against transformers' default path."""
    cfg = config_of(hf_base)
    hf_attn = hf_default_base.transformer.h[0].attn
    attn = load_into(gpt2.GPT2Attention(cfg, layer_idx=0), hf_base, "transformer.h.0.attn.")
    keep = keep_mask(torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]), 4, 4)
    x = torch.randn(2, 4, cfg.n_embd, generator=torch.Generator().manual_seed(1))
    g = torch.randn(2, 4, cfg.n_embd, generator=torch.Generator().manual_seed(2))
    hf_attn.zero_grad()
    (attn(x, keep) * g).sum().backward()
    (hf_attn(x, attention_mask=keep)[0] * g).sum().backward()
    expected = {n: (p.grad.t() if n.endswith("weight") else p.grad) for n, p in hf_attn.named_parameters()}
    assert_grads_close({n: p.grad for n, p in attn.named_parameters()}, expected, rtol=1e-5,
                       hint="a query that sees no key (the padding query) must output zero and pass back no gradient")
    hf_attn.zero_grad()


@pytest.mark.exercise("attention")
def test_padding_query_reads_no_later_token(gpt2, hf_base):
    """transformers' eager path gives a query that sees no key the mean of *every* value,
    later tokens' included; here its output is exactly c_proj's bias whatever comes later."""
    cfg = config_of(hf_base)
    attn = load_into(gpt2.GPT2Attention(cfg, layer_idx=0), hf_base, "transformer.h.0.attn.")
    keep = keep_mask(torch.tensor([[0, 0, 1, 1, 1]]), 5, 5)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 5, cfg.n_embd, generator=g)
    changed = x.clone()
    changed[:, 2:] = torch.randn(1, 3, cfg.n_embd, generator=g) * 3  # the later, real tokens
    with torch.no_grad():
        out, later = attn(x, keep), attn(changed, keep)
        leaky = hf_base.transformer.h[0].attn(changed, attention_mask=additive(keep))[0]
    bias = attn.c_proj.bias.detach().expand(2, cfg.n_embd)
    assert_close(later[0, :2], bias, name="output of the padding queries after later tokens changed", atol=1e-6,
                 mistakes={UNIFORM_ROW: leaky[0, :2]})
    assert_close(later[0, :2], out[0, :2], name="padding queries' output, later tokens changed", atol=0)


# ----------------------------------------------------------------------------- 6. GELU


@pytest.mark.exercise("gelu")
def test_gelu_new(gpt2):
    from transformers.activations import NewGELUActivation

    x = torch.linspace(-8, 8, 401)
    with no_shortcuts((F, "gelu")):
        actual = gpt2.gelu_new(x)
    mistakes = {
        M["erf_gelu"]: F.gelu(x),
        M["sigmoid_gelu"]: x * torch.sigmoid(1.702 * x),
        M["x_squared"]: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**2))),
        M["missing_half"]: x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    }
    assert_close(actual, NewGELUActivation()(x), name="gelu_new(x)", atol=1e-6, mistakes=mistakes,
                 hint="0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))")


# ----------------------------------------------------------------------------- 7. MLP


@pytest.mark.exercise("mlp")
def test_mlp_matches_transformers(gpt2, checkpoints):
    hf = hf_gpt2(checkpoints["deep_narrow_heads"])  # n_inner != 4 * n_embd
    cfg = config_of(hf)
    mlp = gpt2.GPT2MLP(cfg)
    shape = tuple(getattr(getattr(mlp, "c_fc", None), "weight", torch.empty(0)).shape)
    assert shape == (cfg.n_inner, cfg.n_embd), (
        f"GPT2MLP.c_fc.weight should be (n_inner, n_embd) = {(cfg.n_inner, cfg.n_embd)}, got {shape}"
        + (f"\n  {likely(M['n_inner_ignored'])}" if shape == (4 * cfg.n_embd, cfg.n_embd) else ""))
    mlp = load_into(mlp, hf, "transformer.h.2.mlp.")
    x = torch.randn(3, 4, cfg.n_embd, generator=torch.Generator().manual_seed(0))
    hf_mlp = hf.transformer.h[2].mlp
    with torch.no_grad():
        mistakes = {M["mlp_erf_gelu"]: hf_mlp.c_proj(F.gelu(hf_mlp.c_fc(x))),
                    M["no_activation"]: hf_mlp.c_proj(hf_mlp.c_fc(x))}
        assert_close(mlp(x), hf_mlp(x), name="GPT2MLP output", atol=1e-5, mistakes=mistakes,
                     hint="c_fc (C -> n_inner, 4C when n_inner is None), gelu_new, c_proj, dropout")


# ----------------------------------------------------------------------------- 8. block


@pytest.mark.exercise("block")
def test_block_matches_transformers(gpt2, hf_base, hf_default_base):
    cfg = config_of(hf_base)
    hf_block = hf_default_base.transformer.h[1]
    block = load_into(gpt2.GPT2Block(cfg, layer_idx=1), hf_base, "transformer.h.1.")
    x = torch.randn(2, 5, cfg.n_embd, generator=torch.Generator().manual_seed(0)) * 2
    keep = keep_mask(torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]), 5, 5)
    with torch.no_grad():
        out = returns_tensor(block(x, keep), "GPT2Block.forward")
        a = hf_block.attn(hf_block.ln_1(x), attention_mask=keep)[0]
        h_post = hf_block.ln_1(x + hf_block.attn(x, attention_mask=keep)[0])
        mistakes = {
            M["post_ln"]:
                hf_block.ln_2(h_post + hf_block.mlp(h_post)),
            M["no_attn_residual"]: a + hf_block.mlp(hf_block.ln_2(a)),
            M["no_mlp_residual"]: hf_block.mlp(hf_block.ln_2(x + a)),
            M["ln_1_twice"]: x + a + hf_block.mlp(hf_block.ln_1(x + a)),
            UNIFORM_ROW: hf_base.transformer.h[1](x, attention_mask=additive(keep)),
        }
        assert_close(out, hf_block(x, attention_mask=keep), name="GPT2Block output", atol=1e-5, mistakes=mistakes,
                     hint="x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))")
