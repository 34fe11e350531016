"""The KV cache's rows, on every kind of cache the samplers meet.

- a tuple of (k, v) pairs (legacy; the helpers return new tuples);
- transformers' DynamicCache (``.layers[i].keys``; changed in place);
- a cache in the shape of our GPT-2's KVCache: ``__getitem__(i) -> (k, v)``, ``__len__``,
  transformers' method names ``reorder_cache`` / ``batch_repeat_interleave``, changed in place,
  and no ``.layers``. ``PlainKVCache`` below is that interface and nothing more.

And no sampler uses a cache again after a forward moved on from it: ``InPlaceCacheModel``
hands out one cache object that every forward updates in place, and refuses a cache whose
length does not match the attention mask (a reused prefix cache would hold extra columns).
"""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from mlab_tfs.sampling import given
from mlab_tfs.testing.compare import assert_close

from .helpers import padded_batch, prompts
from .test_generate import assert_tokens_equal

VOCAB = 97


class PlainKVCache:
    """Our GPT-2 KVCache's interface, dynamic mode: layers of (k, v) (B, nh, L, hs) updated in place."""

    def __init__(self, pairs=()):
        self.pairs = [(k, v) for k, v in pairs]

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        return self.pairs[i]

    def update(self, layer_idx, k, v):
        if layer_idx == len(self.pairs):
            self.pairs.append((k, v))
        else:
            old_k, old_v = self.pairs[layer_idx]
            self.pairs[layer_idx] = (torch.cat([old_k, k], dim=2), torch.cat([old_v, v], dim=2))
        return self.pairs[layer_idx]

    def get_seq_length(self):
        return self.pairs[0][0].shape[2] if self.pairs else 0

    def reorder_cache(self, beam_idx):
        self.pairs = [(k.index_select(0, beam_idx), v.index_select(0, beam_idx)) for k, v in self.pairs]

    def batch_repeat_interleave(self, repeats):
        self.pairs = [(k.repeat_interleave(repeats, 0), v.repeat_interleave(repeats, 0)) for k, v in self.pairs]


