"""Exercise 11: the KV cache object. Incremental decoding through it (dynamic mode) and over
preallocated buffers (static mode) equals one full pass; reorder_cache / batch_repeat_interleave
follow beam search's rows; cache_position is checked at its boundaries."""

from __future__ import annotations

import re

import pytest
import torch

from mlab_tfs.gpt2.mistakes import MISTAKES as M
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.mistakes import likely
from mlab_tfs.testing.tiny import hf_gpt2, left_padded_batch

from .helpers import keep_mask, zero_blind_rows
from .test_causality import PADDINGS, _cached, _check_causal
from .test_causality import _model as _causal_model
from .test_hooks import ATOL, _batch
from .test_hooks import _model as _hooked_model
from .test_model import LEARNER_CONFIGS, pair

CACHE_HINT = (
    "KVCache.update (dynamic): concatenate the cached k and v with the new ones along the sequence dim (dim 2) "
    "and store them; let positions continue from the cache length, and let the causal mask put the new queries "
    "after the cached keys"
)
STATIC_HINT = (
    "KVCache.update (static): write k and v into columns cache_position of the layer's buffers, in place "
    "(buf[:, :, cache_position] = k), and return the whole buffers; the model masks them with "
    "cache.static_mask(cache_position, attention_mask) and takes positions from cache_position"
)


def _positions(mask):
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


def _steps(model, ids, mask=None, prefix=3):
    """Logits of a prefix pass, then one token at a time through the cache, concatenated;
    and the cache (the object the first pass returned, updated in place)."""
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    B, T = ids.shape
    pos = None if mask is None else _positions(mask)
    kw = lambda end: {} if mask is None else dict(attention_mask=mask[:, :end], position_ids=pos[:, end - 1 : end])  # noqa: E731
    first = model(ids[:, :prefix], use_cache=True,
                  **({} if mask is None else dict(attention_mask=mask[:, :prefix], position_ids=pos[:, :prefix])))
    logits, past = [first.logits], first.past_key_values
    for t in range(prefix, T):
        out = model(ids[:, t : t + 1], past_key_values=past, use_cache=True, **kw(t + 1))
        assert out.past_key_values is past, "with a KVCache given, use_cache=True returns that object, updated in place"
        logits.append(out.logits)
    return torch.cat(logits, dim=1), past


def _hf_steps_from_position_0(hf, ids, prefix=3):
    """transformers' logits decoded as _steps does, with each call's positions starting at 0
    (what a model whose default positions ignore the cache gives)."""
    out = hf(ids[:, :prefix], use_cache=True)
    logits, past = [out.logits], out.past_key_values
    for t in range(prefix, ids.shape[1]):
        out = hf(ids[:, t : t + 1], past_key_values=past, use_cache=True, position_ids=torch.zeros(1, 1, dtype=torch.long))
        logits.append(out.logits)
        past = out.past_key_values
    return torch.cat(logits, dim=1)


def _hf_steps_seeing_cached_padding(hf, ids, mask, prefix):
    """transformers' logits decoded as _steps does, the steps' masks leaving the cached padding
    unmasked (what a model that masks the new tokens' padding only gives)."""
    pos = _positions(mask)
    out = hf(ids[:, :prefix], attention_mask=mask[:, :prefix], position_ids=pos[:, :prefix], use_cache=True)
    logits, past = [out.logits], out.past_key_values
    for t in range(prefix, ids.shape[1]):
        seen = mask[:, t : t + 1].expand(-1, t + 1)  # the new token's own mask column, over every key
        out = hf(ids[:, t : t + 1], attention_mask=seen, position_ids=pos[:, t : t + 1], past_key_values=past,
                 use_cache=True)
        logits.append(out.logits)
        past = out.past_key_values
    return torch.cat(logits, dim=1)


def _static_steps(gpt2, model, ids, mask, prefix, max_len):
    """A prefill of `prefix` columns, then one column at a time, through a static cache."""
    B, T = ids.shape
    pos = _positions(mask)
    cache = gpt2.KVCache.for_model(model, B, max_len)
    cache.reset(mask)  # which columns are real; later ones are new tokens
    logits = [model(ids[:, :prefix], position_ids=pos[:, :prefix], past_key_values=cache,
                    cache_position=torch.arange(prefix), use_cache=True).logits]
    for t in range(prefix, T):
        logits.append(model(ids[:, t : t + 1], position_ids=pos[:, t : t + 1], past_key_values=cache,
                            cache_position=torch.tensor([t]), use_cache=True).logits)
    return torch.cat(logits, dim=1), cache


# ------------------------------------------------------------------------- the object alone


