"""Exercise 7: activation patching. Its end points (what patching identical values, or the one
position where the prompts differ, must give), causality (a position before the change carries
nothing), and the head patching against the same patch made on the attention output."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.interp.mistakes import MISTAKES
from mlab_tfs.testing.compare import assert_close

from .reference import GPT2, LLAMA, LLAMA_BIAS, MODELS, hf_run, n_heads, n_layers, random_ids, split_heads

pytestmark = pytest.mark.exercise("activation_patching")
P = 5  # the position where the corrupted prompt differs: the last, so the metric moves clearly


def _prompts(ours, seed=17, B=2, T=6):
    clean = random_ids(ours.config.vocab_size, (B, T), seed=seed)
    corrupted = clean.clone()
    corrupted[:, P] = (clean[:, P] + 1 + torch.arange(B)) % ours.config.vocab_size
    return clean, corrupted


def _metric_of(hf, ids, correct, wrong):
    logits = hf_run(hf, ids).logits[:, -1]
    return float((logits[:, correct] - logits[:, wrong]).mean())


@pytest.mark.parametrize("name", MODELS)
def test_logit_diff_metric(interp, models, name):
    ours, hf = models[name]
    ids = random_ids(ours.config.vocab_size, (3, 5), seed=18)
    logits = hf_run(hf, ids).logits
    metric = interp.logit_diff_metric(2, 6)
    value = metric(logits)
    assert value.dim() == 0
    assert_close(value, (logits[:, -1, 2] - logits[:, -1, 6]).mean(), name=f"{name} logit_diff_metric(2, 6)")
    per_row = interp.logit_diff_metric(torch.tensor([1, 2, 3]), torch.tensor([0, 0, 0]), pos=torch.tensor([0, 1, 4]))
    expected = torch.stack([logits[b, p, c] - logits[b, p, 0] for b, p, c in ((0, 0, 1), (1, 1, 2), (2, 4, 3))]).mean()
    assert_close(per_row(logits), expected, name="logit_diff_metric with a token pair and position per sequence")


def test_recovered_fraction(interp):
    patched = torch.tensor([[2.0, 5.0], [3.5, -1.0]])
    expected = torch.tensor([[0.0, 1.0], [0.5, -1.0]])
    assert_close(interp.recovered_fraction(patched, torch.tensor(5.0), 2.0), expected,
                 name="recovered_fraction(patched, clean=5, corrupted=2)",
                 mistakes={MISTAKES["recovery_from_clean"]: 1 - expected})
    with pytest.raises(ValueError, match="equal"):
        interp.recovered_fraction(patched, 1.0, 1.0)


@pytest.mark.parametrize("name", MODELS)
def test_residual_patching_end_points(interp, models, name):
    """[l, t] for t < P: the streams there are the same in both runs (causal), so the corrupted
    metric; [0, P]: the only embedding that differs, so the clean metric."""
    ours, hf = models[name]
    clean, corrupted = _prompts(ours)
    metric = interp.logit_diff_metric(1, 2)
    clean_value, corrupted_value = _metric_of(hf, clean, 1, 2), _metric_of(hf, corrupted, 1, 2)
    result = interp.patch_residual(ours, clean, corrupted, metric)
    L, T = n_layers(ours), clean.shape[1]
    assert result.shape == (L, T)
    expected = torch.full((L, T), corrupted_value)
    expected[0, P] = clean_value
    every = torch.full((L, T), clean_value)  # every position of a stream patched: the clean run from there on
    swapped = torch.full((L, T), clean_value)
    swapped[0, P] = corrupted_value
    mistakes = {MISTAKES["every_position_patched"]: every, MISTAKES["runs_swapped"]: swapped}
    assert_close(result[0], expected[0], name=f"{name} patch_residual at layer 0", atol=1e-5,
                 mistakes={k: v[0] for k, v in mistakes.items()})
    assert_close(result[:, :P], expected[:, :P], name=f"{name} patch_residual before the change", atol=1e-5)


def test_residual_patching_at_the_last_layer(interp, models):
    """At the last block, patching the last position (where the prompts differ) moves the
    metric away from the corrupted value."""
    ours, hf = models[LLAMA_BIAS]
    clean, corrupted = _prompts(ours)
    result = interp.patch_residual(ours, clean, corrupted, interp.logit_diff_metric(1, 2))
    corrupted_value = _metric_of(hf, corrupted, 1, 2)
    assert abs(float(result[-1, -1]) - corrupted_value) > 1e-4


def _head_reference(ours, clean, corrupted, metric, heads="one", positions=slice(None)):
    """Patching head h of layer l, made instead on blocks.{l}.hook_attn_out: the corrupted run's
    attention output plus the head's clean write minus its corrupted one (the projection is
    linear), the write being z's slice times the projection's columns for the head (variants:
    heads="all", every head of the layer patched; positions, only those patched)."""
    L, nh = n_layers(ours), n_heads(ours)
    _, clean_cache = ours.run_with_cache(clean, names_filter=lambda n: n.endswith("hook_z"))
    _, bad_cache = ours.run_with_cache(corrupted, names_filter=lambda n: n.endswith("hook_z"))
    out = torch.empty(L, nh)
    for layer in range(L):
        z_clean, z_bad = clean_cache[f"blocks.{layer}.attn.hook_z"], bad_cache[f"blocks.{layer}.attn.hook_z"]
        W = (ours.transformer.h[layer].attn.c_proj if hasattr(ours, "transformer")
             else ours.model.layers[layer].self_attn.o_proj).weight.detach()  # (C, nh * hs)
        hs = W.shape[1] // nh
        for h in range(nh):
            cols = slice(None) if heads == "all" else slice(h * hs, (h + 1) * hs)
            flat_clean, flat_bad = z_clean.flatten(2)[..., cols], z_bad.flatten(2)[..., cols]

            def patch(attn_out, hook, flat_clean=flat_clean, flat_bad=flat_bad, cols=cols):  # z unpatched here
                change = torch.zeros_like(attn_out)
                change[:, positions] = ((flat_clean - flat_bad) @ W[:, cols].T)[:, positions]
                return attn_out + change
            with torch.no_grad():
                logits = ours.run_with_hooks(corrupted, fwd_hooks=[(f"blocks.{layer}.hook_attn_out", patch)]).logits
            out[layer, h] = metric(logits)
    return out


@pytest.mark.parametrize("name", [GPT2, LLAMA])
def test_head_patching_equals_the_patch_on_the_attention_output(interp, models, name):
    ours, hf = models[name]
    clean, corrupted = _prompts(ours, seed=19)
    metric = interp.logit_diff_metric(4, 0)
    expected = _head_reference(ours, clean, corrupted, metric)
    swapped = _head_reference(ours, corrupted, clean, metric)
    got = interp.patch_heads(ours, clean, corrupted, metric)
    assert_close(got, expected, name=f"{name} patch_heads", atol=1e-5,
                 mistakes={MISTAKES["runs_swapped"]: swapped,
                           MISTAKES["every_head_patched"]: _head_reference(ours, clean, corrupted, metric, heads="all")})


@pytest.mark.parametrize("name", [LLAMA, LLAMA_BIAS])  # the tiny GPT-2's heads move the metric by 1e-5
def test_head_patching_reaches_the_later_positions(interp, models, name):
    """Prompts that differ at position 1, not the last: a head's clean output there reaches the
    metric at the last position only through the later layers' attention, so patching the head
    at every position differs from patching it at the last one."""
    ours, _ = models[name]
    clean = random_ids(ours.config.vocab_size, (2, 6), seed=29)
    corrupted = clean.clone()
    corrupted[:, 1] = (clean[:, 1] + 1 + torch.arange(2)) % ours.config.vocab_size
    metric = interp.logit_diff_metric(4, 0)
    expected = _head_reference(ours, clean, corrupted, metric)
    last_only = _head_reference(ours, clean, corrupted, metric, positions=slice(-1, None))
    assert float((expected[0] - last_only[0]).abs().max()) > 1e-3  # the test can tell them apart
    assert_close(interp.patch_heads(ours, clean, corrupted, metric), expected, name=f"{name} patch_heads", atol=1e-5,
                 mistakes={MISTAKES["head_patched_at_last_position_only"]: last_only,
                           MISTAKES["every_head_patched"]: _head_reference(ours, clean, corrupted, metric, heads="all")})


def test_patching_identical_runs_changes_nothing(interp, models):
    ours, hf = models[GPT2]
    clean, _ = _prompts(ours)
    metric = interp.logit_diff_metric(1, 2)
    value = _metric_of(hf, clean, 1, 2)
    assert_close(interp.patch_heads(ours, clean, clean, metric), torch.full((2, 4), value), name="patch_heads(x, x)",
                 atol=1e-5)
    assert_close(interp.patch_residual(ours, clean, clean, metric), torch.full((2, 6), value),
                 name="patch_residual(x, x)", atol=1e-5)


def test_patching_refuses_bad_arguments(interp, models):
    ours, _ = models[GPT2]
    clean, corrupted = _prompts(ours)
    metric = interp.logit_diff_metric(1, 2)
    with pytest.raises(ValueError, match="same shape"):
        interp.patch_residual(ours, clean, corrupted[:, :-1], metric)
    with pytest.raises(TypeError, match="metric"):
        interp.patch_heads(ours, clean, corrupted, "logit diff")
    with pytest.raises(ValueError, match="0-d"):
        interp.patch_heads(ours, clean, corrupted, lambda logits: logits[:, -1, 0])
    assert not any(p.has_hooks for p in ours.hook_dict.values())  # nothing left behind
