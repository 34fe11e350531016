"""Exercise 11: incremental decoding through past_key_values equals one full pass."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.tiny import left_padded_batch

from .test_model import LEARNER_CONFIGS, pair

CACHE_HINT = (
    "concatenate the cached k and v with the new ones along the sequence dim (dim 2), let positions "
    "continue from the cache length, and let the causal mask put the new queries after the cached keys"
)


def _steps(model, ids, mask=None, prefix=3):
    """Logits of a prefix pass, then one token at a time through the cache, concatenated."""
    B, T = ids.shape
    pos = None if mask is None else (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    kw = lambda end: {} if mask is None else dict(attention_mask=mask[:, :end], position_ids=pos[:, end - 1 : end])  # noqa: E731
    first = model(ids[:, :prefix], use_cache=True,
                  **({} if mask is None else dict(attention_mask=mask[:, :prefix], position_ids=pos[:, :prefix])))
    logits, past = [first.logits], first.past_key_values
    for t in range(prefix, T):
        out = model(ids[:, t : t + 1], past_key_values=past, use_cache=True, **kw(t + 1))
        logits.append(out.logits)
        past = out.past_key_values
    return torch.cat(logits, dim=1), past


@pytest.mark.exercise("kv_cache")
@pytest.mark.parametrize("name", LEARNER_CONFIGS)
def test_incremental_equals_full_pass(gpt2, checkpoints, name):
    model, _ = pair(gpt2, checkpoints[name])
    ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids).logits
        stepped, _ = _steps(model, ids)
    assert_close(stepped, full, name="logits decoded through past_key_values", atol=1e-5, hint=CACHE_HINT)


@pytest.mark.exercise("kv_cache")
def test_incremental_with_left_padding(gpt2, checkpoints):
    model, _ = pair(gpt2, checkpoints["base"])
    ids, mask, pos = left_padded_batch(model.config.vocab_size, [8, 3, 6], seed=1)
    with torch.no_grad():
        full = model(ids, attention_mask=mask, position_ids=pos).logits
        stepped, _ = _steps(model, ids, mask, prefix=4)
    # Padding positions too: they see no key in both runs, and output 0 from attention.
    assert_close(stepped, full, name="left-padded logits decoded through the cache", atol=1e-5,
                 hint="with a cache, attention_mask covers the cached tokens and the new ones: (B, P + T)")


@pytest.mark.exercise("kv_cache")
def test_cache_holds_transformers_keys_and_values(gpt2, checkpoints):
    model, hf = pair(gpt2, checkpoints["deep_narrow_heads"])
    ids = torch.randint(0, model.config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        past = model(ids, use_cache=True).past_key_values
        expected = hf(ids, use_cache=True).past_key_values
    n = model.config.n_layer
    assert isinstance(past, tuple) and len(past) == n, f"past_key_values should be a tuple of {n} (k, v) pairs"
    for i in range(n):
        layer = expected.layers[i]
        assert_close(past[i][0], layer.keys, name=f"past_key_values[{i}][0] (keys)", atol=1e-5,
                     hint="cache k and v after splitting heads: each (B, nh, S, hs)")
        assert_close(past[i][1], layer.values, name=f"past_key_values[{i}][1] (values)", atol=1e-5)


@pytest.mark.exercise("kv_cache")
def test_cache_that_does_not_fit_is_refused(gpt2, checkpoints):
    model, _ = pair(gpt2, checkpoints["base"])
    ids = torch.randint(0, 97, (2, 4), generator=torch.Generator().manual_seed(3))
    past = model(ids, use_cache=True).past_key_values
    step = ids[:, :1]
    with pytest.raises(ValueError, match="past_key_values"):
        model(step, past_key_values=past[:1])  # one layer missing
    with pytest.raises(ValueError, match="past_key_values"):
        model(step[:1], past_key_values=past)  # batch of 1 against a cache of 2
    with pytest.raises(ValueError, match="attention_mask"):
        model(step, past_key_values=past, attention_mask=torch.ones(2, 1))  # must cover 4 + 1
    long = torch.zeros(2, 37, dtype=torch.long)
    with pytest.raises(ValueError, match="n_positions"):
        model(long, past_key_values=past)  # 4 cached + 37 new > 40 positions
