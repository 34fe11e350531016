"""The hook points the part reads, against transformers on the same weights: each block's
input (output_hidden_states), its pattern (output_attentions) and the stream the final norm
reads, within 1e-5, for our GPT-2 and Llama. These test the course's models, which every
exercise relies on, not an exercise."""

from __future__ import annotations

import pytest

from mlab_tfs.testing.compare import assert_close

from .reference import MODELS, hf_run, n_layers, random_ids


@pytest.mark.parametrize("name", MODELS)
def test_cache_equals_transformers_hidden_states_and_attentions(models, name):
    """The hook points the exercises read are transformers' output_hidden_states and
    output_attentions: each block's input and pattern, within 1e-5."""
    ours, hf = models[name]
    ids = random_ids(ours.config.vocab_size)
    out = hf_run(hf, ids)
    _, cache = ours.run_with_cache(ids)
    for i in range(n_layers(ours)):
        assert_close(cache[f"blocks.{i}.hook_resid_pre"], out.hidden_states[i], name=f"{name} resid_pre {i}")
        assert_close(cache[f"blocks.{i}.attn.hook_pattern"], out.attentions[i], name=f"{name} pattern {i}")
    assert_close(cache[f"blocks.{n_layers(ours) - 1}.hook_resid_post"], out.seen["final"], name=f"{name} final")
