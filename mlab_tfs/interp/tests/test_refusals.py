"""Bad input to every public function gives a TypeError or ValueError naming the argument,
never a NaN, a silent result from another model's numbers, or an error from deep inside.
The checks that live in given.py and the shared helpers hold for the learner's code too; the
ones an exercise itself makes are marked solution_only where the guide does not ask for them.
(Named to run after each exercise's value tests, whose failures carry the diagnoses.)"""

from __future__ import annotations

import math

import pytest
import torch

from mlab_tfs.gpt2 import GPT2LMHeadModel
from mlab_tfs.interp import given

from .reference import GPT2, LLAMA, random_ids


def _pattern(T=4, nh=2):
    return torch.softmax(torch.randn(nh, T, T, generator=torch.Generator().manual_seed(0)), -1)


def test_another_models_cache_is_refused(interp, models):
    """A GPT-2 cache read with a Llama of the same sizes (or the other way round) would be
    split with the wrong weights: the hook names tell them apart."""
    gpt2, llama = models[GPT2][0], models[LLAMA][0]
    ids = random_ids(gpt2.config.vocab_size)
    _, gpt2_cache = gpt2.run_with_cache(ids)
    _, llama_cache = llama.run_with_cache(ids)
    with pytest.raises(ValueError, match="another model's cache"):
        given.check_cache(llama, gpt2_cache, 32)
    with pytest.raises(ValueError, match="another model's cache"):
        given.check_cache(gpt2, llama_cache, 32)
    with pytest.raises(ValueError, match="24 wide|32 wide"):
        given.check_cache(gpt2, gpt2_cache, 24)
    assert given.check_cache(gpt2, gpt2_cache, 32) is gpt2_cache


@pytest.mark.solution_only
@pytest.mark.exercise("head_outputs")
def test_head_outputs_and_components_refuse_another_models_cache(interp, models):
    gpt2, llama = models[GPT2][0], models[LLAMA][0]
    _, gpt2_cache = gpt2.run_with_cache(random_ids(gpt2.config.vocab_size))
    with pytest.raises(ValueError, match="another model's cache"):
        interp.head_outputs(llama, gpt2_cache, 0)
    with pytest.raises(ValueError, match="another model's cache"):
        interp.residual_components(llama, gpt2_cache)


@pytest.mark.exercise("direct_logit_attribution")
def test_positions_refuse_bool_and_2d_tensors(interp, models):
    ours, _ = models[GPT2]
    ids = random_ids(ours.config.vocab_size)
    with pytest.raises(TypeError, match="pos"):
        interp.direct_logit_attribution(ours, ids, 1, 2, pos=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="pos"):
        interp.direct_logit_attribution(ours, ids, 1, 2, pos=torch.tensor([[1], [2]]))
    with pytest.raises(ValueError, match="pos"):
        interp.direct_logit_attribution(ours, ids, 1, 2, pos=torch.tensor([1, 2], device="meta"))


@pytest.mark.solution_only
@pytest.mark.exercise("direct_logit_attribution")
def test_dla_refuses_a_padding_position_and_a_mask_that_does_not_fit(interp, models):
    ours, _ = models[GPT2]
    ids = random_ids(ours.config.vocab_size)
    right_padded = torch.tensor([[1] * 5 + [0] * 2, [1] * 7])
    with pytest.raises(ValueError, match="pos 6 of sequence 0 is padding"):
        interp.direct_logit_attribution(ours, ids, 1, 2, attention_mask=right_padded)
    last = right_padded.sum(1) - 1  # each sequence's last real token: allowed
    out = interp.direct_logit_attribution(ours, ids, 1, 2, pos=last, attention_mask=right_padded)
    parts = out["heads"].sum() + out["mlps"].sum() + out["embed"] + out["biases"]
    assert abs(float(parts - out["total"])) < 1e-4
    with pytest.raises(ValueError, match="all padding"):
        interp.direct_logit_attribution(ours, ids, 1, 2, attention_mask=torch.tensor([[0] * 7, [1] * 7]))
    with pytest.raises(ValueError, match="attention_mask is on meta"):
        interp.direct_logit_attribution(ours, ids, 1, 2, attention_mask=torch.ones(2, 7, device="meta"))
    with pytest.raises(TypeError, match="attention_mask"):
        interp.logit_lens(ours, ids, attention_mask=[[1] * 7] * 2)
    with pytest.raises(ValueError, match="attention_mask must have the ids' shape"):
        interp.per_token_loss(ours, ids, attention_mask=torch.ones(2, 3))


def test_token_choices_refuse_empty_and_meta_tensors(interp, models):
    ours, _ = models[GPT2]
    with pytest.raises(ValueError, match="correct must hold at least one"):
        given.check_token_choice("correct", torch.tensor([], dtype=torch.long), 10)
    with pytest.raises(ValueError, match="wrong is on the meta device"):
        given.check_token_choice("wrong", torch.tensor([1], device="meta"), 10)


@pytest.mark.exercise("head_outputs")
def test_a_model_on_the_meta_device_is_refused(interp, models):
    ours, _ = models[GPT2]
    with torch.device("meta"):
        empty = GPT2LMHeadModel(ours.config)
    with pytest.raises(ValueError, match="meta device"):
        given.layout(empty)
    with pytest.raises(ValueError, match="meta device"):
        interp.logit_diff_direction(empty, 1, 2)