@pytest.mark.exercise("kv_cache")
def test_dynamic_update_concatenates(gpt2):
    g = torch.Generator().manual_seed(0)
    cache = gpt2.KVCache(2)
    assert not cache.is_static and len(cache) == 2 and cache.get_seq_length() == 0
    k1, v1 = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    k2, v2 = torch.randn(2, 3, 1, 5, generator=g), torch.randn(2, 3, 1, 5, generator=g)
    ka, va = cache.update(1, k1, v1)
    assert_close(ka, k1, name="update of an empty layer returns its keys", atol=0, hint=CACHE_HINT)
    assert_close(va, v1, name="update of an empty layer returns its values", atol=0)
    assert cache.keys[0] is None, "update(1, ...) must leave layer 0 alone"
    try:
        kb, vb = cache.update(1, k2, v2)
    except RuntimeError as e:
        pytest.fail(f"update of (2, 3, 4, 5) cached keys with (2, 3, 1, 5) new ones raised RuntimeError ({e}); "
                    f"concatenate along the sequence dim, dim 2 of (B, nh, S, hs)\n  {likely(M['cat_wrong_dim'])}",
                    pytrace=False)
    # A concatenation along another dim than 2 cannot run here (the sequence lengths differ: it raised
    # above); another shape is another mistake, named by what it holds.
    assert kb.shape == (2, 3, 5, 5), (
        f"keys after a second update: expected (B, nh, S + T, hs) = (2, 3, 5, 5), got {tuple(kb.shape)}"
        + (": update returned only the new keys; return the cached ones followed by the new ones"
           if kb.shape == k2.shape else ": concatenate the cached keys and the new ones along the sequence dim, dim 2"))
    assert_close(kb, torch.cat([k1, k2], dim=2), name="keys after a second update", atol=0,
                 mistakes={M["new_keys_first"]: torch.cat([k2, k1], dim=2)}, hint=CACHE_HINT)
    assert_close(vb, torch.cat([v1, v2], dim=2), name="values after a second update", atol=0, hint=CACHE_HINT)
    assert cache.get_seq_length(1) == 5 and cache[1][0] is kb, (
        f"the cache keeps what update returned: layer 1 holds {cache.get_seq_length(1)} positions after 4 + 1, "
        f"expected 5\n  {likely(M['cache_not_stored'])}")


@pytest.mark.exercise("kv_cache")
def test_static_update_writes_in_place(gpt2):
    g = torch.Generator().manual_seed(1)
    cache = gpt2.KVCache.static(2, batch_size=2, n_head=3, max_len=6, head_dim=4)
    assert cache.is_static
    buffers = [cache.keys[1].data_ptr(), cache.values[1].data_ptr()]
    k, v = torch.randn(2, 3, 2, 4, generator=g), torch.randn(2, 3, 2, 4, generator=g)
    ka, va = cache.update(1, k, v, torch.tensor([2, 3]))
    assert ka.shape == (2, 3, 6, 4), f"static update returns the whole (B, nh, M, hs) buffer, got {tuple(ka.shape)}"
    assert [ka.data_ptr(), va.data_ptr()] == buffers, "static update writes into the buffers in place (same address)"
    def written(t, cols):
        buf = torch.zeros(2, 3, 6, 4)
        buf[:, :, cols] = t
        return buf

    for name, got, new in (("keys", ka, k), ("values", va, v)):
        assert_close(got, written(new, [2, 3]), name=f"static {name} after writing columns 2 and 3", atol=0,
                     mistakes={M["static_write_right"]: written(new, [3, 4]),
                               M["static_write_left"]: written(new, [1, 2]),
                               M["static_write_from_zero"]: written(new, [0, 1])},
                     hint=STATIC_HINT)
    assert_close(cache.keys[0], torch.zeros(2, 3, 6, 4), name="layer 0 (not written)", atol=0)
    assert cache.get_seq_length(1) == 2
    cache.reset()
    assert cache.get_seq_length(1) == 0 and not cache.keys[1].any(), "reset zeroes the buffers"


# ------------------------------------------------------------------------- through the model


@pytest.mark.exercise("kv_cache")
@pytest.mark.parametrize("name", LEARNER_CONFIGS)
def test_incremental_equals_full_pass(gpt2, checkpoints, name):
    model, hf = pair(gpt2, checkpoints[name])
    ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids).logits
        stepped, past = _steps(model, ids)
        restarted = _hf_steps_from_position_0(hf, ids)
    assert isinstance(past, gpt2.KVCache), f"use_cache=True returns the KVCache, got {type(past).__name__}"
    assert past.get_seq_length() == 9
    assert_close(stepped, full, name="logits decoded through the KVCache", atol=1e-5,
                 mistakes={M["positions_restart_after_cache"]: restarted}, hint=CACHE_HINT)


@pytest.mark.exercise("kv_cache")
def test_incremental_with_left_padding(gpt2, checkpoints):
    model, hf = pair(gpt2, checkpoints["base"])
    ids, mask, pos = left_padded_batch(model.config.vocab_size, [8, 3, 6], seed=1)
    with torch.no_grad():
        full = model(ids, attention_mask=mask, position_ids=pos).logits
        stepped, _ = _steps(model, ids, mask, prefix=4)
        unmasked = _hf_steps_seeing_cached_padding(hf, ids, mask, prefix=4)
    # Padding positions too: they see no key in both runs, and output 0 from attention.
    assert_close(stepped, full, name="left-padded logits decoded through the cache", atol=1e-5,
                 mistakes={M["cached_padding_unmasked"]: unmasked},
                 hint="with a cache, attention_mask covers the cached tokens and the new ones: (B, P + T)")


