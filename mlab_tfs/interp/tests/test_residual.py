"""Exercise 1: the residual stream from run_with_cache against transformers' hidden states
and attentions on the same weights, and its components summing to the final stream."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.interp.mistakes import MISTAKES
from mlab_tfs.testing.compare import assert_close

from .reference import GPT2, LLAMA, LLAMA_BIAS, MODELS, hf_run, is_gpt2, n_layers, random_ids

pytestmark = pytest.mark.exercise("residual_stream")


@pytest.mark.parametrize("name", MODELS)
def test_accumulated_resid_is_each_block_input_then_the_final_stream(interp, models, name):
    ours, hf = models[name]
    ids = random_ids(ours.config.vocab_size, seed=1)
    out = hf_run(hf, ids)
    _, cache = ours.run_with_cache(ids)
    expected = torch.stack([*out.hidden_states[:-1], out.seen["final"]])  # (n_layer + 1, B, T, C)
    normed = torch.stack([*out.hidden_states[:-1], cache["ln_final.hook_normalized"]])
    mistakes = {MISTAKES["final_row_normed"]: normed,
                MISTAKES["final_row_missing"]: torch.stack(out.hidden_states[:-1]),
                MISTAKES["rows_after_each_block"]: torch.stack([*out.hidden_states[1:-1], out.seen["final"],
                                                                out.seen["final"]])}
    assert_close(interp.accumulated_resid(cache), expected, name=f"{name} accumulated_resid(cache)",
                 mistakes=mistakes)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_accumulated_resid_up_to_a_layer(interp, models, k):
    """n_layer=k: the inputs of blocks 0 .. k - 1 and the stream after block k - 1 (which is
    block k's input), (k + 1, B, T, C); 0 gives the embeddings alone."""
    ours, hf = models[LLAMA_BIAS]  # three blocks
    ids = random_ids(ours.config.vocab_size, seed=2)
    out = hf_run(hf, ids)
    _, cache = ours.run_with_cache(ids)
    expected = torch.stack(out.hidden_states[:k + 1])
    assert_close(interp.accumulated_resid(cache, k), expected, name=f"accumulated_resid(cache, n_layer={k})")


def test_accumulated_resid_refuses_what_it_cannot_give(interp, models):
    ours, _ = models[GPT2]
    ids = random_ids(ours.config.vocab_size)
    _, cache = ours.run_with_cache(ids)
    with pytest.raises(ValueError, match="n_layer"):
        interp.accumulated_resid(cache, 3)  # two blocks: at most 2
    with pytest.raises(ValueError, match="n_layer"):
        interp.accumulated_resid(cache, -1)
    _, partial = ours.run_with_cache(ids, names_filter="blocks.0.attn.hook_pattern")
    with pytest.raises(ValueError, match="hook_resid"):
        interp.accumulated_resid(partial)
    with pytest.raises(TypeError, match="cache"):
        interp.accumulated_resid(torch.zeros(3))


@pytest.mark.parametrize("name", MODELS)
def test_components_sum_to_the_final_stream(interp, models, name):
    ours, hf = models[name]
    ids = random_ids(ours.config.vocab_size, seed=3)
    out = hf_run(hf, ids)
    _, cache = ours.run_with_cache(ids)
    components, labels = interp.residual_components(ours, cache)
    wrong = {}
    if is_gpt2(ours):  # transformers' position embedding of positions 0 .. T - 1
        wrong[MISTAKES["pos_embed_left_out"]] = out.seen["final"] - hf.transformer.wpe.weight[:ids.shape[1]].detach()
    assert_close(components.sum(0), out.seen["final"], name=f"{name} components.sum(0)", mistakes=wrong)
    layers = [f"{kind}_{i}" for i in range(n_layers(ours)) for kind in ("attn", "mlp")]
    assert labels == (["embed", "pos_embed"] if is_gpt2(ours) else ["embed"]) + layers
    assert components.shape == (len(labels), *ids.shape, out.seen["final"].shape[-1])
    by_label = dict(zip(labels, components))
    for i in range(n_layers(ours)):  # each component is what transformers' branch wrote
        assert_close(by_label[f"attn_{i}"], out.seen[f"attn_{i}"], name=f"{name} component attn_{i}")
        assert_close(by_label[f"mlp_{i}"], out.seen[f"mlp_{i}"], name=f"{name} component mlp_{i}")


def test_components_of_a_padded_batch(interp, models):
    """Left padding changes nothing in the identity: the components still sum to the stream."""
    ours, _ = models[LLAMA]
    ids = random_ids(ours.config.vocab_size, (2, 6), seed=4)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    _, cache = ours.run_with_cache(ids, attention_mask=mask)
    components, _ = interp.residual_components(ours, cache)
    final = interp.accumulated_resid(cache)[-1]
    assert_close(components.sum(0), final, name="padded components.sum(0)")


def test_accumulated_resid_from_a_cache_of_block_inputs_only(interp, models):
    """A cache of hook_resid_pre alone still gives the stream up to any block but the last:
    block k's input is block k - 1's output."""
    ours, _ = models[LLAMA_BIAS]
    ids = random_ids(ours.config.vocab_size, seed=24)
    _, full = ours.run_with_cache(ids)
    _, inputs = ours.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_resid_pre"))
    assert_close(interp.accumulated_resid(inputs, 2), interp.accumulated_resid(full, 2),
                 name="accumulated_resid(cache of block inputs, 2)")


def test_residual_components_refuse_another_model(interp, models):
    ours, _ = models[GPT2]
    _, cache = ours.run_with_cache(random_ids(ours.config.vocab_size))
    with pytest.raises(TypeError, match="model"):
        interp.residual_components(torch.nn.Linear(2, 2), cache)
    with pytest.raises(ValueError, match="hook_mlp_out"):
        interp.residual_components(ours, {k: v for k, v in cache.items() if "mlp_out" not in k})
