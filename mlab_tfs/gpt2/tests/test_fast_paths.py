"""The solution's fast paths (attn_implementation="sdpa", the static KV cache) equal the
hand-written attention ("eager"), padding rows included. The fused layer norms and GELUs of the
default path: mlab_tfs/tests/test_fused.py."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.gpt2 import solution
from mlab_tfs.testing.compare import assert_close, assert_grads_close
from mlab_tfs.testing.tiny import GPT2_CONFIGS, left_padded_batch

from .test_kv_cache import _steps

pytestmark = pytest.mark.solution_only


def _both(folder):
    eager = solution.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager")
    sdpa = solution.GPT2LMHeadModel.from_pretrained(folder)
    assert sdpa.config.attn_implementation == "sdpa", "sdpa is the default, as in transformers"
    assert eager.config.attn_implementation == "eager"
    return eager, sdpa


@pytest.mark.parametrize("name", list(GPT2_CONFIGS))
@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left-padded"])
def test_sdpa_equals_eager_outputs_and_gradients(checkpoints, name, padded):
    eager, sdpa = _both(checkpoints[name])
    if padded:
        ids, mask, pos = left_padded_batch(eager.config.vocab_size, [6, 2, 5], seed=4)
        kwargs = dict(attention_mask=mask, position_ids=pos)
    else:
        ids = torch.randint(0, eager.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(4))
        mask, kwargs = torch.ones_like(ids), {}
    labels = ids.masked_fill(mask == 0, -100)
    a, b = eager(ids, labels=labels, **kwargs), sdpa(ids, labels=labels, **kwargs)
    # Padding rows included: on both paths a query that sees no key outputs 0.
    assert_close(b.logits, a.logits, name="sdpa logits", atol=1e-5)
    assert_close(b.loss, a.loss, name="sdpa loss", atol=1e-6)
    a.loss.backward()
    b.loss.backward()
    assert_grads_close({n: p.grad for n, p in sdpa.named_parameters()},
                       {n: p.grad for n, p in eager.named_parameters()}, rtol=1e-5)


def test_sdpa_with_cache_and_padding(checkpoints):
    eager, sdpa = _both(checkpoints["base"])
    ids, mask, _ = left_padded_batch(97, [7, 3], seed=5)
    with torch.no_grad():
        a, past_a = _steps(eager, ids, mask, prefix=3)
        b, past_b = _steps(sdpa, ids, mask, prefix=3)
    assert_close(b, a, name="sdpa logits through the cache", atol=1e-5)
    for (ka, va), (kb, vb) in zip(past_a, past_b):
        assert_close(kb, ka, name="sdpa cached keys", atol=1e-6)
        assert_close(vb, va, name="sdpa cached values", atol=1e-6)


def test_sdpa_falls_back_for_attention_patterns(checkpoints):
    eager, sdpa = _both(checkpoints["base"])
    ids = torch.randint(0, 97, (1, 6), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        a = eager(ids, output_attentions=True).attentions
        b = sdpa(ids, output_attentions=True).attentions
    for i, (x, y) in enumerate(zip(a, b)):
        assert_close(y, x, name=f"sdpa attentions[{i}]", atol=0)


# ---------------------------------------------------------------------------------------
# Static KV cache (KVCache.static, fast.static_forward): the same logits as a full pass and as
# the dynamic cache
# ---------------------------------------------------------------------------------------

from mlab_tfs.gpt2 import fast  # noqa: E402


def _static_steps(model, ids, mask, prefix, max_len):
    """Logits of a prefill of `prefix` columns, then one column at a time through a static cache."""
    B, T = ids.shape
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # left_padded_batch's positions, padding at 1
    cache = solution.KVCache.for_model(model, B, max_len)
    cache.reset(mask)  # which columns are real, the later ones included
    logits = [fast.static_forward(model, ids[:, :prefix], pos[:, :prefix], cache, torch.arange(prefix))]
    for t in range(prefix, T):
        logits.append(fast.static_forward(model, ids[:, t : t + 1], pos[:, t : t + 1], cache, torch.tensor([t])))
    return torch.cat(logits, dim=1), cache


@pytest.mark.parametrize("name", list(GPT2_CONFIGS))
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_static_cache_equals_full_pass_and_dynamic_cache(checkpoints, name, attn):
    model = solution.GPT2LMHeadModel.from_pretrained(checkpoints[name], attn_implementation=attn)
    ids, mask, pos = left_padded_batch(model.config.vocab_size, [7, 3, 6], seed=8)
    real = mask.bool()
    with torch.no_grad():
        full = model(ids, attention_mask=mask, position_ids=pos).logits
        dynamic, past = _steps(model, ids, mask, prefix=3)
        # A cache longer than the text: the unused columns must be masked out.
        static, cache = _static_steps(model, ids, mask, prefix=3, max_len=ids.shape[1] + 5)
    # Padding positions included: a padding query sees no key and outputs 0, however many
    # columns the cache has.
    assert_close(static, full, name="static-cache logits vs a full pass", atol=1e-5)
    assert_close(static, dynamic, name="static-cache logits vs the dynamic cache", atol=1e-5)
    assert cache.get_seq_length() == ids.shape[1], "a static cache counts the columns written"
    for i, ((k, v), (ks, vs)) in enumerate(zip(past.to_legacy_cache(), cache.to_legacy_cache())):
        r = real[:, None, :, None].expand_as(k)
        assert_close(ks[r], k[r], name=f"static cache keys, layer {i}", atol=1e-6)
        assert_close(vs[r], v[r], name=f"static cache values, layer {i}", atol=1e-6)


def test_static_cache_reused_after_reset(checkpoints):
    """A second batch through the same buffers sees nothing of the first."""
    model = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"])
    a, mask_a, _ = left_padded_batch(97, [6, 6], seed=1)
    b, mask_b, pos_b = left_padded_batch(97, [6, 2], seed=2)
    with torch.no_grad():
        _, cache = _static_steps(model, a, mask_a, prefix=2, max_len=8)
        cache.reset(mask_b)
        fresh = fast.static_forward(model, b, pos_b, cache, torch.arange(6))
        full = model(b, attention_mask=mask_b, position_ids=pos_b).logits
    assert_close(fresh, full, name="logits after reset", atol=1e-5)


def test_static_cache_last_only(checkpoints):
    model = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"])
    ids, mask, pos = left_padded_batch(97, [5, 4], seed=3)
    with torch.no_grad():
        cache = solution.KVCache.for_model(model, 2, 8)
        cache.reset(mask)
        last = fast.static_forward(model, ids, pos, cache, torch.arange(5), last_only=True)
        full = model(ids, attention_mask=mask, position_ids=pos).logits
    assert last.shape == (2, 1, 97)
    assert_close(last, full[:, -1:], name="last_only logits", atol=1e-5)


def test_static_cache_rejects_bad_shapes(checkpoints):
    model = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"])  # n_positions 40
    with pytest.raises(ValueError, match="max_len=41"):
        solution.KVCache.for_model(model, 1, 41)
    with pytest.raises(ValueError, match="batch_size"):
        solution.KVCache.static(2, 0, 4, 8, 8)
    cache = solution.KVCache.for_model(model, 2, 8)
    with pytest.raises(ValueError, match="attention_mask"):
        cache.reset(torch.ones(3, 4))
    ids = torch.zeros(2, 1, dtype=torch.long)
    for not_static, kind in ((solution.KVCache(2), "a dynamic KVCache"), (None, "a NoneType"), ((), "a tuple")):
        with pytest.raises(TypeError, match=f"cache must be a static KVCache .*got {kind}"):
            fast.static_forward(model, ids, ids, not_static, torch.tensor([0]))


# ---------------------------------------------------------------------------------------
# decode_attention: the static cache's one-query attention (the compiled decode step's)
# ---------------------------------------------------------------------------------------

from mlab_tfs import attention  # noqa: E402


def _hand_written(q, k, v, mask, scale):
    """attention_pattern and the weighted sum, the cache's kv heads repeated as repeat_kv does."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return torch.matmul(solution.attention_pattern(q, k, mask, scale), v)