@pytest.mark.exercise("kv_cache")
def test_legacy_tuple_is_accepted_and_left_unchanged(gpt2, checkpoints):
    model, _ = pair(gpt2, checkpoints["base"])
    ids = torch.randint(0, 97, (2, 6), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        legacy = model(ids[:, :4], use_cache=True).past_key_values.to_legacy_cache()
        out = model(ids[:, 4:], past_key_values=legacy, use_cache=True)
        full = model(ids).logits
    assert all(k.shape[2] == 4 for k, _ in legacy), "a legacy tuple passed in is not changed"
    assert isinstance(out.past_key_values, gpt2.KVCache) and out.past_key_values.get_seq_length() == 6
    assert_close(out.logits, full[:, 4:], name="logits after a legacy tuple cache", atol=1e-5)


@pytest.mark.exercise("kv_cache")
def test_cache_holds_transformers_keys_and_values(gpt2, checkpoints):
    model, hf = pair(gpt2, checkpoints["deep_narrow_heads"])
    ids = torch.randint(0, model.config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        past = model(ids, use_cache=True).past_key_values
        expected = hf(ids, use_cache=True).past_key_values
    n = model.config.n_layer
    assert len(past) == n, f"the cache should hold {n} layers"
    for i in range(n):
        layer = expected.layers[i]
        assert_close(past[i][0], layer.keys, name=f"past_key_values[{i}][0] (keys)", atol=1e-5,
                     hint="cache k and v after splitting heads: each (B, nh, S, hs)")
        assert_close(past[i][1], layer.values, name=f"past_key_values[{i}][1] (values)", atol=1e-5)


@pytest.mark.exercise("kv_cache")
@pytest.mark.parametrize("name", LEARNER_CONFIGS)
def test_static_equals_dynamic_and_full_pass(gpt2, checkpoints, name):
    model, _ = pair(gpt2, checkpoints[name])
    ids, mask, pos = left_padded_batch(model.config.vocab_size, [7, 3, 6], seed=8)
    with torch.no_grad():
        full = model(ids, attention_mask=mask, position_ids=pos).logits
        dynamic, past = _steps(model, ids, mask, prefix=3)
        # More columns than the text: the unwritten ones must be masked out.
        static, cache = _static_steps(gpt2, model, ids, mask, prefix=3, max_len=ids.shape[1] + 5)
    assert_close(static, full, name="static-cache logits vs a full pass (padding included)", atol=1e-5,
                 hint=STATIC_HINT)
    assert_close(static, dynamic, name="static-cache logits vs the dynamic cache", atol=1e-5, hint=STATIC_HINT)
    real = mask.bool()[:, None, :, None]
    for i in range(model.config.n_layer):
        k, v = past[i]
        ks, vs = (t[:, :, : ids.shape[1]] for t in cache[i])
        assert_close(ks[real.expand_as(k)], k[real.expand_as(k)], name=f"static keys, layer {i}", atol=1e-6)
        assert_close(vs[real.expand_as(v)], v[real.expand_as(v)], name=f"static values, layer {i}", atol=1e-6)


@pytest.mark.exercise("kv_cache")
def test_reorder_and_repeat_follow_the_rows(gpt2, checkpoints):
    """Beam search's two moves, dynamic and static, with left padding: after repeating rows
    and reordering them, the next step's logits are those of the same rows run from scratch."""
    model, _ = pair(gpt2, checkpoints["base"])
    ids, mask, pos = left_padded_batch(97, [5, 3], seed=3)
    order = torch.tensor([3, 0, 0, 2])  # rows of the 4 repeated ones
    nxt = torch.randint(0, 97, (4, 1), generator=torch.Generator().manual_seed(5))
    rows = torch.tensor([0, 0, 1, 1])[order]
    full_ids = torch.cat([ids[rows], nxt], dim=1)
    full_mask = torch.cat([mask[rows], torch.ones(4, 1, dtype=mask.dtype)], dim=1)
    with torch.no_grad():
        expected = model(full_ids, attention_mask=full_mask, position_ids=_positions(full_mask)).logits[:, -1:]
        dynamic = model(ids, attention_mask=mask, position_ids=pos, use_cache=True).past_key_values
        dynamic.batch_repeat_interleave(2)
        dynamic.reorder_cache(order)
        got = model(nxt, attention_mask=full_mask, position_ids=_positions(full_mask)[:, -1:],
                    past_key_values=dynamic).logits
        assert_close(got, expected, name="dynamic cache after batch_repeat_interleave(2) and reorder_cache", atol=1e-5)
        static = gpt2.KVCache.for_model(model, 2, 8)
        static.reset(mask)
        model(ids, position_ids=pos, past_key_values=static, cache_position=torch.arange(5))
        static.batch_repeat_interleave(2)
        static.reorder_cache(order)
        got = model(nxt, position_ids=_positions(full_mask)[:, -1:], past_key_values=static,
                    cache_position=torch.tensor([5])).logits
        assert_close(got, expected, name="static cache after batch_repeat_interleave(2) and reorder_cache", atol=1e-5)
    with pytest.raises(ValueError, match="beam_idx"):
        dynamic.reorder_cache(torch.tensor([0, 4]))
    with pytest.raises(TypeError, match="beam_idx"):
        dynamic.reorder_cache(torch.tensor([0.0, 1.0]))


# ------------------------------------------------------------------------- bad input


@pytest.mark.exercise("kv_cache")
def test_cache_that_does_not_fit_is_refused(gpt2, checkpoints):
    model, _ = pair(gpt2, checkpoints["base"])
    ids = torch.randint(0, 97, (2, 4), generator=torch.Generator().manual_seed(3))
    legacy = model(ids, use_cache=True).past_key_values.to_legacy_cache()
    step = ids[:, :1]
    with pytest.raises(ValueError, match="past_key_values"):
        model(step, past_key_values=legacy[:1])  # one layer missing
    with pytest.raises(ValueError, match="past_key_values"):
        model(step[:1], past_key_values=legacy)  # batch of 1 against a cache of 2
    with pytest.raises(ValueError, match="past_key_values"):
        model(step, past_key_values=gpt2.KVCache(1))  # a cache for another depth
    with pytest.raises(TypeError, match="past_key_values"):
        model(step, past_key_values={"k": 1})
    with pytest.raises(ValueError, match="attention_mask"):
        model(step, past_key_values=legacy, attention_mask=torch.ones(2, 1))  # must cover 4 + 1
    long = torch.zeros(2, 37, dtype=torch.long)
    with pytest.raises(ValueError, match="n_positions"):
        model(long, past_key_values=legacy)  # 4 cached + 37 new > 40 positions


@pytest.mark.exercise("kv_cache")
def test_cache_position_boundaries(gpt2, checkpoints):
    model, _ = pair(gpt2, checkpoints["base"])
    ids = torch.randint(0, 97, (2, 3), generator=torch.Generator().manual_seed(6))
    cache = gpt2.KVCache.for_model(model, 2, 8)
    with torch.no_grad():
        # The last column is allowed; one beyond it, a negative one, a decreasing pair are not.
        model(ids[:, :1], past_key_values=cache, cache_position=torch.tensor([7]))
        for bad, match in ((torch.tensor([8]), "max_len=8"), (torch.tensor([-1]), "cache_position"),
                           (torch.tensor([2, 1]), "increase")):
            with pytest.raises(ValueError, match=match):
                model(ids[:, : len(bad)], past_key_values=cache, cache_position=bad)
        with pytest.raises(ValueError, match="cache_position is required"):
            model(ids, past_key_values=cache)
        with pytest.raises(ValueError, match=r"cache_position must have shape \(3,\)"):
            model(ids, past_key_values=cache, cache_position=torch.arange(2))
        with pytest.raises(TypeError, match="cache_position"):
            model(ids, past_key_values=cache, cache_position=torch.arange(3.0))
        # Dynamic: cache_position must be where the new keys go, P .. P + T - 1.
        dynamic = model(ids[:, :2], use_cache=True).past_key_values
        with pytest.raises(ValueError, match=r"cache_position must be 2 \.\. 2"):
            model(ids[:, 2:], past_key_values=dynamic, cache_position=torch.tensor([1]))
        a = model(ids[:, 2:], past_key_values=dynamic.to_legacy_cache(), cache_position=torch.tensor([2])).logits
        b = model(ids[:, 2:], past_key_values=dynamic.to_legacy_cache()).logits
    assert_close(a, b, name="logits with cache_position = P vs without", atol=0)
    with pytest.raises(ValueError, match="max_len=41"):
        gpt2.KVCache.for_model(model, 1, 41)  # n_positions is 40
    with pytest.raises(ValueError, match="batch_size"):
        gpt2.KVCache.static(2, 0, 4, 8, 8)
    for dtype in ("float32", torch.long):
        with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
            gpt2.KVCache.static(2, 1, 4, 8, 8, dtype=dtype)
    with pytest.raises(ValueError, match="attention_mask"):
        cache.reset(torch.ones(3, 4))


@pytest.mark.exercise("kv_cache")
def test_static_cache_takes_the_padding_mask_either_way(gpt2, checkpoints):
    """The prompts' padding given to reset(mask), or as attention_mask (B, L <= M) at each call
    over a cache reset without one: the same logits, those of a full pass."""
    model, _ = pair(gpt2, checkpoints["base"])
    ids, mask, pos = left_padded_batch(97, [6, 2, 4], seed=11)
    with torch.no_grad():
        full = model(ids, attention_mask=mask, position_ids=pos).logits
        by_reset = gpt2.KVCache.for_model(model, 3, 9)
        by_reset.reset(mask)
        a = model(ids, position_ids=pos, past_key_values=by_reset, cache_position=torch.arange(6)).logits
        by_mask = gpt2.KVCache.for_model(model, 3, 9)
        by_mask.reset()
        b = model(ids, attention_mask=mask, position_ids=pos, past_key_values=by_mask,
                  cache_position=torch.arange(6)).logits
        with pytest.raises(ValueError, match="attention_mask"):
            model(ids, attention_mask=torch.ones(3, 10), position_ids=pos, past_key_values=by_mask,
                  cache_position=torch.arange(6))  # longer than the cache's 9 columns
    assert_close(a, full, name="static logits, padding from reset(mask)", atol=1e-5)
    assert_close(b, full, name="static logits, padding as attention_mask", atol=1e-5,
                 hint="with a static cache the mask is cache.static_mask(cache_position, attention_mask)")


@pytest.mark.exercise("kv_cache")
def test_a_cache_elsewhere_or_half_written_is_refused(gpt2, checkpoints):
    model, _ = pair(gpt2, checkpoints["base"])
    ids = torch.randint(0, 97, (2, 3), generator=torch.Generator().manual_seed(12))
    meta = tuple((torch.empty(2, 4, 3, 8, device="meta"),) * 2 for _ in range(2))
    with pytest.raises(ValueError, match=r"past_key_values\[0\]\[0\] is on meta but input_ids is on cpu"):
        model(ids, past_key_values=meta)
    half = gpt2.KVCache(2)
    half.update(0, torch.zeros(2, 4, 3, 8), torch.zeros(2, 4, 3, 8))
    with pytest.raises(ValueError, match="only 1 of the KVCache's 2 layers"):
        model(ids, past_key_values=half)
    with pytest.raises(ValueError, match="n_layer must be a positive int"):
        gpt2.KVCache(0)
    with pytest.raises(IndexError, match="holds nothing yet"):
        gpt2.KVCache(2)[0]
    with pytest.raises(ValueError, match="past_key_values\\[1\\] must be a key and a value of one shape"):
        gpt2.KVCache.from_legacy_cache(((torch.zeros(1, 1, 2, 2),) * 2, (torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 2))))


UPDATE_HINT = "KVCache.update: start with cache_position = self.check_update(layer_idx, k, v, cache_position) (given)"


def _refused(call, error, match, what):
    """call() must raise error with a message matching match; if not, say where the check is."""
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    try:
        call()
    except error as e:
        assert re.search(match, str(e)), f"{what}: the {error.__name__} should match {match!r}, got {e}"
        return
    except Exception as e:  # e.g. a RuntimeError from inside torch.cat: the arguments were not checked
        pytest.fail(f"{what}: got {type(e).__name__}: {e} ({UPDATE_HINT})")
    pytest.fail(f"{what} was not refused with a {error.__name__} ({UPDATE_HINT})")


def _dynamic_with(gpt2, k, v, layer=0):
    cache = gpt2.KVCache(2)
    cache.update(layer, k, v)
    return cache


@pytest.mark.exercise("kv_cache")
def test_update_refuses_what_does_not_fit_and_leaves_the_cache_unchanged(gpt2):
    """Every way of calling update with arguments that do not fit the cache is a ValueError or
    TypeError naming the argument, in both modes, before anything is written."""
    g = torch.Generator().manual_seed(13)
    k, v = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    new = torch.randn(2, 3, 1, 5, generator=g)
    dynamic_cases = [
        ((5, new, new), ValueError, r"layer_idx must be an int in \[0, 1\], got 5"),
        ((-1, new, new), ValueError, r"layer_idx must be an int in \[0, 1\], got -1"),
        ((0.0, new, new), TypeError, "layer_idx must be an int"),
        ((0, new[0], new[0]), ValueError, r"k must be a floating \(B, nh, T, hs\) tensor"),
        ((0, new.long(), new.long()), ValueError, "k must be a floating"),
        ((0, 1.0, new), TypeError, "k must be a torch.Tensor"),
        ((0, new, torch.randn(2, 3, 2, 5)), ValueError, r"v must match k .*shape \(2, 3, 1, 5\)"),
        ((0, new, new.double()), ValueError, "v must match k"),
        ((0, torch.randn(3, 3, 1, 5), torch.randn(3, 3, 1, 5)), ValueError, r"batch=2, n_head=3, .*head_dim=5"),
        ((1, torch.randn(2, 4, 1, 5), torch.randn(2, 4, 1, 5)), ValueError, "n_head=3"),  # layer 1: layer 0 fixes it
        ((0, torch.randn(2, 3, 1, 6), torch.randn(2, 3, 1, 6)), ValueError, "head_dim=5"),
        ((0, new.double(), new.double()), ValueError, "k is torch.float64 but the KVCache holds torch.float32"),
        ((0, new.to("meta"), new.to("meta")), ValueError, "k is on meta but the KVCache is on cpu"),
        ((0, new, new, torch.tensor([3])), ValueError, r"cache_position must be 4 \.\. 4"),
    ]
    for args, error, match in dynamic_cases:
        cache = _dynamic_with(gpt2, k, v)
        _refused(lambda: cache.update(*args), error, match, f"dynamic update expecting {match!r}")
        assert cache.keys[0] is not None and cache.get_seq_length(0) == 4 and cache.keys[1] is None, (
            f"a refused update{args[:1]} must not change the cache ({UPDATE_HINT})")
    ka, _ = _dynamic_with(gpt2, k, v).update(0, new, new, torch.tensor([4]))  # the right column is taken
    assert_close(ka, torch.cat([k, new], dim=2), name="dynamic update with cache_position = S", atol=0)

    static_cases = [
        ((0, new, new), ValueError, r"cache_position is required"),
        ((0, new, new, torch.tensor([6])), ValueError, r"max_len=6"),
        ((0, new, new, torch.tensor([-1])), ValueError, r"cache_position must be in \[0, max_len=6\)"),
        ((0, new, new, torch.tensor([1.0])), TypeError, "cache_position must hold integer"),
        ((0, new, new, torch.tensor([1, 2])), ValueError, r"cache_position must have shape \(1,\)"),
        ((0, k[:, :, :2], v[:, :, :2], torch.tensor([3, 3])), ValueError, "increase"),
        ((2, new, new, torch.tensor([1])), ValueError, r"layer_idx must be an int in \[0, 1\]"),
        ((0, torch.randn(1, 3, 1, 5), torch.randn(1, 3, 1, 5), torch.tensor([1])), ValueError, "batch=2"),
        ((0, new.to("meta"), new.to("meta"), torch.tensor([1])), ValueError, "on meta"),
    ]
    for args, error, match in static_cases:
        cache = gpt2.KVCache.static(2, batch_size=2, n_head=3, max_len=6, head_dim=5)
        _refused(lambda: cache.update(*args), error, match, f"static update expecting {match!r}")
        assert not cache.keys[0].any() and not cache.values[0].any(), (
            f"a refused static update must write nothing ({UPDATE_HINT})")
    # A static buffer has one dtype, fixed when it was made: other keys are refused, except under
    # autocast (where the attention casts q, k and v to one dtype), which the buffer casts.
    cache = gpt2.KVCache.static(2, batch_size=2, n_head=3, max_len=6, head_dim=5)
    with pytest.raises(ValueError, match="k is torch.float64 but this static KVCache's buffers are torch.float32"):
        cache.update(0, new.double(), new.double(), torch.tensor([5]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ka, _ = cache.update(0, new.bfloat16(), new.bfloat16(), torch.tensor([5]))
    assert ka.dtype == torch.float32
    assert_close(ka[:, :, 5:], new.bfloat16().float(), name="bfloat16 keys written into a float32 static buffer",
                 atol=0)


def test_get_seq_length_names_a_bad_layer(gpt2):  # given code (KVCacheBase): no exercise
    for cache in (gpt2.KVCache(2), gpt2.KVCache.static(2, 1, 1, 4, 2)):
        assert cache.get_seq_length(1) == 0
        with pytest.raises(ValueError, match=r"layer_idx must be an int in \[0, 1\], got 2"):
            cache.get_seq_length(2)
        with pytest.raises(TypeError, match="layer_idx must be an int"):
            cache.get_seq_length("0")


def test_use_cache_false_with_a_cache_behaves_as_transformers(gpt2, checkpoints):
    """transformers' GPT-2 writes to a cache it is given even with use_cache=False, and returns
    none: ours does the same, so the cached keys are those of the same positions."""
    from transformers import DynamicCache

    model, hf = pair(gpt2, checkpoints["base"])
    ids = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(14))
    with torch.no_grad():
        ours, theirs = gpt2.KVCache(model.config.n_layer), DynamicCache()
        a = model(ids, past_key_values=ours, use_cache=False)
        b = hf(ids, past_key_values=theirs, use_cache=False)
    assert a.past_key_values is None and getattr(b, "cache", getattr(b, "past_key_values", None)) is None
    assert ours.get_seq_length() == theirs.get_seq_length() == 5
    for i in range(model.config.n_layer):
        assert_close(ours[i][0], theirs.layers[i].keys, name=f"layer {i} keys written with use_cache=False",
                     atol=1e-5)


def test_a_kvcache_given_to_transformers_says_what_to_pass(checkpoints, hf_base):
    """transformers' models call their own Cache's methods; on our KVCache the missing one is
    named with what to pass instead, and that conversion gives transformers' logits."""
    from transformers import DynamicCache

    from mlab_tfs.gpt2 import solution

    model = solution.GPT2LMHeadModel.from_pretrained(checkpoints["base"]).eval()
    ids = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(15))
    with torch.no_grad():
        cache = model(ids[:, :4], use_cache=True).past_key_values
        with pytest.raises(AttributeError, match=r"transformers\.DynamicCache\(cache\.to_legacy_cache\(\)\)"):
            hf_base(ids[:, 4:], past_key_values=cache)
        theirs = hf_base(ids[:, 4:], past_key_values=DynamicCache(cache.to_legacy_cache())).logits
        ours = model(ids[:, 4:], past_key_values=cache).logits
    assert_close(ours, theirs, name="next-token logits over our cache converted for transformers", atol=1e-5)
    assert not hasattr(solution.KVCache(2), "max_len"), "hasattr still answers False for a missing attribute"
    with pytest.raises(TypeError, match="past_key_values must be a KVCache"):
        model(ids, past_key_values=DynamicCache())


def test_a_cache_in_another_dtype_than_the_model_is_named(gpt2, checkpoints):
    """A float32 cache for a float64 model (static or a legacy tuple) is an error naming the
    dtypes, not one from inside the attention; under autocast a float32 static cache works and
    equals the dynamic path under the same autocast."""
    model, _ = pair(gpt2, checkpoints["base"])
    ids = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(16))
    with torch.no_grad():
        legacy = model(ids, use_cache=True).past_key_values.to_legacy_cache()
        static = gpt2.KVCache.for_model(model, 2, 8)
        wide = pair(gpt2, checkpoints["base"])[0].double()
        with pytest.raises(ValueError, match="static KVCache's buffers are torch.float32"):
            wide(ids, past_key_values=static, cache_position=torch.arange(5))
        with pytest.raises(ValueError, match="KVCache holds torch.float32 keys"):
            wide(ids[:, :1], past_key_values=legacy)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            a = model(ids, past_key_values=static, cache_position=torch.arange(5)).logits
            b = model(ids, use_cache=True).logits
    assert a.dtype == b.dtype == torch.bfloat16
    # bfloat16 keeps 8 bits of mantissa: 1e-2 is a few of its steps at these logits' size.
    assert_close(a.float(), b.float(), name="autocast logits, static float32 cache vs dynamic", atol=1e-2)


