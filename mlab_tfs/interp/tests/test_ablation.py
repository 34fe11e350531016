"""Exercise 6: per-token loss against cross-entropy on transformers' logits, and ablating
heads through run_with_hooks against the same ablation made in transformers' weights."""

from __future__ import annotations

import copy

import pytest
import torch

from mlab_tfs.interp.mistakes import MISTAKES
from mlab_tfs.testing.compare import assert_close

from .reference import GPT2, LLAMA, LLAMA_BIAS, MODELS, hf_run, n_heads, o_proj, random_ids, token_loss

pytestmark = pytest.mark.exercise("ablation")


@pytest.mark.parametrize("name", MODELS)
def test_per_token_loss_is_next_token_cross_entropy(interp, models, name):
    ours, hf = models[name]
    ids = random_ids(ours.config.vocab_size, (2, 9), seed=12)
    logits = hf_run(hf, ids).logits
    assert_close(interp.per_token_loss(ours, ids), token_loss(logits, ids), name=f"{name} per_token_loss",
                 mistakes={MISTAKES["targets_not_shifted"]: token_loss(logits, ids, shift=False),
                           MISTAKES["logits_shifted_not_targets"]: token_loss(logits, ids, shift_logits=True)})


def test_per_token_loss_with_padding(interp, models):
    """Left padding: the real positions' losses as without it, the padded entries 0."""
    ours, _ = models[LLAMA]
    ids = random_ids(ours.config.vocab_size, (1, 6), seed=13)
    padded = torch.cat([torch.full((1, 3), 0), ids], 1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    got = interp.per_token_loss(ours, padded, attention_mask=mask)
    assert got.shape == (1, 8)
    with torch.no_grad():  # our model's own losses there (transformers' padded rows attend uniformly, ours to none)
        unmasked = token_loss(ours(padded, attention_mask=mask).logits, padded)[:, :3]
    assert_close(got[:, :3], torch.zeros(1, 3), name="per_token_loss at the padded entries", atol=0,
                 mistakes={MISTAKES["padding_not_masked"]: unmasked})
    assert_close(got[:, 3:], interp.per_token_loss(ours, ids), name="left-padded per_token_loss", atol=1e-5)
    with pytest.raises(ValueError, match="2 positions"):
        interp.per_token_loss(ours, ids[:, :1])


def _edited(hf, heads, means=None):
    """A copy of transformers' model whose output projection ignores the given heads: their
    columns of the weight zeroed (zero ablation); with means[(layer, head)] (hs,), that mean's
    write added to the bias instead (mean ablation)."""
    edited = copy.deepcopy(hf)
    nh = n_heads(hf)
    with torch.no_grad():
        for layer, h in heads:
            proj = o_proj(edited, layer)
            gpt2 = hasattr(hf, "transformer")
            W = proj.weight if not gpt2 else proj.weight.T  # (C, nh * hs) either way
            hs = W.shape[1] // nh
            cols = slice(h * hs, (h + 1) * hs)
            if means is not None:
                write = W[:, cols] @ means[(layer, h)]  # (C,)
                if proj.bias is None:
                    proj.bias = torch.nn.Parameter(torch.zeros(W.shape[0]))
                proj.bias += write
            W[:, cols] = 0.0
    return edited


def _z_means(ours, ids, layer):
    _, cache = ours.run_with_cache(ids, names_filter=f"blocks.{layer}.attn.hook_z")
    return cache[f"blocks.{layer}.attn.hook_z"].mean((0, 1))  # (nh, hs)


def _wrong_zeroing(ours, ids, heads):
    """The outputs of the catalogued zero-ablation mistakes: feature h of every head zeroed
    instead of head h, and every head of each listed layer zeroed."""
    names = sorted({f"blocks.{layer}.attn.hook_z" for layer, _ in heads})

    def run(edit):
        def hook(z, hook):
            for layer, h in heads:
                if hook.name == f"blocks.{layer}.attn.hook_z":
                    edit(z, h)
            return z
        return ours.run_with_hooks(ids, fwd_hooks=[(n, hook) for n in names]).logits

    def feature(z, h):
        z[..., h] = 0.0

    def layer(z, h):
        z[:] = 0.0

    with torch.no_grad():
        return {MISTAKES["feature_zeroed_not_head"]: run(feature), MISTAKES["whole_layer_ablated"]: run(layer)}


def test_zero_ablation_of_one_head_of_many(interp, models):
    """One head of layer 0 of four: the other heads and their features untouched."""
    ours, hf = models[GPT2]
    ids = random_ids(ours.config.vocab_size, (2, 7), seed=15)
    assert_close(interp.ablate_heads(ours, ids, [(0, 1)]).logits, hf_run(_edited(hf, [(0, 1)]), ids).logits,
                 name="logits with head 1 of layer 0 zeroed", mistakes=_wrong_zeroing(ours, ids, [(0, 1)]))


@pytest.mark.parametrize("name", MODELS)
def test_zero_ablation_equals_zeroed_weight_columns(interp, models, name):
    ours, hf = models[name]
    ids = random_ids(ours.config.vocab_size, (2, 7), seed=14)
    heads = [(0, n_heads(ours) - 1), (1, 0)]
    expected = hf_run(_edited(hf, heads), ids).logits
    got = interp.ablate_heads(ours, ids, heads)
    assert_close(got.logits, expected, name=f"{name} logits with heads {heads} zeroed",
                 mistakes=_wrong_zeroing(ours, ids, heads))


@pytest.mark.parametrize("name", [GPT2, LLAMA_BIAS])
def test_mean_ablation_equals_the_mean_folded_into_the_bias(interp, models, name):
    ours, hf = models[name]
    ids = random_ids(ours.config.vocab_size, (3, 6), seed=16)
    means = _z_means(ours, ids, 1)
    expected = hf_run(_edited(hf, [(1, 2)], means={(1, 2): means[2]}), ids).logits
    _, cache = ours.run_with_cache(ids, names_filter="blocks.1.attn.hook_z")
    z = cache["blocks.1.attn.hook_z"].clone()
    z[:, :, 2] = z[:, :, 2].mean(1, keepdim=True)  # each sequence its own mean: the mistake
    per_sequence = ours.run_with_hooks(ids, fwd_hooks=[("blocks.1.attn.hook_z", lambda a, hook: z)]).logits
    assert_close(interp.ablate_heads(ours, ids, [(1, 2)], how="mean").logits, expected,
                 name=f"{name} logits with head 2 of layer 1 mean-ablated",
                 mistakes={MISTAKES["mean_per_sequence"]: per_sequence})


def test_ablate_heads_refuses_bad_heads(interp, models):
    ours, _ = models[GPT2]
    ids = random_ids(ours.config.vocab_size, (1, 4))
    for heads, error, match in (([(2, 0)], ValueError, "layer"), ([(0, 4)], ValueError, "head"),
                                ([(0,)], ValueError, "pairs"), ((0, 1), ValueError, "pairs"),
                                ("L0H1", TypeError, "heads"), ([(0, 1.0)], TypeError, "head")):
        with pytest.raises(error, match=match):
            interp.ablate_heads(ours, ids, heads)
    with pytest.raises(ValueError, match="how"):
        interp.ablate_heads(ours, ids, [(0, 0)], how="resample")
    assert not ours.hook_dict["blocks.0.attn.hook_z"].has_hooks  # nothing left behind


def test_no_heads_is_the_plain_model(interp, models):
    ours, hf = models[LLAMA]
    ids = random_ids(ours.config.vocab_size, (2, 5))
    assert_close(interp.ablate_heads(ours, ids, []).logits, hf_run(hf, ids).logits, name="logits with no head ablated")


def test_per_token_loss_is_causal(interp, models):
    """The loss at entry t reads tokens 0 .. t + 1 only: changing the last token changes only
    the last entry."""
    ours, _ = models[GPT2]
    ids = random_ids(ours.config.vocab_size, (2, 8), seed=25)
    later = ids.clone()
    later[:, -1] = (ids[:, -1] + 1) % ours.config.vocab_size
    assert_close(interp.per_token_loss(ours, later)[:, :-1], interp.per_token_loss(ours, ids)[:, :-1],
                 name="per_token_loss before a changed last token", atol=1e-6)