@pytest.mark.parametrize("nh,nkv", [(4, 4), (4, 2), (6, 1)], ids=["mha", "gqa", "mqa"])
def test_decode_attention_equals_hand_written(nh, nkv):
    g = torch.Generator().manual_seed(nh * 10 + nkv)
    B, M, hs = 3, 9, 8
    q = torch.randn(B, nh, 1, hs, generator=g)
    k, v = torch.randn(B, nkv, M, hs, generator=g), torch.randn(B, nkv, M, hs, generator=g)
    mask = torch.ones(B, 1, 1, M, dtype=torch.bool)
    mask[0, ..., :3] = False  # left padding
    mask[1, ..., 6:] = False  # later columns (not written yet)
    mask[2] = False  # a query that sees no key: zero output
    got = attention.decode_attention(q, k, v, mask, scale=hs**-0.5)
    expected = _hand_written(q, k, v, mask, hs**-0.5)
    assert got.shape == (B, nh, 1, hs) and got.dtype == v.dtype
    assert_close(got, expected, name="decode_attention vs the hand-written attention", atol=1e-6)
    assert torch.equal(got[2], torch.zeros_like(got[2])), "a query that sees no key outputs 0"
    assert_close(attention.decode_attention(q, k, v, mask[:1], scale=0.3), _hand_written(q, k, v, mask[:1], 0.3),
                 name="decode_attention, a mask shared by the batch", atol=1e-6)
    # Half precision: float32 inside, as the fused kernels accumulate; within bf16 rounding of float32.
    half = attention.decode_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask, scale=hs**-0.5)
    assert half.dtype == torch.bfloat16
    assert_close(half.float(), expected, name="decode_attention in bf16", atol=2e-2)


