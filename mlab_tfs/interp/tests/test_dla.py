"""Exercise 3: direct logit attribution against a computation from transformers' run and
weights, summing to the model's own logit difference."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.interp.mistakes import MISTAKES
from mlab_tfs.testing.compare import assert_close

from .reference import GPT2, LLAMA, MODELS, dla_reference, is_gpt2, random_ids

pytestmark = pytest.mark.exercise("direct_logit_attribution")
KEYS = ("heads", "mlps", "embed", "biases", "total")


def _mistakes(hf, ids, correct, wrong, pos, key):
    out = {MISTAKES["scale_not_divided"]: dla_reference(hf, ids, correct, wrong, pos, divide=False)[key],
           MISTAKES["norm_weight_ignored"]: dla_reference(hf, ids, correct, wrong, pos, weight=False)[key]}
    if is_gpt2(hf):
        out[MISTAKES["mean_not_subtracted"]] = dla_reference(hf, ids, correct, wrong, pos, centre=False)[key]
        out[MISTAKES["norm_bias_divided"]] = dla_reference(hf, ids, correct, wrong, pos, bias_divided=True)[key]
    out[MISTAKES["summed_over_batch"]] = dla_reference(hf, ids, correct, wrong, pos)[key] * ids.shape[0]
    return out


@pytest.mark.parametrize("name", MODELS)
def test_attribution_equals_the_frozen_norm_split(interp, models, name):
    ours, hf = models[name]
    ids = random_ids(ours.config.vocab_size, (3, 6), seed=7)
    expected = dla_reference(hf, ids, 3, 5)
    actual = interp.direct_logit_attribution(ours, ids, 3, 5)
    assert sorted(actual) == sorted(KEYS), f"direct_logit_attribution should return the keys {KEYS}, got {sorted(actual)}"
    for key in ("heads", "mlps", "embed", "biases", "total"):
        assert_close(actual[key], expected[key], name=f"{name} attribution[{key!r}]", atol=1e-5,
                     mistakes=_mistakes(hf, ids, 3, 5, -1, key))


@pytest.mark.parametrize("name", MODELS)
def test_attributions_sum_to_the_logit_difference(interp, models, name):
    ours, _ = models[name]
    ids = random_ids(ours.config.vocab_size, (2, 8), seed=8)
    with torch.no_grad():
        every = ours(ids).logits
    logits = every[:, 2]
    got = interp.direct_logit_attribution(ours, ids, 7, 1, pos=2)
    assert_close(got["total"], (logits[:, 7] - logits[:, 1]).mean(), name=f"{name} total at pos=2",
                 mistakes={MISTAKES["pos_ignored"]: (every[:, -1, 7] - every[:, -1, 1]).mean()})
    parts = got["heads"].sum() + got["mlps"].sum() + got["embed"] + got["biases"]
    assert_close(parts, got["total"], name=f"{name} heads + mlps + embed + biases", atol=1e-4)


def test_one_token_pair_per_sequence_and_one_position_each(interp, models):
    """correct, wrong and pos as (B,) tensors: each sequence's own pair at its own position,
    the same as averaging the single-sequence attributions."""
    ours, _ = models[GPT2]
    ids = random_ids(ours.config.vocab_size, (2, 7), seed=9)
    correct, wrong, pos = torch.tensor([4, 9]), torch.tensor([8, 2]), torch.tensor([6, 3])
    got = interp.direct_logit_attribution(ours, ids, correct, wrong, pos=pos)
    singles = [interp.direct_logit_attribution(ours, ids[b:b + 1], int(correct[b]), int(wrong[b]), pos=int(pos[b]))
               for b in range(2)]
    for key in KEYS:
        assert_close(got[key], (singles[0][key] + singles[1][key]) / 2, name=f"per-sequence attribution[{key!r}]")


def test_a_padded_sequence_is_attributed_as_the_unpadded_one(interp, models):
    """Left padding with its mask: the last position's attribution as without the padding."""
    ours, _ = models[LLAMA]
    ids = random_ids(ours.config.vocab_size, (1, 5), seed=10)
    padded = torch.cat([torch.zeros(1, 2, dtype=torch.long), ids], 1)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1]])
    position_free = interp.direct_logit_attribution(ours, ids, 3, 4)
    got = interp.direct_logit_attribution(ours, padded, 3, 4, attention_mask=mask)
    for key in KEYS:  # Llama's rotary attention sees only relative offsets: the padding shifts nothing
        assert_close(got[key], position_free[key], name=f"left-padded attribution[{key!r}]", atol=1e-5)


def test_attribution_refuses_bad_arguments(interp, models):
    ours, _ = models[GPT2]
    ids = random_ids(ours.config.vocab_size, (2, 5))
    with pytest.raises(ValueError, match="pos"):
        interp.direct_logit_attribution(ours, ids, 1, 2, pos=5)
    with pytest.raises(ValueError, match="correct"):
        interp.direct_logit_attribution(ours, ids, ours.config.vocab_size, 2)
    with pytest.raises(ValueError, match="one token per sequence"):
        interp.direct_logit_attribution(ours, ids, torch.tensor([1, 2, 3]), torch.tensor([0, 0, 0]))
    with pytest.raises(ValueError, match="input_ids"):
        interp.direct_logit_attribution(ours, ids[0], 1, 2)


def test_the_training_flag_is_kept(interp, models):
    """A model in training mode is attributed without dropout and left in training mode."""
    ours, _ = models[GPT2]
    ids = random_ids(ours.config.vocab_size, (2, 5))
    expected = interp.direct_logit_attribution(ours, ids, 1, 2)
    ours.train()
    try:
        got = interp.direct_logit_attribution(ours, ids, 1, 2)
        assert ours.training and all(m.training for m in ours.modules())
    finally:
        ours.eval()
    for key in KEYS:
        assert_close(got[key], expected[key], name=f"attribution[{key!r}] of a model in training mode")