def test_legacy_tuples_of_either_mode_are_snapshots(gpt2, checkpoints):
    """to_legacy_cache of a static cache equals the dynamic cache's and stays as it was when
    the buffers are written again or reset; from_legacy_cache round-trips exactly."""
    model, _ = pair(gpt2, checkpoints["base"])
    ids, mask, pos = left_padded_batch(97, [5, 3], seed=17)
    with torch.no_grad():
        dynamic = model(ids, attention_mask=mask, position_ids=pos, use_cache=True).past_key_values
        static = gpt2.KVCache.for_model(model, 2, 8)
        static.reset(mask)
        model(ids, position_ids=pos, past_key_values=static, cache_position=torch.arange(5))
        legacy = static.to_legacy_cache()
        kept = [(k.clone(), v.clone()) for k, v in legacy]
        for (k, v), (kd, vd) in zip(legacy, dynamic.to_legacy_cache()):
            assert_close(k, kd, name="static to_legacy_cache keys vs dynamic", atol=1e-6)
            assert_close(v, vd, name="static to_legacy_cache values vs dynamic", atol=1e-6)
        model(ids[:, :1], position_ids=pos[:, :1], past_key_values=static, cache_position=torch.tensor([0]))
        static.reset()
    for (k, v), (k0, v0) in zip(legacy, kept):
        assert torch.equal(k, k0) and torch.equal(v, v0), "a static cache's writes and reset changed its legacy tuple"
    again = gpt2.KVCache.from_legacy_cache(legacy).to_legacy_cache()
    assert all(a is b for pair_a, pair_b in zip(again, legacy) for a, b in zip(pair_a, pair_b)), (
        "from_legacy_cache takes the tensors and to_legacy_cache gives them back")