def test_decode_attention_refuses_what_it_is_not_for():
    q, k = torch.zeros(1, 4, 2, 8), torch.zeros(1, 4, 5, 8)
    mask = torch.ones(1, 1, 1, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="one query per row"):
        attention.decode_attention(q, k, k, mask, 1.0)
    with pytest.raises(ValueError, match="head count divides"):
        attention.decode_attention(q[:, :, :1], torch.zeros(1, 3, 5, 8), torch.zeros(1, 3, 5, 8), mask, 1.0)
    with pytest.raises(ValueError, match=r"mask must be \(B or 1, 1, 1, M=5\), got shape \(1, 1, 2, 5\)"):
        attention.decode_attention(q[:, :, :1], k, k, torch.ones(1, 1, 2, 5, dtype=torch.bool), 1.0)
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        attention.decode_attention(q[:, :, :1], k, k, mask.float(), 1.0)


def test_decode_attention_refuses_shapes_it_would_broadcast():
    """A cache of another batch, head size or a mask of another batch would broadcast (one
    row's cache read for every row) or fail deep inside: a ValueError naming the argument."""
    q, k = torch.zeros(2, 4, 1, 8), torch.zeros(2, 2, 5, 8)
    mask = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"k and v must be \(B=2, nkv, M, hs=8\).*got k of shape \(1, 2, 5, 8\)"):
        attention.decode_attention(q, k[:1], k[:1], mask, 1.0)
    with pytest.raises(ValueError, match=r"got k of shape \(2, 2, 5, 4\)"):
        attention.decode_attention(q, k[..., :4], k[..., :4], mask, 1.0)
    with pytest.raises(ValueError, match=r"mask must be \(B or 1, 1, 1, M=5\), got shape \(3, 1, 1, 5\) for B=2"):
        attention.decode_attention(q, k, k, torch.ones(3, 1, 1, 5, dtype=torch.bool), 1.0)
    with pytest.raises(ValueError, match=r"q must be a 4-D tensor .*got shape \(2, 4, 8\)"):
        attention.decode_attention(q[:, :, 0], k, k, mask, 1.0)
    with pytest.raises(TypeError, match="mask must be a bool tensor .*got None"):
        attention.decode_attention(q, k, k, None, 1.0)
    assert attention.decode_attention(q, k, k, mask[:1], 1.0).shape == (2, 4, 1, 8)


def _count_calls(monkeypatch):
    calls = []
    real = solution.decode_attention

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(solution, "decode_attention", counted)
    return calls


