"""Incremental decoding with GPT-2's KVCache, holding num_key_value_heads heads: one token at a
time (dynamic) and over preallocated buffers (static), with left padding, equals one full pass;
and no output at position t depends on a later token, on any path (eager, sdpa, static cache),
padding positions included."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.gpt2.solution import KVCache
from mlab_tfs.testing.compare import assert_close
from mlab_tfs.testing.tiny import left_padded_batch

from .helpers import GQA, LLAMA3, NAMES, QWEN3, pair, positions

PATHS = ("eager", "sdpa")


def _full(model, ids, mask):
    with torch.no_grad():
        return model(ids, attention_mask=mask, position_ids=positions(mask)).logits


def _dynamic(model, ids, mask, prefix=3):
    """The first ``prefix`` tokens in one pass, then one token per step through the cache."""
    steps = []
    with torch.no_grad():
        out = model(ids[:, :prefix], attention_mask=mask[:, :prefix], position_ids=positions(mask)[:, :prefix],
                    use_cache=True)
        steps.append(out.logits)
        cache = out.past_key_values
        for t in range(prefix, ids.shape[1]):
            out = model(ids[:, t:t + 1], attention_mask=mask[:, :t + 1],
                        position_ids=positions(mask)[:, t:t + 1], past_key_values=cache, use_cache=True)
            assert out.past_key_values is cache  # one object, updated in place
            steps.append(out.logits)
    return torch.cat(steps, dim=1), cache


def _static(model, ids, mask, prefix=3, max_len=16):
    cache = KVCache.for_model(model, ids.shape[0], max_len)
    cache.reset(mask)  # which columns hold padding: every column of the mask
    steps = []
    with torch.no_grad():
        for lo, hi in [(0, prefix)] + [(t, t + 1) for t in range(prefix, ids.shape[1])]:
            steps.append(model(ids[:, lo:hi], position_ids=positions(mask)[:, lo:hi], past_key_values=cache,
                               cache_position=torch.arange(lo, hi)).logits)
    return torch.cat(steps, dim=1), cache


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", NAMES)
def test_dynamic_cache_equals_full_pass_with_left_padding(llama, checkpoints, hf_models, name, path):
    model, _ = pair(llama, checkpoints, hf_models, name, path)
    ids, mask, _ = left_padded_batch(model.config.vocab_size, [9, 6, 2], seed=4)
    full = _full(model, ids, mask)
    steps, cache = _dynamic(model, ids, mask)
    real = mask.bool()
    assert_close(steps[real], full[real], name=f"{name} cached logits ({path})", atol=1e-5)
    # The cache holds the shared key/value heads, not the repeated ones: what GQA saves.
    cfg = model.config
    assert cache.keys[0].shape == (3, cfg.num_key_value_heads, 9, cfg.head_dim)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", [GQA, LLAMA3, QWEN3])
def test_static_cache_equals_full_pass_with_left_padding(llama, checkpoints, hf_models, name, path):
    model, _ = pair(llama, checkpoints, hf_models, name, path)
    ids, mask, _ = left_padded_batch(model.config.vocab_size, [9, 5], seed=5)
    full = _full(model, ids, mask)
    steps, cache = _static(model, ids, mask)
    real = mask.bool()
    assert_close(steps[real], full[real], name=f"{name} static-cache logits ({path})", atol=1e-5)
    assert cache.keys[0].shape == (2, model.config.num_key_value_heads, 16, model.config.head_dim)


@pytest.mark.parametrize("name", [GQA, QWEN3])
def test_positions_continue_after_the_cache(llama, checkpoints, hf_models, name):
    """No position_ids: the new tokens sit at P .. P + T - 1 after P cached ones (transformers' rule)."""
    model, hf = pair(llama, checkpoints, hf_models, name)
    ids = torch.randint(0, model.config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        first = model(ids[:, :6], use_cache=True)
        rest = model(ids[:, 6:], past_key_values=first.past_key_values).logits
        expected = hf(ids).logits
    assert_close(torch.cat([first.logits, rest], 1), expected, name="logits of 6 then 4 tokens", atol=1e-5)


def test_cache_equals_transformers_cache(llama, checkpoints, hf_models):
    """Layer 0's cached keys are transformers' (rotated, nkv heads), so a legacy tuple of ours
    continues in transformers and the other way round."""
    from transformers import DynamicCache

    model, hf = pair(llama, checkpoints, hf_models, LLAMA3)
    ids = torch.randint(0, model.config.vocab_size, (1, 8), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ours = model(ids[:, :5], use_cache=True).past_key_values.to_legacy_cache()
        theirs = hf(ids[:, :5], use_cache=True).past_key_values
        for i, (k, v) in enumerate(ours):
            assert_close(k, theirs.layers[i].keys, name=f"layer {i} keys", atol=1e-5)
            assert_close(v, theirs.layers[i].values, name=f"layer {i} values", atol=1e-5)
        a = model(ids[:, 5:], past_key_values=tuple((k, v) for k, v in ours)).logits
        b = hf(ids[:, 5:], past_key_values=DynamicCache(ours)).logits
    assert_close(a, b, name="logits after the cache", atol=1e-5)


# ----------------------------------------------------------------------------- causality


def _later_tokens_changed(ids, t, vocab_size):
    other = ids.clone()
    other[:, t + 1:] = (other[:, t + 1:] + 1) % vocab_size
    return other


@pytest.mark.parametrize("path", ("eager", "sdpa", "static"))
@pytest.mark.parametrize("name", [GQA, QWEN3])
def test_no_output_depends_on_a_later_token(llama, checkpoints, hf_models, name, path):
    """Changing the tokens after t changes no logit at positions <= t, padding positions
    included (a padding query that sees no key gets a zero attention output, not a uniform
    pattern over every key), in value and in gradient."""
    model, _ = pair(llama, checkpoints, hf_models, name, "eager" if path == "eager" else "sdpa")
    V = model.config.vocab_size
    ids, mask, pos = left_padded_batch(V, [8, 3], seed=8)
    # Padding ids that change too: a padding query must not see them either.
    for t in range(ids.shape[1] - 1):
        other = _later_tokens_changed(ids, t, V)
        other_mask = mask.clone()
        other_mask[1, t + 1:] = 1  # later tokens of the padded row become real
        if path == "static":
            a = _static(model, ids, mask, prefix=ids.shape[1])[0]
            b = _static(model, other, other_mask, prefix=ids.shape[1])[0]
        else:
            with torch.no_grad():
                a = model(ids, attention_mask=mask, position_ids=pos).logits
                b = model(other, attention_mask=other_mask, position_ids=positions(other_mask)).logits
        # Positions <= t: the same mask and ids up to t; the first row's positions too.
        assert torch.equal(a[0, :t + 1], b[0, :t + 1]) or torch.allclose(a[0, :t + 1], b[0, :t + 1], atol=1e-6, rtol=0)
        if t < 5:  # row 1 is padding up to 4: those queries see no key in either version
            assert_close(a[1, :t + 1], b[1, :t + 1], name=f"padding logits at <= {t} ({path})", atol=1e-6)


@pytest.mark.parametrize("path", PATHS)
def test_gradient_of_an_early_output_reaches_no_later_token(llama, checkpoints, hf_models, path):
    """d logits[:, t] / d embedding of a later token is exactly 0, padding queries included."""
    model, _ = pair(llama, checkpoints, hf_models, GQA, path)
    ids, mask, pos = left_padded_batch(model.config.vocab_size, [8, 3], seed=9)
    emb = model.model.embed_tokens
    captured = {}

    def keep(module, inputs, output):
        output.retain_grad()
        captured["x"] = output

    handle = emb.register_forward_hook(keep)
    try:
        logits = model(ids, attention_mask=mask, position_ids=pos).logits
    finally:
        handle.remove()
    for t in (0, 3, 5):
        model.zero_grad()
        captured["x"].grad = None
        logits[:, t].sum().backward(retain_graph=True)
        g = captured["x"].grad
        assert torch.equal(g[:, t + 1:], torch.zeros_like(g[:, t + 1:])), f"position {t} reaches later tokens"


@pytest.mark.parametrize("name", [GQA, QWEN3])
def test_cache_under_bfloat16_autocast(llama, checkpoints, hf_models, name):
    """Training's samples and evaluations decode under autocast: the projections are bfloat16
    there, while the float32 rotations (and QK-norm's float32 weight) would promote q and k back
    to float32. The cache must get k and v in one dtype, and decoding through it equals one pass
    under the same autocast (bfloat16 rounding: 2e-2)."""
    model, _ = pair(llama, checkpoints, hf_models, name, "sdpa")
    ids, mask, _ = left_padded_batch(model.config.vocab_size, [9, 6, 2], seed=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        steps, cache = _dynamic(model, ids, mask)
        full = _full(model, ids, mask)
    assert cache.keys[0].dtype == cache.values[0].dtype == torch.bfloat16
    real = mask.bool()
    assert_close(steps.float()[real], full.float()[real], atol=2e-2, rtol=0, name="logits")


# ------------------------------------------------- the decode step's attention (static cache)


@pytest.mark.solution_only
@pytest.mark.parametrize("decode", [True, False], ids=["decode_attention", "sdpa"])
@pytest.mark.parametrize("name", [GQA, LLAMA3, QWEN3])
def test_static_decode_steps_equal_hand_written(llama, checkpoints, hf_models, monkeypatch, name, decode):
    """One token at a time over a static cache, through decode_attention (the nkv cached heads
    read without repeat_kv) or, with the cache's flag off, sdpa: the hand-written attention's
    logits (1e-5), left padding included; decode_attention once per layer and one-token step."""
    eager, _ = pair(llama, checkpoints, hf_models, name, "eager")
    fused, _ = pair(llama, checkpoints, hf_models, name, "sdpa")
    ids, mask, _ = left_padded_batch(eager.config.vocab_size, [9, 5, 7], seed=9)
    expected, _ = _static(eager, ids, mask)
    calls, real = [], llama.decode_attention
    monkeypatch.setattr(llama, "decode_attention", lambda q, *a: calls.append(q.shape) or real(q, *a))
    static = KVCache.static
    monkeypatch.setattr(KVCache, "static", classmethod(
        lambda cls, *a, **kw: _flagged(static.__func__(cls, *a, **kw), decode)))
    got, cache = _static(fused, ids, mask)
    assert cache.decode_attention is decode
    real_cols = mask.bool()
    assert_close(got[real_cols], expected[real_cols], name=f"{name} static one-token steps (decode={decode})",
                 atol=1e-5)
    assert len(calls) == ((ids.shape[1] - 3) * eager.config.num_hidden_layers if decode else 0)


def _flagged(cache, flag):
    cache.decode_attention = flag
    return cache


@pytest.mark.parametrize("name", [GQA, QWEN3])
def test_static_decode_steps_ignore_later_columns(llama, checkpoints, hf_models, name):
    """Whatever a static cache's later columns hold (another text's stale keys and values), a
    one-token step's logits are those of a clean run: no output at t depends on a column after t."""
    model, _ = pair(llama, checkpoints, hf_models, name)
    ids, mask, _ = left_padded_batch(model.config.vocab_size, [7, 4], seed=10)
    clean, _ = _static(model, ids, mask, prefix=1)
    cache = KVCache.for_model(model, ids.shape[0], 16)
    cache.reset(mask)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for t in range(ids.shape[1]):
            for buf in (*cache.keys, *cache.values):
                buf[:, :, t + 1:] = torch.randn(buf[:, :, t + 1:].shape, generator=g) * 5
            step = model(ids[:, t:t + 1], position_ids=positions(mask)[:, t:t + 1], past_key_values=cache,
                         cache_position=torch.tensor([t])).logits
            assert_close(step, clean[:, t:t + 1], name=f"{name} logits at step {t} with garbage after it", atol=1e-5)