@pytest.mark.exercise("kv_cache")
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_static_decoding_step_by_step_is_causal(gpt2, checkpoints, attn):
    """A prefill, then one column per call through a static cache (the fast decoding path),
    left-padded: changing the token at position t changes no logit before t, and no column
    after the one being written is seen (hook_pattern is 0 there)."""
    model, _ = pair(gpt2, checkpoints["base"])
    model.config.attn_implementation = attn
    ids, mask, _ = left_padded_batch(97, [8, 5, 2], seed=18)
    with torch.no_grad():
        logits, _ = _static_steps(gpt2, model, ids, mask, prefix=3, max_len=12)
        for t in (3, 5, 7):
            later = ids.clone()
            later[:, t:] = (later[:, t:] + 1 + torch.arange(8 - t)) % 97
            changed, _ = _static_steps(gpt2, model, later, mask, prefix=3, max_len=12)
            assert_close(changed[:, :t], logits[:, :t], name=f"static-cache logits before position {t} after "
                         f"changing tokens {t}.. ({attn})", atol=0)
            assert not torch.equal(changed[:, t:], logits[:, t:]), "the changed tokens must change later logits"
        cache = gpt2.KVCache.for_model(model, 3, 12)
        cache.reset(mask)
        model(ids[:, :5], position_ids=_positions(mask)[:, :5], past_key_values=cache, cache_position=torch.arange(5))
        _, acts = model.run_with_cache(ids[:, 5:6], position_ids=_positions(mask)[:, 5:6], past_key_values=cache,
                                       cache_position=torch.tensor([5]), names_filter="blocks.0.attn.hook_pattern")
    pattern = acts["blocks.0.attn.hook_pattern"]  # (B, nh, 1, M)
    assert pattern.shape == (3, 4, 1, 12) and not pattern[..., 6:].any(), "a query saw a column after its own"
    # Row 2's column 5 is still its left padding (its prompt starts at 6): a query that sees no
    # real key has an all-zero pattern row; rows 0 and 1 sum to 1 over their real columns.
    assert_close(pattern.sum(-1), torch.tensor([1.0, 1.0, 0.0])[:, None, None].expand(3, 4, 1),
                 name="pattern row sums (row 2 is padding)", atol=1e-6)
    assert not pattern[1, :, :, :3].any(), "a query saw the left padding"  # row 1 starts at column 3