def _tuple_cache(B=3, n_layer=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple((torch.randn(B, 2, 4, 3, generator=g), torch.randn(B, 2, 4, 3, generator=g)) for _ in range(n_layer))


def _as_dynamic(past):
    cache = DynamicCache()
    for i, (k, v) in enumerate(past):
        cache.update(k.clone(), v.clone(), i)
    return cache


FORMS = {"tuple": lambda p: p, "DynamicCache": _as_dynamic,
         "KVCache-like": lambda p: PlainKVCache((k.clone(), v.clone()) for k, v in p)}


def _layer(cache, i):
    return (cache.layers[i].keys, cache.layers[i].values) if isinstance(cache, DynamicCache) else cache[i]


@pytest.mark.exercise("kv_cache_loop")
@pytest.mark.parametrize("form", FORMS)
def test_reorder_and_expand_every_kind_of_cache(sampling, form):
    past, make = _tuple_cache(), FORMS[form]
    index = torch.tensor([2, 0, 0, 1])
    reordered = sampling.reorder_cache(make(past), index)
    expanded = sampling.expand_cache(make(past), 2)
    for i, (k, v) in enumerate(past):
        for got, want, what in ((_layer(reordered, i), (k[index], v[index]), "reorder_cache"),
                                (_layer(expanded, i), (k.repeat_interleave(2, 0), v.repeat_interleave(2, 0)),
                                 "expand_cache")):
            assert_close(got[0], want[0], name=f"{what} ({form}): layer {i} keys", atol=0,
                         hint="tuples: index_select / repeat_interleave along dim 0; a cache object: call its "
                              "reorder_cache / batch_repeat_interleave (test for the method, not the class)")
            assert_close(got[1], want[1], name=f"{what} ({form}): layer {i} values", atol=0)
    if form != "tuple":  # cache objects change in place, and are returned
        cache = make(past)
        assert sampling.reorder_cache(cache, [1, 2]) is cache and sampling.expand_cache(cache, 3) is cache
        assert _layer(cache, 0)[0].shape[0] == 6


@pytest.mark.exercise("kv_cache_loop")
@pytest.mark.parametrize("form", FORMS)
def test_cache_rows_and_device_of_every_kind_of_cache(sampling, form):
    past = FORMS[form](_tuple_cache(B=3))
    assert given.cache_rows(past) == 3 and given.cache_device(past) == torch.device("cpu")
    for index in ([3], [0, -1]):  # rows are [0, 3) whatever the kind of cache
        with pytest.raises(ValueError, match="index"):
            sampling.reorder_cache(past, index)
    assert given.cache_rows(PlainKVCache()) is None and given.cache_rows(DynamicCache()) is None
    with pytest.raises(TypeError, match="past"):
        sampling.reorder_cache({"k": 1}, [0])
    with pytest.raises(TypeError, match="past"):
        sampling.expand_cache(object(), 2)


class InPlaceCacheModel(torch.nn.Module):
    """transformers' GPT-2 behind a PlainKVCache-shaped cache that each forward updates in
    place (as our KVCache and transformers 5's DynamicCache are): the cache object passed
    in is the one returned. A cache whose length is not (mask length - new tokens) was
    used again after a forward moved it on: AssertionError."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False):
        cache = past_key_values if past_key_values is not None else _Wrapped(DynamicCache())
        assert isinstance(cache, _Wrapped), f"the sampler passed back a {type(cache).__name__}, not the model's cache"
        if attention_mask is not None:
            expected = attention_mask.shape[1] - input_ids.shape[1]
            assert cache.inner.get_seq_length() == expected, (
                f"a cache of {cache.inner.get_seq_length()} positions came with a mask for {expected} cached "
                "positions: a cache was used again after a forward had updated it in place")
        out = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         **{given.cache_argument(self.model): cache.inner}, use_cache=True)
        return _Out(out.logits, cache)


class _Wrapped(PlainKVCache):
    """A PlainKVCache over a DynamicCache: __getitem__ / __len__ and in-place row methods, no .layers."""

    def __init__(self, inner):
        self.inner = inner

    def __len__(self):
        return len(self.inner.layers)

    def __getitem__(self, i):
        return self.inner.layers[i].keys, self.inner.layers[i].values

    def reorder_cache(self, beam_idx):
        self.inner.reorder_cache(beam_idx)

    def batch_repeat_interleave(self, repeats):
        self.inner.batch_repeat_interleave(repeats)


class _Out:
    def __init__(self, logits, past_key_values):
        self.logits, self.past_key_values = logits, past_key_values


@pytest.mark.exercise("kv_cache_loop")
def test_generate_on_a_cache_updated_in_place(sampling, hf_model):
    ids, mask = padded_batch(VOCAB, [5, 2, 7], seed=9)
    kw = dict(max_new_tokens=8, pad_token_id=0, do_sample=True, top_k=20, generator=None)
    torch.manual_seed(1)
    expected = sampling.generate(hf_model, ids, mask, **kw)
    torch.manual_seed(1)
    got = sampling.generate(InPlaceCacheModel(hf_model), ids, mask, **kw)
    assert_tokens_equal(got, expected, "generate on a KVCache-like cache updated in place")


@pytest.mark.exercise("beam_search")
def test_beam_search_on_a_cache_updated_in_place(sampling, hf_model):
    ids, mask = padded_batch(VOCAB, [5, 2, 7], seed=20)
    expected = sampling.beam_search(hf_model, ids, 3, 8, eos_token_id=5, attention_mask=mask, pad_token_id=0,
                                    num_return_sequences=2)
    got = sampling.beam_search(InPlaceCacheModel(hf_model), ids, 3, 8, eos_token_id=5, attention_mask=mask,
                               pad_token_id=0, num_return_sequences=2)
    assert_tokens_equal(got.sequences, expected.sequences, "beam_search on a KVCache-like cache",
                        hint="expand_cache / reorder_cache must use the cache's own methods (in place)")
    assert_close(got.sequences_scores, expected.sequences_scores, name="beam scores on a KVCache-like cache",
                 atol=1e-5)


@pytest.mark.exercise("two_contexts")
def test_two_contexts_on_a_cache_updated_in_place(sampling, hf_model):
    a, mask_a = padded_batch(VOCAB, [5, 3], seed=21)
    b, mask_b = padded_batch(VOCAB, [2, 6], seed=22)
    run = lambda m: sampling.sample_two_contexts(m, a, b, mask_a, mask_b, gamma=1.5, max_new_tokens=6,  # noqa: E731
                                                 pad_token_id=0, generator=torch.Generator().manual_seed(4))
    assert_tokens_equal(run(InPlaceCacheModel(hf_model)), run(hf_model), "sample_two_contexts on a KVCache-like cache")


@pytest.mark.exercise("suffix_scoring")
def test_suffix_scoring_and_filtering_on_a_cache_updated_in_place(sampling, hf_model):
    """score_suffix expands the prompt's cache in place; filtered_sample scores two suffixes:
    each from its own prompt run, never from a cache a forward has moved on."""
    prompt = prompts(VOCAB, [4], seed=3)[0]
    completions = [[], [5], [6, 7, 8], [9, 10]]
    strict = InPlaceCacheModel(hf_model)
    assert_close(sampling.score_suffix(strict, prompt, completions, [11, 12]),
                 sampling.score_suffix_naive(hf_model, prompt, completions, [11, 12]),
                 name="score_suffix on a KVCache-like cache vs one forward per text", atol=1e-5)
    run = lambda m: sampling.filtered_sample(m, prompt, 4, [5, 6], [7], max_new_tokens=5,  # noqa: E731
                                             generator=torch.Generator().manual_seed(1))
    got, expected = run(strict), run(hf_model)
    assert got.completions == expected.completions
    assert_close(got.scores, expected.scores, name="filtered_sample scores on a KVCache-like cache", atol=1e-5)
