"""SamplingOptions: one checked object for every decoder; the old keywords still build it.

Every decoder gives the same tokens for options=SamplingOptions(...) as for the same
settings passed as keywords; a keyword that disagrees with options is a ValueError naming
both; the eager loops check the options once, not at every step.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from mlab_tfs.sampling import options as options_module
from mlab_tfs.sampling import solution
from mlab_tfs.sampling.options import FIELDS, SamplingOptions
from mlab_tfs.testing.compare import assert_close

from .helpers import padded_batch, prompts
from .test_arguments import GENERATE_BAD, of
from .test_beam_search import SCORE_ATOL, SCORE_RTOL
from .test_generate import assert_tokens_equal

VOCAB = 97

# The bad values of generate's sampling arguments (test_arguments.GENERATE_BAD), each now
# refused by SamplingOptions itself, with the same error naming the field.
FIELD_BAD = [(arg, value, error) for arg, value, error in GENERATE_BAD if arg in FIELDS] + [
    ("min_tokens_to_keep", 0, ValueError), ("min_tokens_to_keep", 1.0, TypeError),
    ("min_tokens_to_keep", True, TypeError), ("do_sample", None, TypeError),
]


@pytest.mark.parametrize("arg, value, error", FIELD_BAD, ids=[f"{a}={v!r}" for a, v, _ in FIELD_BAD])
def test_options_refuse_bad_fields_by_name(arg, value, error):
    with pytest.raises(error, match=arg):
        SamplingOptions(**{"do_sample": True, arg: value})


def test_options_normalise_and_compare():
    """numpy and 0-d tensor numbers become Python ints and floats: equal options are equal."""
    a = SamplingOptions(do_sample=True, temperature=np.float32(0.5), top_k=np.int64(5), top_p=torch.tensor(0.5),
                        no_repeat_ngram_size=torch.tensor(2), min_tokens_to_keep=np.int32(2))
    b = SamplingOptions(do_sample=True, temperature=0.5, top_k=5, top_p=0.5, no_repeat_ngram_size=2,
                        min_tokens_to_keep=2)
    assert a == b and hash(a) == hash(b)
    assert type(a.top_k) is int and type(a.temperature) is float and type(a.top_p) is float
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.top_k = 3  # type: ignore[misc]
    # Greedy: temperature is unused, and 0 is accepted (as the keywords accepted it).
    assert SamplingOptions(temperature=0.0).temperature == 0.0
    assert SamplingOptions(temperature=0.0, top_k=3).unused == ["temperature=0.0", "top_k=3"]
    assert SamplingOptions(do_sample=True, temperature=0.5).unused == []


def _generate(sampling, model, **kw):
    ids, mask = padded_batch(VOCAB, [5, 2, 7], seed=9)
    return sampling.generate(model, ids, mask, max_new_tokens=10, pad_token_id=0,
                             generator=torch.Generator().manual_seed(3), **kw)


SETTINGS = [
    dict(do_sample=True, temperature=0.7, top_k=10, top_p=0.9),
    dict(do_sample=True, min_p=0.1, repetition_penalty=1.5, frequency_penalty=0.3, presence_penalty=0.2),
    dict(do_sample=False, no_repeat_ngram_size=2, repetition_penalty=1.3),
]


@pytest.mark.exercise("kv_cache_loop")
@pytest.mark.parametrize("kw", SETTINGS, ids=["sample-filters", "sample-penalties", "greedy-penalties"])
def test_generate_takes_options_or_keywords_alike(sampling, model, kw):
    expected = _generate(sampling, model, **kw)
    got = _generate(sampling, model, options=SamplingOptions(**kw))
    assert_tokens_equal(got, expected, f"generate(options=SamplingOptions({kw})) vs generate(**{kw})",
                        hint="build the options with resolve_options(options, do_sample=do_sample, ...)")
    # A keyword that agrees with options (after normalisation) is fine.
    agreeing = {name: np.float64(v) if isinstance(v, float) else v for name, v in kw.items()}
    assert_tokens_equal(_generate(sampling, model, options=SamplingOptions(**kw), **agreeing), expected,
                        "generate with options and agreeing keywords")


@pytest.mark.exercise("kv_cache_loop")
def test_min_tokens_to_keep_reaches_the_filters(sampling, model):
    """min_tokens_to_keep (an options field only) is passed to top-k, top-p and min-p: with
    top_k=1 and min_tokens_to_keep=2, the step keeps two tokens, as top_k_filter(logits, 1, 2)."""
    g = torch.Generator().manual_seed(0)
    logits, hist = torch.randn(3, VOCAB, generator=g), torch.randint(0, VOCAB, (3, 4), generator=g)
    for kw in (dict(top_k=1), dict(top_p=0.0), dict(min_p=1.0)):
        o = SamplingOptions(do_sample=True, min_tokens_to_keep=2, **kw)
        got = sampling.process_logits(logits, hist, 0, o)
        kept = torch.isfinite(got).sum(-1)
        assert kept.tolist() == [2, 2, 2], f"process_logits with {o} kept {kept.tolist()} tokens per row, not 2"


@pytest.mark.parametrize("call", [of("penalties", "process_logits", id="process_logits"),
                                  of("kv_cache_loop", "generate", id="generate"),
                                  of("two_contexts", "sample_two_contexts", id="sample_two_contexts"),
                                  of("suffix_scoring", "filtered_sample", id="filtered_sample")])
def test_a_conflicting_keyword_is_an_error_naming_both(sampling, model, call):
    ids = torch.stack(prompts(VOCAB, [4], seed=1))
    o = SamplingOptions(do_sample=True, top_k=5)
    run = {
        "process_logits": lambda **kw: sampling.process_logits(torch.zeros(1, VOCAB), ids, 0, o, **kw),
        "generate": lambda **kw: sampling.generate(model, ids, max_new_tokens=2, options=o, **kw),
        "sample_two_contexts": lambda **kw: sampling.sample_two_contexts(model, ids, ids, max_new_tokens=2,
                                                                         options=o, **kw),
        "filtered_sample": lambda **kw: sampling.filtered_sample(model, ids[0], 2, [1], [2], max_new_tokens=2,
                                                                 options=o, **kw),
    }[call]
    with pytest.raises(ValueError, match=r"options\.top_k=5 and top_k=3"):
        run(top_k=3)
    with pytest.raises(TypeError, match="options"):
        {"process_logits": lambda: sampling.process_logits(torch.zeros(1, VOCAB), ids, 0, {"top_k": 5}),
         "generate": lambda: sampling.generate(model, ids, max_new_tokens=2, options=dict(top_k=5)),
         "sample_two_contexts": lambda: sampling.sample_two_contexts(model, ids, ids, max_new_tokens=2, options=5),
         "filtered_sample": lambda: sampling.filtered_sample(model, ids[0], 2, [1], [2], options="greedy")}[call]()


@pytest.mark.exercise("kv_cache_loop")
def test_generate_conflicts_name_every_clash(sampling, model):
    ids = torch.stack(prompts(VOCAB, [4], seed=1))
    o = SamplingOptions(do_sample=True, temperature=0.5, repetition_penalty=1.2)
    with pytest.raises(ValueError, match=r"options\.temperature=0\.5 and temperature=0\.7.*"
                                         r"options\.repetition_penalty=1\.2 and repetition_penalty=1\.0"):
        sampling.generate(model, ids, max_new_tokens=2, options=o, temperature=0.7, repetition_penalty=1.0)
    # do_sample=False explicitly given against options that sample is a conflict too.
    with pytest.raises(ValueError, match=r"options\.do_sample=True and do_sample=False"):
        sampling.generate(model, ids, max_new_tokens=2, options=o, do_sample=False)


def _counting(monkeypatch, module, names):
    counts = dict.fromkeys(names, 0)
    for name in names:
        original = getattr(module, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    return counts


def test_eager_loops_check_the_options_once(sampling, model, monkeypatch):
    """The number of argument checks does not grow with the number of steps: the loops call
    the processors' unchecked kernels (the solution's design; a learner's loop may check more)."""
    if sampling is not solution:
        pytest.skip("how often the solution's loops check their arguments")
    kw = dict(do_sample=True, temperature=0.8, top_k=20, top_p=0.95, min_p=0.01, repetition_penalty=1.2,
              frequency_penalty=0.1, presence_penalty=0.1, no_repeat_ngram_size=3)
    ids = torch.stack(prompts(VOCAB, [5, 5], seed=4))
    runs = {
        "generate": lambda n: solution.generate(model, ids, max_new_tokens=n, **kw),
        "sample_two_contexts": lambda n: solution.sample_two_contexts(model, ids, ids, gamma=0.5, max_new_tokens=n,
                                                                      options=SamplingOptions(**kw)),
        "beam_search": lambda n: solution.beam_search(model, ids, 3, n, options=SamplingOptions(
            repetition_penalty=1.2, frequency_penalty=0.1, no_repeat_ngram_size=3)),
    }
    for name, run in runs.items():
        per_length = []
        for n in (2, 9):
            checks = _counting(monkeypatch, solution, ["check_history", "check_number", "check_int", "check_bool"])
            option_checks = _counting(monkeypatch, options_module, ["check_number", "check_int", "check_bool"])
            run(n)
            per_length.append((dict(checks), sum(option_checks.values())))
            monkeypatch.undo()
        assert per_length[0] == per_length[1], (
            f"{name}: argument checks grew with the number of steps (2 steps: {per_length[0]}, 9 steps: "
            f"{per_length[1]}): the loop re-checks its options every step")
        assert per_length[0][0]["check_history"] == 0, f"{name} checks a history inside its loop"


