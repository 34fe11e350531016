"""Exercise 8: beam search over the KV cache, sequences and scores against transformers'."""

from __future__ import annotations

import functools

import pytest
import torch

from mlab_tfs.testing.compare import assert_close

from mlab_tfs.sampling.mistakes import MISTAKES as M

from .helpers import CountingModel, padded_batch
from .mistaken import variants
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


def beam_mistakes(out, call):
    """The beam search mistakes' outputs for assert_tokens_equal and assert_close: {Mistake: a
    function giving its sequences}, {Mistake: ... its scores}. call(module) runs beam_search of
    a module (the solution with the mistake written in, in each of its forms); the form closest to
    out (same sequences and scores, else same sequences) is the one compared, computed once."""
    names = ("cache_not_reordered", "only_num_beams_candidates", "length_penalty_ignored")

    @functools.cache
    def result(name):
        runs = [call(m) for m in variants(name)]
        same = [r for r in runs if r.sequences.shape == out.sequences.shape and torch.equal(r.sequences, out.sequences)]
        close = [r for r in same if torch.allclose(r.sequences_scores, out.sequences_scores, atol=1e-5, rtol=1e-6)]
        return (close or same or runs)[0]

    return ({M[n]: lambda n=n: result(n).sequences for n in names},
            {M[n]: lambda n=n: result(n).sequences_scores for n in names})


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
    hint = ("score continuations by the running sum of log_softmax; keep max(2, 1 + number of eos ids) * num_beams "
            "candidates so num_beams remain after removing those that end; finished hypotheses are scored sum / new_len ** length_penalty")
    sequences, scores = beam_mistakes(out, lambda m: m.beam_search(
        model, ids, num_beams, 10, length_penalty, early_stopping, eos, attention_mask=mask, pad_token_id=0,
        num_return_sequences=nrs))
    assert_tokens_equal(out.sequences, expected, "beam_search sequences", hint=hint, mistakes=sequences)
    assert_close(out.sequences_scores, expected_scores, name="beam_search sequences_scores", atol=SCORE_ATOL,
                 rtol=SCORE_RTOL, hint=hint, mistakes=scores)


@pytest.mark.exercise("beam_search")
def test_beam_search_with_eos_that_fires(sampling, model, hf_model):
    """An eos that the beams actually produce, so hypotheses finish at different lengths."""
    ids, mask = padded_batch(VOCAB, [4, 6], seed=21)
    plain, _ = hf_beams(hf_model, ids, mask, 3, 8, 1.0, False, None, 1)
    eos = int(plain[0, ids.shape[1] + 2])
    expected, scores = hf_beams(hf_model, ids, mask, 3, 8, 1.0, False, eos, 3)
    out = sampling.beam_search(model, ids, 3, 8, 1.0, False, eos, attention_mask=mask, pad_token_id=0,
                               num_return_sequences=3)
    named_sequences, named_scores = beam_mistakes(out, lambda m: m.beam_search(
        model, ids, 3, 8, 1.0, False, eos, attention_mask=mask, pad_token_id=0, num_return_sequences=3))
    assert_tokens_equal(out.sequences, expected, "beam_search sequences (eos fires)", mistakes=named_sequences)
    assert_close(out.sequences_scores, scores, name="sequences_scores (eos fires)", atol=SCORE_ATOL, rtol=SCORE_RTOL,
                 mistakes=named_scores)


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


