"""Exercise 8: the logit lens against transformers' final norm and head applied to its own
hidden states."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.interp.mistakes import MISTAKES
from mlab_tfs.testing.compare import assert_close

from .reference import GPT2, LLAMA, MODELS, hf_run, lens_reference, n_layers, random_ids

pytestmark = pytest.mark.exercise("logit_lens")


@pytest.mark.parametrize("name", MODELS)
def test_lens_decodes_every_stream_with_its_own_statistics(interp, models, name):
    ours, hf = models[name]
    ids = random_ids(ours.config.vocab_size, (2, 6), seed=20)
    expected = lens_reference(hf, ids)
    mistakes = {MISTAKES["final_norm_skipped"]: lens_reference(hf, ids, skip_norm=True),
                MISTAKES["scale_frozen_from_last_layer"]: lens_reference(hf, ids, frozen=True),
                MISTAKES["embeddings_row_missing"]: expected[1:]}
    got = interp.logit_lens(ours, ids)
    assert_close(got, expected, name=f"{name} logit_lens", atol=1e-5, mistakes=mistakes)
    assert expected.shape == (n_layers(ours) + 1, *ids.shape, ours.config.vocab_size)


@pytest.mark.parametrize("name", MODELS)
def test_the_last_row_is_the_models_logits(interp, models, name):
    ours, hf = models[name]
    ids = random_ids(ours.config.vocab_size, (2, 6), seed=21)
    assert_close(interp.logit_lens(ours, ids)[-1], hf_run(hf, ids).logits, name=f"{name} logit_lens(...)[-1]")


def test_lens_of_a_padded_batch(interp, models):
    ours, _ = models[GPT2]
    ids = random_ids(ours.config.vocab_size, (2, 6), seed=22)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        logits = ours(ids, attention_mask=mask).logits
    got = interp.logit_lens(ours, ids, attention_mask=mask)
    assert_close(got[-1][mask.bool()], logits[mask.bool()], name="padded logit_lens(...)[-1], real positions")
    with pytest.raises(ValueError, match="input_ids"):
        interp.logit_lens(ours, ids.float().long()[None])


@pytest.mark.parametrize("name", [GPT2, LLAMA])
def test_lens_is_causal(interp, models, name):
    """Changing the last token changes no earlier position's decoding, at any layer."""
    ours, _ = models[name]
    ids = random_ids(ours.config.vocab_size, (2, 6), seed=23)
    later = ids.clone()
    later[:, -1] = (ids[:, -1] + 1) % ours.config.vocab_size
    assert_close(interp.logit_lens(ours, later)[:, :, :-1], interp.logit_lens(ours, ids)[:, :, :-1],
                 name=f"{name} logit_lens before a changed last token", atol=1e-6)