def test_fast_takes_options_or_keywords_alike(model_pairs):  # the solution's fast path: not an exercise
    from mlab_tfs.sampling.fast import generate_fast

    model = model_pairs["base"]["ours"]
    ids, mask = padded_batch(VOCAB, [5, 3], seed=15)
    kw = dict(do_sample=True, temperature=0.9, top_k=12, repetition_penalty=1.3, presence_penalty=0.2)
    run = lambda **k: generate_fast(model, ids, mask, max_new_tokens=8, pad_token_id=0, compile=False,  # noqa: E731
                                    generator=torch.Generator().manual_seed(7), **k)
    assert_tokens_equal(run(options=SamplingOptions(**kw)), run(**kw), "generate_fast(options=...) vs keywords")
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        run(options=SamplingOptions(no_repeat_ngram_size=2))
    with pytest.raises(ValueError, match=r"options\.top_k=12 and top_k=4"):
        run(options=SamplingOptions(**kw), top_k=4)


@pytest.mark.exercise("two_contexts")
def test_two_contexts_with_options_and_penalties_at_gamma_zero_is_generate(sampling, model):
    """gamma = 0 is context a alone: the same tokens as generate, penalties included (they
    read context a's tokens, padding left out)."""
    a, mask_a = padded_batch(VOCAB, [5, 3], seed=21)
    b, mask_b = padded_batch(VOCAB, [2, 6], seed=22)
    o = SamplingOptions(do_sample=True, top_k=15, repetition_penalty=1.4, frequency_penalty=0.2)
    expected = sampling.generate(model, a, mask_a, max_new_tokens=8, options=o, pad_token_id=0,
                                 generator=torch.Generator().manual_seed(2))
    got = sampling.sample_two_contexts(model, a, b, mask_a, mask_b, gamma=0.0, max_new_tokens=8, options=o,
                                       pad_token_id=0, generator=torch.Generator().manual_seed(2))
    assert_tokens_equal(got, expected, "sample_two_contexts(gamma=0, options with penalties) vs generate",
                        hint="history = context a's rows with -1 at their padding, num_generated = tokens so far")