@pytest.mark.exercise("beam_search")
@pytest.mark.parametrize("lengths, seed, eos, pad, max_new, length_penalty, early_stopping, expected", [
    # The best token is eos at once; a lone beam that kept a finished pool would go on
    # (9, 9, 9, 9, 70 scores better per token) where greedy stops.
    ([2, 2], 11, [70, 81], 0, 5, 1.0, "never", [[58, 64, 70], [49, 60, 70]]),
    ([1], 75, 70, None, 8, 2.0, "never", [[57, 70]]),
], ids=["eos-list-pad0", "eos-no-pad"])
def test_one_beam_stops_at_eos_as_transformers(sampling, model, hf_model, lengths, seed, eos, pad, max_new,
                                               length_penalty, early_stopping, expected):
    """num_beams=1 is transformers' greedy search: done at the first eos, padded with pad_token_id."""
    ids, mask = padded_batch(VOCAB, lengths, seed=seed)
    kwargs = dict(num_beams=1, max_new_tokens=max_new, length_penalty=length_penalty, early_stopping=early_stopping,
                  eos_token_id=eos, pad_token_id=pad)
    reference = hf_model.generate(ids, attention_mask=mask, do_sample=False, **kwargs)
    assert reference.tolist() == expected
    out = sampling.beam_search(model, ids, attention_mask=mask, **kwargs)
    hint = "with one beam keep K = 1 candidate: the best token, which ends the prompt when it is eos"
    assert_tokens_equal(out.sequences, reference, "beam_search(num_beams=1) vs transformers' generate", hint=hint)
    # The score of the greedy sequence: its log-probability over new_len ** length_penalty.
    T = ids.shape[1]
    log_probs = torch.log_softmax(hf_model(reference, attention_mask=torch.cat(
        [mask, torch.ones(len(lengths), reference.shape[1] - T, dtype=mask.dtype)], 1)).logits.float(), -1)
    new = reference[:, T:]
    expected_scores = log_probs[:, T - 1 : -1].gather(-1, new[..., None])[..., 0].sum(-1) / new.shape[1] ** length_penalty
    assert_close(out.sequences_scores, expected_scores, name="beam_search(num_beams=1) sequences_scores",
                 atol=SCORE_ATOL, rtol=SCORE_RTOL, hint=hint)


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


# Prompts and an eos (70) on which beams finish early and the three early_stopping rules
# give three different results (with length_penalty 1; True differs from the others with 2).
FIRING = dict(lengths=[4, 6], seed=21, eos=70, max_new_tokens=8)


def firing_batch():
    return padded_batch(VOCAB, FIRING["lengths"], seed=FIRING["seed"])


@pytest.mark.solution_only  # checks the prompts the next test uses (transformers alone), not your code
def test_the_early_stopping_rules_differ_on_these_prompts(hf_model):
    """The setup of the test below: hypotheses finish, and each rule changes the result, so
    treating "never" like False (or True like False) cannot pass it."""
    ids, mask = firing_batch()
    runs = {es: hf_beams(hf_model, ids, mask, 2, FIRING["max_new_tokens"], 1.0, es, FIRING["eos"], 2)
            for es in (True, False, "never")}
    for es, (seqs, _) in runs.items():
        assert bool((seqs[:, ids.shape[1]:] == FIRING["eos"]).any()), f"early_stopping={es}: no hypothesis finished"
    differ = lambda a, b: a[0].shape != b[0].shape or not torch.equal(a[0], b[0]) or not torch.allclose(a[1], b[1])  # noqa: E731
    assert differ(runs[True], runs[False]) and differ(runs["never"], runs[False]) and differ(runs[True], runs["never"])


@pytest.mark.exercise("beam_search")
@pytest.mark.parametrize("early_stopping", [True, False, "never"], ids=str)
@pytest.mark.parametrize("length_penalty", [1.0, 2.0, -0.5])
def test_finished_hypotheses_under_every_early_stopping_rule(sampling, model, hf_model, early_stopping, length_penalty):
    ids, mask = firing_batch()
    num_beams = 2
    n, eos = FIRING["max_new_tokens"], FIRING["eos"]
    expected, scores = hf_beams(hf_model, ids, mask, num_beams, n, length_penalty, early_stopping, eos, num_beams)
    out = sampling.beam_search(model, ids, num_beams, n, length_penalty, early_stopping, eos, attention_mask=mask,
                               pad_token_id=0, num_return_sequences=num_beams)
    hint = {True: "True: a prompt is done once num_beams hypotheses have finished",
            False: "False: done when the best running beam, scored at its current length, cannot beat the worst "
                   "finished one",
            "never": "'never' (length_penalty > 0): the best running beam is scored at the longest possible length"}
    what = f"beam_search(early_stopping={early_stopping!r}, length_penalty={length_penalty}, num_beams={num_beams})"
    assert_tokens_equal(out.sequences, expected, what, hint=hint[early_stopping])
    assert_close(out.sequences_scores, scores, name=f"{what} scores", atol=SCORE_ATOL, rtol=SCORE_RTOL,
                 hint="a finished hypothesis scores sum_logprobs / new_tokens ** length_penalty (eos counted)")


