"""Exercise 8: beam search over the KV cache, sequences and scores against transformers'."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from mlab_tfs.testing.compare import assert_close

from .helpers import CountingModel, padded_batch
from .test_generate import assert_tokens_equal

VOCAB = 97

# Sequence scores are sums of up to 10 log-probabilities (about -4.6 each) divided by
# length ** length_penalty: with length_penalty = -1 they reach ~500, so fp32 rounding
# of the sum gives ~1e-5 relative differences between two correct orders of summation.
SCORE_ATOL, SCORE_RTOL = 1e-5, 1e-6


def hf_beams(hf_model, ids, mask, num_beams, max_new_tokens, length_penalty, early_stopping, eos, nrs):
    out = hf_model.generate(
        ids, attention_mask=mask, num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False,
        length_penalty=length_penalty, early_stopping=early_stopping, eos_token_id=eos, pad_token_id=0,
        num_return_sequences=nrs, output_scores=True, return_dict_in_generate=True,
    )
    return out.sequences, out.sequences_scores


VARIANTS = [
    pytest.param(1.0, False, id="lp1-early-false"),
    pytest.param(0.5, True, id="lp0.5-early-true"),
    pytest.param(2.0, "never", id="lp2-early-never"),
    pytest.param(-1.0, False, id="lp-1-early-false"),
]


@pytest.mark.exercise("beam_search")
@pytest.mark.parametrize("num_beams", [2, 4])
@pytest.mark.parametrize("length_penalty, early_stopping", VARIANTS)
@pytest.mark.parametrize("eos", [0, 5], ids=["eos0", "eos5"])
def test_beam_search_matches_transformers(sampling, model, hf_model, num_beams, length_penalty, early_stopping, eos):
    ids, mask = padded_batch(VOCAB, [5, 2, 7], seed=20)
    nrs = num_beams  # every returned hypothesis, best first
    expected, expected_scores = hf_beams(hf_model, ids, mask, num_beams, 10, length_penalty, early_stopping, eos, nrs)
    out = sampling.beam_search(model, ids, num_beams, 10, length_penalty, early_stopping, eos,
                               attention_mask=mask, pad_token_id=0, num_return_sequences=nrs)
    hint = ("score continuations by the running sum of log_softmax; keep 2 * num_beams candidates so num_beams "
            "remain after removing those that end; finished hypotheses are scored sum / new_len ** length_penalty")
    assert_tokens_equal(out.sequences, expected, "beam_search sequences", hint=hint)
    assert_close(out.sequences_scores, expected_scores, name="beam_search sequences_scores", atol=SCORE_ATOL,
                 rtol=SCORE_RTOL, hint=hint)


@pytest.mark.exercise("beam_search")
def test_beam_search_with_eos_that_fires(sampling, model, hf_model):
    """An eos that the beams actually produce, so hypotheses finish at different lengths."""
    ids, mask = padded_batch(VOCAB, [4, 6], seed=21)
    plain, _ = hf_beams(hf_model, ids, mask, 3, 8, 1.0, False, None, 1)
    eos = int(plain[0, ids.shape[1] + 2])
    expected, scores = hf_beams(hf_model, ids, mask, 3, 8, 1.0, False, eos, 3)
    out = sampling.beam_search(model, ids, 3, 8, 1.0, False, eos, attention_mask=mask, pad_token_id=0,
                               num_return_sequences=3)
    assert_tokens_equal(out.sequences, expected, "beam_search sequences (eos fires)")
    assert_close(out.sequences_scores, scores, name="sequences_scores (eos fires)", atol=SCORE_ATOL, rtol=SCORE_RTOL)


@pytest.mark.exercise("beam_search")
def test_beam_search_runs_one_token_per_beam_per_step(sampling, model):
    ids, mask = padded_batch(VOCAB, [5, 3], seed=22)
    counting = CountingModel(model)
    sampling.beam_search(counting, ids, 4, 6, 1.0, False, None, attention_mask=mask, pad_token_id=0)
    assert counting.calls[0] == tuple(ids.shape), "the prompt runs once, before the beams are expanded"
    assert counting.calls[1:] == [(8, 1)] * 5, (
        f"each later step is one forward of (batch * num_beams, 1) against the reordered cache; got {counting.calls}"
    )


@pytest.mark.exercise("beam_search")
def test_one_beam_is_greedy(sampling, model):
    ids, mask = padded_batch(VOCAB, [5, 3], seed=23)
    out = sampling.beam_search(model, ids, 1, 7, 1.0, False, None, attention_mask=mask, pad_token_id=0)
    greedy = sampling.generate(model, ids, mask, max_new_tokens=7, pad_token_id=0)
    assert_tokens_equal(out.sequences, greedy, "beam_search with num_beams=1 vs greedy generate")


def _tuple_cache(B=3, n_layer=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple((torch.randn(B, 2, 4, 3, generator=g), torch.randn(B, 2, 4, 3, generator=g)) for _ in range(n_layer))


def _as_dynamic(past):
    cache = DynamicCache()
    for i, (k, v) in enumerate(past):
        cache.update(k.clone(), v.clone(), i)
    return cache


@pytest.mark.exercise("beam_search")
@pytest.mark.parametrize("form", ["tuple", "DynamicCache"])
def test_reorder_and_expand_cache(sampling, form):
    past = _tuple_cache()
    make = (lambda p: p) if form == "tuple" else _as_dynamic
    index = torch.tensor([2, 0, 0, 1])
    reordered = sampling.reorder_cache(make(past), index)
    expanded = sampling.expand_cache(make(past), 2)
    for i, (k, v) in enumerate(past):
        got_k = reordered[i][0] if form == "tuple" else reordered.layers[i].keys
        got_v = expanded[i][1] if form == "tuple" else expanded.layers[i].values
        assert_close(got_k, k[index], name=f"reorder_cache: layer {i} keys", atol=0,
                     hint="new row i is old row index[i]: index_select along the batch dim (0)")
        assert_close(got_v, v.repeat_interleave(2, dim=0), name=f"expand_cache: layer {i} values", atol=0,
                     hint="each row repeated in place (rows b, b, b+1, b+1...): repeat_interleave, not repeat")


@pytest.mark.exercise("beam_search")
def test_padded_beams_without_pad_id_pad_with_eos(sampling, model, hf_model):
    """As transformers does, eos fills ended hypotheses when there is no pad id; with neither
    a padded batch is refused."""
    ids, mask = padded_batch(VOCAB, [6, 3], seed=24)
    out = hf_model.generate(ids, attention_mask=mask, num_beams=3, max_new_tokens=8, do_sample=False,
                            eos_token_id=5, num_return_sequences=3, output_scores=True, return_dict_in_generate=True)
    ours = sampling.beam_search(model, ids, 3, 8, 1.0, False, 5, attention_mask=mask, num_return_sequences=3)
    assert_tokens_equal(ours.sequences, out.sequences, "beam_search without pad_token_id")
    with pytest.raises(ValueError, match="pad_token_id"):
        sampling.beam_search(model, ids, 3, 8, 1.0, False, None, attention_mask=mask)