@pytest.mark.exercise("suffix_scoring")
def test_filtered_sample_takes_options(sampling, model):
    prompt = prompts(VOCAB, [4], seed=3)[0]
    run = lambda **k: sampling.filtered_sample(model, prompt, 4, [5, 6], [7], max_new_tokens=5,  # noqa: E731
                                               generator=torch.Generator().manual_seed(1), **k)
    expected = run(temperature=0.8, top_k=9)
    got = run(options=SamplingOptions(do_sample=True, temperature=0.8, top_k=9))
    assert got.completions == expected.completions
    assert_close(got.scores, expected.scores, name="filtered_sample scores with options", atol=0)
    with pytest.raises(ValueError, match="do_sample"):
        run(options=SamplingOptions(do_sample=False))


# Beam search with the penalties, against transformers' (which applies them to the log-probabilities).
BEAM_PENALTIES = [dict(repetition_penalty=1.6), dict(no_repeat_ngram_size=2), dict(repetition_penalty=0.7,
                                                                                     no_repeat_ngram_size=3)]


@pytest.mark.exercise("beam_search")
@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("kw", BEAM_PENALTIES, ids=str)
def test_beam_search_with_penalties_matches_transformers(sampling, model, hf_model, num_beams, kw):
    ids = torch.stack(prompts(VOCAB, [6, 6], seed=30))  # unpadded: transformers penalises pad ids
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' notes about its generation config
        ref = hf_model.generate(ids, num_beams=num_beams, max_new_tokens=10, do_sample=False, eos_token_id=5,
                                pad_token_id=0, output_scores=True, return_dict_in_generate=True, **kw)
    out = sampling.beam_search(model, ids, num_beams, 10, eos_token_id=5, pad_token_id=0,
                               options=SamplingOptions(**kw))
    hint = ("penalties act on each step's log-probabilities (B * nb, V), history = each beam's tokens; "
            "with one beam, on the logits")
    assert_tokens_equal(out.sequences, ref.sequences, f"beam_search(num_beams={num_beams}, {kw})", hint=hint)
    if num_beams > 1:
        assert_close(out.sequences_scores, ref.sequences_scores, name="beam_search sequences_scores with penalties",
                     atol=SCORE_ATOL, rtol=SCORE_RTOL, hint=hint)