@pytest.mark.exercise("beam_search")
def test_a_list_of_eos_ids(sampling, model, hf_model):
    """Several eos ids: more candidates per step ((1 + n_eos) * num_beams), any of them ends a beam."""
    ids, mask = firing_batch()
    expected, scores = hf_beams(hf_model, ids, mask, 3, 8, 1.0, False, [70, 81], 3)
    out = sampling.beam_search(model, ids, 3, 8, 1.0, False, [70, 81], attention_mask=mask, pad_token_id=0,
                               num_return_sequences=3)
    assert_tokens_equal(out.sequences, expected, "beam_search with eos_token_id=[70, 81]")
    assert_close(out.sequences_scores, scores, name="beam_search scores, two eos ids", atol=SCORE_ATOL, rtol=SCORE_RTOL)


@pytest.mark.exercise("beam_search")
@pytest.mark.parametrize("num_beams", [2, 3])
def test_early_stopping_true_closes_a_full_pool(sampling, model, hf_model, num_beams):
    """Three prompts; with early_stopping=True a prompt whose num_beams hypotheses have all
    finished takes no more, even better ones, while the other prompts run on (a pool that
    keeps accepting them gives other sequences here)."""
    ids, mask = padded_batch(VOCAB, [4, 6, 5], seed=20)
    expected, scores = hf_beams(hf_model, ids, mask, num_beams, 8, 1.0, True, 81, num_beams)
    out = sampling.beam_search(model, ids, num_beams, 8, 1.0, True, 81, attention_mask=mask, pad_token_id=0,
                               num_return_sequences=num_beams)
    hint = "once a prompt has num_beams finished hypotheses (early_stopping=True) its pool is closed"
    assert_tokens_equal(out.sequences, expected, "beam_search(early_stopping=True), one pool full early", hint=hint)
    assert_close(out.sequences_scores, scores, name="scores, early_stopping=True", atol=SCORE_ATOL, rtol=SCORE_RTOL,
                 hint=hint)


@pytest.fixture(scope="module")
def twin_eos_models(checkpoints, tmp_path_factory):
    """The base checkpoint with token 81's embedding made a near copy of token 70's (the
    tokens it predicts most): with eos_token_id=[70, 81] both eos ids are among every beam's
    top two, so more than num_beams of the best 2 * num_beams candidates end at once."""
    from mlab_tfs.gpt2.solution import GPT2LMHeadModel
    from mlab_tfs.testing import tiny

    def edit(state):
        wte = state[next(k for k in state if k.endswith("wte.weight"))]
        noise = torch.randn(wte.shape[1], generator=torch.Generator().manual_seed(0))
        wte[81] = wte[70] * 1.01 + 0.02 * noise

    folder = tiny.edited_checkpoint(checkpoints["base"], tmp_path_factory.mktemp("twin") / "base", edit)
    return {"ours": GPT2LMHeadModel.from_pretrained(folder), "hf": tiny.hf_gpt2(folder)}


@pytest.mark.exercise("beam_search")
@pytest.mark.parametrize("length_penalty, early_stopping", [(2.0, "never"), (3.0, False)], ids=str)
def test_more_candidates_with_several_eos_ids(sampling, twin_eos_models, kind, length_penalty, early_stopping):
    """transformers keeps (1 + number of eos ids) * num_beams candidates per step, so that
    num_beams remain even when every beam's best tokens are eos; with 2 * num_beams the
    beams would run out of live candidates here."""
    ids, mask = padded_batch(VOCAB, [4, 6], seed=21)
    expected, scores = hf_beams(twin_eos_models["hf"], ids, mask, 3, 8, length_penalty, early_stopping, [70, 81], 3)
    out = sampling.beam_search(twin_eos_models[kind], ids, 3, 8, length_penalty, early_stopping, [70, 81],
                               attention_mask=mask, pad_token_id=0, num_return_sequences=3)
    hint = "keep K = max(2, 1 + len(eos ids)) * num_beams candidates per step"
    assert_tokens_equal(out.sequences, expected, "beam_search with two near-tied eos ids", hint=hint)
    assert_close(out.sequences_scores, scores, name="scores with two near-tied eos ids", atol=SCORE_ATOL,
                 rtol=SCORE_RTOL, hint=hint)
