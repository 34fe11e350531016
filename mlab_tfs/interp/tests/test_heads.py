"""Exercise 2: each head's write into the residual stream, from transformers' run and weights,
and the logit difference direction from the head's weight."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.interp.mistakes import MISTAKES
from mlab_tfs.testing.compare import assert_close

from .reference import GPT2, GPT2_UNTIED, LLAMA, LLAMA_BIAS, MODELS, hf_run, n_layers, o_proj, random_ids, split_heads

pytestmark = pytest.mark.exercise("head_outputs")


@pytest.mark.parametrize("name", MODELS)
def test_head_outputs_are_each_heads_slice_of_the_projection(interp, models, name):
    ours, hf = models[name]
    ids = random_ids(ours.config.vocab_size, seed=5)
    out = hf_run(hf, ids)
    _, cache = ours.run_with_cache(ids)
    for layer in range(n_layers(ours)):
        expected = split_heads(hf, out, layer)  # (B, T, nh, C)
        bias = o_proj(hf, layer).bias
        mistakes = {MISTAKES["weight_not_transposed"]: split_heads(hf, out, layer, transposed=True),
                    MISTAKES["heads_interleaved"]: split_heads(hf, out, layer, interleaved=True)}
        if bias is not None:
            mistakes[MISTAKES["bias_in_every_head"]] = expected + bias.detach()
        actual = interp.head_outputs(ours, cache, layer)
        assert_close(actual, expected, name=f"{name} head_outputs(layer={layer})", mistakes=mistakes)


@pytest.mark.parametrize("name", [GPT2, LLAMA_BIAS])
def test_heads_plus_the_bias_are_the_attention_output(interp, models, name):
    """Summed over the heads, plus the projection's bias once: hook_attn_out (1e-5)."""
    ours, _ = models[name]
    ids = random_ids(ours.config.vocab_size, seed=6)
    _, cache = ours.run_with_cache(ids)
    for layer in range(n_layers(ours)):
        bias = o_proj(ours, layer).bias.detach()
        total = interp.head_outputs(ours, cache, layer).sum(2) + bias
        assert_close(total, cache[f"blocks.{layer}.hook_attn_out"], name=f"{name} heads.sum(2) + bias, layer {layer}")


def test_head_outputs_refuses_a_layer_out_of_range(interp, models):
    ours, _ = models[GPT2]
    _, cache = ours.run_with_cache(random_ids(ours.config.vocab_size))
    for bad, error in ((2, ValueError), (-1, ValueError), (1.0, TypeError)):
        with pytest.raises(error, match="layer"):
            interp.head_outputs(ours, cache, bad)


@pytest.mark.parametrize("name", MODELS)
def test_logit_diff_direction_is_the_difference_of_the_head_rows(interp, models, name):
    ours, hf = models[name]
    W_U = hf.lm_head.weight.detach()  # transformers' head: tied or not
    E = hf.get_input_embeddings().weight.detach()
    mistakes = {MISTAKES["direction_reversed"]: W_U[5] - W_U[3]}
    if name in (GPT2_UNTIED, LLAMA):  # untied heads: the embedding is another matrix
        mistakes[MISTAKES["embedding_as_unembedding"]] = E[3] - E[5]
    assert_close(interp.logit_diff_direction(ours, 3, 5), W_U[3] - W_U[5], name=f"{name} logit_diff_direction(3, 5)",
                 mistakes=mistakes)
    correct, wrong = torch.tensor([1, 2, 7]), torch.tensor([4, 4, 0])
    assert_close(interp.logit_diff_direction(ours, correct, wrong), W_U[correct] - W_U[wrong],
                 name=f"{name} logit_diff_direction of (3,) tensors")


def test_logit_diff_direction_refuses_bad_tokens(interp, models):
    ours, _ = models[GPT2]
    V = ours.config.vocab_size
    with pytest.raises(ValueError, match="correct"):
        interp.logit_diff_direction(ours, V, 0)
    with pytest.raises(ValueError, match="wrong"):
        interp.logit_diff_direction(ours, 0, -1)
    with pytest.raises(TypeError, match="correct"):
        interp.logit_diff_direction(ours, 1.5, 0)
    with pytest.raises(ValueError, match="same length"):
        interp.logit_diff_direction(ours, torch.tensor([1, 2]), torch.tensor([1, 2, 3]))