@pytest.mark.parametrize("name", list(GPT2_CONFIGS))
@pytest.mark.parametrize("decode", [True, False], ids=["decode_attention", "sdpa"])
def test_static_decode_steps_equal_hand_written(checkpoints, monkeypatch, name, decode):
    """The static path's one-token steps (decode_attention, or sdpa with the flag off) give the
    hand-written attention's logits (1e-5), left padding included; decode_attention runs only
    at T == 1 over a static cache, once per layer and step."""
    eager = solution.GPT2LMHeadModel.from_pretrained(checkpoints[name], attn_implementation="eager")
    fused = solution.GPT2LMHeadModel.from_pretrained(checkpoints[name])
    ids, mask, _ = left_padded_batch(eager.config.vocab_size, [7, 3, 6], seed=12)
    with torch.no_grad():
        expected, _ = _static_steps(eager, ids, mask, prefix=3, max_len=ids.shape[1] + 4)
        calls = _count_calls(monkeypatch)
        cache_flag = solution.KVCache.static
        monkeypatch.setattr(solution.KVCache, "static", classmethod(
            lambda cls, *a, **kw: _with_flag(cache_flag.__func__(cls, *a, **kw), decode)))
        got, cache = _static_steps(fused, ids, mask, prefix=3, max_len=ids.shape[1] + 4)
    assert cache.decode_attention is decode
    assert_close(got, expected, name=f"static one-token steps ({'decode_attention' if decode else 'sdpa'})",
                 atol=1e-5)
    n_steps = ids.shape[1] - 3
    assert len(calls) == (n_steps * fused.config.n_layer if decode else 0)
    assert all(s[2] == 1 for s in calls), "decode_attention only for one new token"


def _with_flag(cache, flag):
    cache.decode_attention = flag
    return cache


def test_static_decode_steps_are_causal(checkpoints):
    """Whatever the cache's later columns hold (stale values of another text), a step's logits
    are those of a clean run: no output at t depends on a column after t."""
    model = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"])
    ids, mask, pos = left_padded_batch(97, [6, 4], seed=13)
    B, T = ids.shape
    with torch.no_grad():
        clean, _ = _static_steps(model, ids, mask, prefix=2, max_len=T + 3)
        cache = solution.KVCache.for_model(model, B, T + 3)
        cache.reset(mask)
        g = torch.Generator().manual_seed(1)
        for t in range(T):
            for buf in (*cache.keys, *cache.values):  # garbage in every column after t
                buf[:, :, t + 1 :] = torch.randn(buf[:, :, t + 1 :].shape, generator=g) * 5
            step = fast.static_forward(model, ids[:, t : t + 1], pos[:, t : t + 1], cache, torch.tensor([t]))
            assert_close(step, clean[:, t : t + 1], name=f"logits at step {t} with garbage after it", atol=1e-5)


# ---------------------------------------------------------------------------------------
# LinearAsSums: one-row linear layers as matrix-vector sums
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_linear_as_sums_equals_linear(bias):
    g = torch.Generator().manual_seed(3)
    lin = torch.nn.Linear(12, 7, bias=bias)
    for shape in ((1, 1, 12), (3, 1, 12), (12,)):
        x = torch.randn(shape, generator=g)
        with torch.no_grad(), fast.LinearAsSums(3):
            got = lin(x)
        assert_close(got, lin(x).detach(), name=f"LinearAsSums on {shape}", atol=1e-6)
    x = torch.randn(4, 1, 12, generator=g)  # 4 rows > 3: F.linear itself, bit for bit
    with torch.no_grad(), fast.LinearAsSums(3):
        assert torch.equal(lin(x), lin(x).detach())
    with torch.no_grad(), fast.LinearAsSums(1):
        half = lin.bfloat16()(x[:1].bfloat16())
    assert half.dtype == torch.bfloat16
    for bad, error in ((0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError), (None, TypeError)):
        with pytest.raises(error, match="LinearAsSums: max_rows must be an int"):
            fast.LinearAsSums(bad)


@pytest.mark.parametrize("name", list(GPT2_CONFIGS))
def test_static_decode_steps_with_linear_as_sums_equal_hand_written(checkpoints, name):
    eager = solution.GPT2LMHeadModel.from_pretrained(checkpoints[name], attn_implementation="eager")
    fused = solution.GPT2LMHeadModel.from_pretrained(checkpoints[name])
    ids, mask, pos = left_padded_batch(eager.config.vocab_size, [7, 3, 6], seed=14)
    with torch.no_grad():
        expected, _ = _static_steps(eager, ids, mask, prefix=3, max_len=ids.shape[1] + 2)
        cache = solution.KVCache.for_model(fused, 3, ids.shape[1] + 2)
        cache.reset(mask)
        steps = [fast.static_forward(fused, ids[:, :3], pos[:, :3], cache, torch.arange(3))]
        with fast.LinearAsSums(3):
            for t in range(3, ids.shape[1]):
                steps.append(fast.static_forward(fused, ids[:, t : t + 1], pos[:, t : t + 1], cache, torch.tensor([t])))
    assert_close(torch.cat(steps, 1), expected, name="static steps with LinearAsSums", atol=1e-5)