@pytest.mark.exercise("beam_search")
def test_beam_search_refuses_beam_sampling_and_warns_about_unused_settings(sampling, model):
    ids = torch.stack(prompts(VOCAB, [4], seed=1))
    with pytest.raises(ValueError, match="do_sample"):
        sampling.beam_search(model, ids, 2, 3, options=SamplingOptions(do_sample=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampling.beam_search(model, ids, 2, 3, options=SamplingOptions(top_k=4))
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("top_k=4" in m for m in messages), f"beam search with top_k=4 should warn it has no effect: {messages}"


def test_resolve_options_cases():
    """The given resolve_options: defaults, keywords over them, agreement and conflicts."""
    from mlab_tfs.sampling.options import resolve_options

    assert resolve_options(None) == SamplingOptions()
    assert resolve_options(None, dict(do_sample=True)) == SamplingOptions(do_sample=True)
    assert resolve_options(None, dict(do_sample=True), do_sample=False, top_k=None) == SamplingOptions()
    o = SamplingOptions(temperature=0.0, top_k=4)
    assert resolve_options(o, dict(do_sample=True)) is o  # options win over the function's defaults
    assert resolve_options(o, top_k=np.int64(4), temperature=None) is o
    # Bad only together with options (sampling at temperature 0): a conflict, named as one.
    with pytest.raises(ValueError, match=r"options\.do_sample=False and do_sample=True"):
        resolve_options(o, do_sample=True)
    # Bad alone, even if it equals options' value: its own error.
    with pytest.raises(TypeError, match="top_k"):
        resolve_options(o, top_k=4.0)
    with pytest.raises(TypeError, match="options must be a mlab_tfs.sampling.SamplingOptions"):
        resolve_options({"top_k": 4})


@pytest.mark.parametrize("call", [of("penalties", "process_logits", id="process_logits"),
                                  of("kv_cache_loop", "generate", id="generate")])
def test_a_keyword_that_is_no_option_is_a_type_error_naming_it(sampling, model, call):
    ids = torch.stack(prompts(VOCAB, [4], seed=1))
    run = {"process_logits": lambda **kw: sampling.process_logits(torch.zeros(1, VOCAB), ids, 0, **kw),
           "generate": lambda **kw: sampling.generate(model, ids, max_new_tokens=2, **kw)}[call]
    with pytest.raises(TypeError, match="'top_kk'"):
        run(top_kk=5)
    with pytest.raises(TypeError, match="'optoins'"):
        run(optoins=SamplingOptions())
    # min_tokens_to_keep, a field without a keyword before, is one now.
    assert run(min_tokens_to_keep=2, do_sample=True) is not None


@pytest.mark.exercise("beam_search")
def test_beam_search_takes_options_or_keywords_alike(sampling, model):
    ids, mask = padded_batch(VOCAB, [5, 2, 7], seed=20)
    run = lambda **kw: sampling.beam_search(model, ids, 3, 8, eos_token_id=5, attention_mask=mask,  # noqa: E731
                                            pad_token_id=0, **kw)
    expected = run(repetition_penalty=1.4, no_repeat_ngram_size=2)
    got = run(options=SamplingOptions(repetition_penalty=1.4, no_repeat_ngram_size=2))
    assert_tokens_equal(got.sequences, expected.sequences, "beam_search(options=...) vs keywords")
    assert_close(got.sequences_scores, expected.sequences_scores, name="beam scores, options vs keywords", atol=0)
    with pytest.raises(ValueError, match=r"options\.repetition_penalty=1\.4 and repetition_penalty=1\.1"):
        run(options=SamplingOptions(repetition_penalty=1.4), repetition_penalty=1.1)


def test_a_setting_passed_by_position_says_to_pass_it_by_keyword(sampling, model):
    """Before the options object, do_sample, temperature... followed the prompt arguments; a
    call that still passes one by position lands on options and is told what to write."""
    ids, mask = padded_batch(VOCAB, [4, 2], seed=21)
    calls = {
        "generate(..., True)": lambda: sampling.generate(model, ids, mask, 3, True, pad_token_id=0),
        "process_logits(..., True)": lambda: sampling.process_logits(torch.zeros(1, VOCAB), ids[:1], 0, True),
        "filtered_sample(..., 0.7)": lambda: sampling.filtered_sample(model, [1, 2], 2, [3], [4], 3, 0.7),
        "sample_two_contexts(..., 0)": lambda: sampling.sample_two_contexts(model, ids, ids, mask, mask,
                                                                            "contrastive", 1.0, 3, 0, pad_token_id=0),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match=r"options must be a mlab_tfs\.sampling\.SamplingOptions or None, got "
                                            r"(bool|float|int) \(.*\): the sampling settings are keywords"):
            call()