def test_legacy_conversions_name_what_is_missing_or_uneven(gpt2):
    half = gpt2.KVCache(3)
    half.update(0, torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"layers \[1, 2\] of 3 hold nothing"):
        half.to_legacy_cache()
    with pytest.raises(ValueError, match="the cache holds nothing yet"):
        gpt2.KVCache(3).to_legacy_cache()
    pair0, longer = (torch.zeros(1, 2, 3, 4),) * 2, (torch.zeros(1, 2, 5, 4),) * 2
    with pytest.raises(ValueError, match=r"past_key_values\[1\] has shape \(1, 2, 5, 4\) but past_key_values\[0\]"):
        gpt2.KVCache.from_legacy_cache((pair0, longer))


def test_to_converts_a_dynamic_cache_as_a_static_one(gpt2):
    """nn.Module.to converts buffers (the static mode's); a dynamic cache's tensors are
    converted too, not silently left as they were."""
    k = torch.randn(1, 2, 3, 4, generator=torch.Generator().manual_seed(19))
    dynamic = gpt2.KVCache(2)
    dynamic.update(0, k, k)
    static = gpt2.KVCache.static(2, 1, 2, 5, 4)
    static.update(0, k, k, torch.arange(3))
    for cache in (dynamic, static):
        assert cache.to(torch.float64) is cache
        assert cache.keys[0].dtype == cache.values[0].dtype == torch.float64
        assert_close(cache.keys[0][:, :, :3], k.double(), name="keys after .to(torch.float64)", atol=0)
        assert cache.keys[0].to(torch.float32).dtype == torch.float32
    assert static.key_mask.dtype == torch.bool, "the mask stays bool"
    assert dynamic.keys[1] is None
    dynamic.update(0, k.double(), k.double())  # the converted cache takes float64 keys
    assert dynamic.get_seq_length(0) == 6