@pytest.mark.exercise("activation_patching")
def test_metric_values_must_be_finite_real_numbers(interp, models):
    with pytest.raises(ValueError, match="finite"):
        given.check_metric_value(torch.tensor(float("nan")))
    with pytest.raises(TypeError, match="real number"):
        given.check_metric_value(torch.tensor(True))
    ours, _ = models[GPT2]
    ids = random_ids(ours.config.vocab_size, (1, 3))
    with pytest.raises(ValueError, match="finite"):
        interp.patch_residual(ours, ids, ids, lambda logits: logits.sum() * float("nan"))


@pytest.mark.solution_only
@pytest.mark.exercise("activation_patching")
def test_logit_diff_metric_checks_its_arguments_and_the_logits(interp):
    with pytest.raises(TypeError, match="pos"):
        interp.logit_diff_metric(1, 2, pos=1.5)
    with pytest.raises(TypeError, match="pos"):
        interp.logit_diff_metric(1, 2, pos=True)
    metric = interp.logit_diff_metric(torch.tensor([1, 2, 3]), 0)
    with pytest.raises(ValueError, match="correct must give one token per sequence \\(2\\), got 3"):
        metric(torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="logits \\(batch, seq, vocab\\)"):
        interp.logit_diff_metric(1, 2)(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="logits \\(batch, seq, vocab\\)"):
        interp.logit_diff_metric(1, 2)([1.0])
    logits = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    assert float(interp.logit_diff_metric(3, 1)(logits)) == 2.0


@pytest.mark.solution_only
@pytest.mark.exercise("activation_patching")
def test_recovered_fraction_refuses_what_is_not_a_finite_number(interp):
    patched = torch.tensor([0.0, 0.5, 1.0])
    for clean, error, match in ((float("nan"), ValueError, "clean must be finite"),
                                (math.inf, ValueError, "clean must be finite"),
                                ("1", TypeError, "clean must be a number"),
                                (None, TypeError, "clean must be a number"),
                                (True, TypeError, "clean must be a number"),
                                (torch.ones(2), TypeError, "clean must be a number")):
        with pytest.raises(error, match=match):
            interp.recovered_fraction(patched, clean, 0.0)
    with pytest.raises(ValueError, match="patched holds NaN"):
        interp.recovered_fraction(torch.tensor([float("nan")]), 1.0, 0.0)
    assert torch.equal(interp.recovered_fraction(patched, torch.tensor(2.0), 0), torch.tensor([0.0, 0.25, 0.5]))


@pytest.mark.solution_only
@pytest.mark.exercise("induction_scores")
def test_repeated_tokens_refuses_a_seed_the_generator_cannot_take(interp):
    for seed in (-1, 2**63):
        with pytest.raises(ValueError, match="seed"):
            interp.repeated_tokens(10, 4, seed=seed)


def test_drawing_refuses_bad_patterns_tokens_and_paths(interp, tmp_path):
    pattern, tokens = _pattern(), list("abcd")
    cases = [((torch.zeros(0, 0), []), ValueError, "pattern"),
             ((torch.zeros(0, 3, 3), list("abc")), ValueError, "pattern"),
             ((torch.full((3, 3), float("nan")), list("abc")), ValueError, "NaN"),
             ((pattern, None), TypeError, "tokens"),
             ((pattern, "abcd"), TypeError, "tokens"),
             ((pattern, [0, 1, 2, 3]), TypeError, "tokens")]
    for (p, t), error, match in cases:
        with pytest.raises(error, match=match):
            given.check_pattern(p) if match in ("pattern", "NaN") else given.check_tokens(t, 4)
    with pytest.raises(TypeError, match="path"):
        given.check_path(3)
    with pytest.raises(ValueError, match="is a folder"):
        given.check_path(tmp_path)
    with pytest.raises(TypeError, match="tokens"):
        given.attention_html(pattern, "abcd", tmp_path / "a.html")
    with pytest.raises(ValueError, match="result"):
        given.plot_patching(torch.zeros(0, 3), tmp_path / "p.png")
    with pytest.raises(ValueError, match="NaN"):
        given.plot_patching(torch.full((2, 3), float("nan")), tmp_path / "p.png")
    with pytest.raises(TypeError, match="labels"):
        given.plot_patching(torch.zeros(2, 3), tmp_path / "p.png", labels="abc")
    with pytest.raises(ValueError, match="is a folder"):
        given.plot_patching(torch.zeros(2, 3), tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.solution_only
@pytest.mark.exercise("attention_plots")
def test_plot_attention_refuses_bad_patterns_tokens_and_paths(interp, tmp_path):
    pattern, tokens = _pattern(), list("abcd")
    for args, error, match in (((torch.zeros(0, 3, 3), list("abc"), tmp_path / "a.png"), ValueError, "pattern"),
                               ((torch.full((3, 3), float("nan")), list("abc"), tmp_path / "a.png"), ValueError, "NaN"),
                               ((pattern, None, tmp_path / "a.png"), TypeError, "tokens"),
                               ((pattern, [0, 1, 2, 3], tmp_path / "a.png"), TypeError, "tokens"),
                               ((pattern, tokens, 3), TypeError, "path"),
                               ((pattern, tokens, tmp_path), ValueError, "is a folder")):
        with pytest.raises(error, match=match):
            interp.plot_attention(*args)
    with pytest.raises(TypeError, match="title"):
        interp.plot_attention(pattern, tokens, tmp_path / "a.png", title=3)
    assert list(tmp_path.iterdir()) == []