# ------------------------------------------------------------------------- the cache on the other paths
# Last in this file, after the object's own tests: a mistake in update is named there first.


@pytest.mark.exercise("kv_cache")
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_no_output_depends_on_a_later_token_with_a_cache(gpt2, checkpoints, attn, padding):
    _check_causal(_causal_model(gpt2, checkpoints["base"], attn), _cached, padding)


@pytest.mark.exercise("kv_cache")
def test_run_with_cache_through_a_kv_cache(gpt2, checkpoints):
    """One new token after a cached prefix: hook_q/k/v hold the new position only, hook_pattern
    its row over every key, equal to transformers' full-pass attentions' last row."""
    model, hf = _hooked_model(gpt2, checkpoints)
    ids, kwargs, mask = _batch(model.config.vocab_size, seed=2)
    T = ids.shape[1]
    pos = kwargs["position_ids"]
    with torch.no_grad():
        past = model(ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1], use_cache=True).past_key_values
        out, cache = model.run_with_cache(ids[:, -1:], attention_mask=mask, position_ids=pos[:, -1:],
                                          past_key_values=past)
        eager = hf_gpt2(checkpoints["base"])(ids, output_attentions=True, **kwargs)
        full = hf(ids, output_hidden_states=True, **kwargs)
    assert_close(out.logits, full.logits[:, -1:], name="logits of the new token under run_with_cache", atol=ATOL)
    keep = keep_mask(mask, T, T)
    for i in range(model.config.n_layer):
        q = cache[f"blocks.{i}.attn.hook_q"]
        assert q.shape == (3, 1, model.config.n_head, model.config.head_dim), (
            f"with a KV cache, hook_q holds the new positions only, (B, 1, nh, hs), got {tuple(q.shape)}")
        assert_close(cache[f"blocks.{i}.attn.hook_pattern"], zero_blind_rows(eager.attentions[i], keep)[:, :, -1:],
                     name=f"blocks.{i}.attn.hook_pattern of the new token over every key", atol=1e-6)
        assert_close(cache[f"blocks.{i}.hook_resid_pre"], full.hidden_states[i][:, -1:],
                     name=f"blocks.{i}.hook_resid_pre of the new token", atol=ATOL)
