"""The model parts' diagnoses against mistakes written otherwise than their plants, and against
correct code written otherwise than the solution, which must pass with no diagnosis at all: a
wrong "likely cause" sends a learner after a mistake they did not make."""

from __future__ import annotations

import pytest

from mlab_tfs.testing.exercises import exercises
from mlab_tfs.testing.mistakes import catalogue, check_report, likely_causes, planted_source

_FILL = "scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)"
_STORE = "        self._keys[layer_idx], self._values[layer_idx] = k, v\n        return k, v"
_LLAMA_HALF = "x1, x2 = x.chunk(2, dim=-1)\n    return torch.cat((-x2, x1), dim=-1)"
_LLAMA_REPEAT = "return x[:, :, None].expand(B, nkv, n_rep, S, hd).reshape(B, nkv * n_rep, S, hd)"
_LLAMA_NORM = "mean_square = x32.pow(2).mean(-1, keepdim=True)  # (..., 1); no mean subtracted"

# (part, exercise, edits of solution.py, the mistake check must name)
NAMED = {
    "gpt2-fill_with_zero": ("gpt2", "attention_pattern", [(_FILL, "scores = scores.masked_fill(~mask, 0.0)")],
                            "scores_times_mask"),
    # The new keys stored in place of the concatenation returned.
    "gpt2-new_keys_stored_alone": (
        "gpt2", "kv_cache", [(_STORE, "        self._keys[layer_idx], self._values[layer_idx] = k[:, :, -new:], v[:, :, -new:]\n"
                                      "        return k, v"),
                             ("cache_position = self.check_update(layer_idx, k, v, cache_position)",
                              "cache_position = self.check_update(layer_idx, k, v, cache_position)\n"
                              "        new = k.shape[2]")],
        "cache_not_stored"),
    # Llama: Meta's pairs by stacking, the heads tiled by a concatenation, layer norm by var.
    "llama-interleaved_by_stack": ("llama", "rotary", [(_LLAMA_HALF, "return torch.stack((-x[..., 1::2], x[..., 0::2]), "
                                                                     "dim=-1).flatten(-2)")], "wrong_pair_layout"),
    "llama-heads_tiled_by_cat": ("llama", "repeat_kv", [(_LLAMA_REPEAT, "return torch.cat([x] * n_rep, dim=1)")],
                                 "heads_tiled"),
    "llama-mean_subtracted_by_var": (
        "llama", "rms_norm", [(_LLAMA_NORM, "mean_square = x32.var(-1, keepdim=True, unbiased=False)"),
                              ("x_hat = x32 * torch.rsqrt(mean_square + self.eps)",
                               "x_hat = (x32 - x32.mean(-1, keepdim=True)) * torch.rsqrt(mean_square + self.eps)"),
                              ("x_hat = x32 / self.hook_scale(torch.sqrt(mean_square + self.eps))",
                               "x_hat = (x32 - x32.mean(-1, keepdim=True)) / self.hook_scale(torch.sqrt("
                               "mean_square + self.eps))")],
        "mean_subtracted"),
    # The statistics over the first axis; only the mean square in the input's dtype.
    "llama-mean_over_the_first_axis": ("llama", "rms_norm", [(_LLAMA_NORM, "mean_square = x32.pow(2).mean(0, keepdim=True)")],
                                       "wrong_dim"),
    "llama-mean_square_in_input_dtype": ("llama", "rms_norm",
                                         [(_LLAMA_NORM, "mean_square = x.pow(2).mean(-1, keepdim=True).float()")],
                                         "statistics_in_input_dtype"),
    # The positions rounded to the model's dtype, the product in float32.
    "llama-positions_in_model_dtype": ("llama", "rope_frequencies",
                                       [("freqs = position_ids[..., None].float() * self.inv_freq.to(x.device, torch.float32)",
                                         "freqs = position_ids[..., None].to(x.dtype) * self.inv_freq.to(x.device)")],
                                       "angles_in_model_dtype"),
}

# (part, exercise, edits of solution.py, text the failure says): failing, and no likely cause.
UNNAMED = {
    # Not a concatenation along another dim: the new keys alone.
    "gpt2-update_returns_new_keys_only": (
        "gpt2", "kv_cache", [(_STORE, "        self._keys[layer_idx], self._values[layer_idx] = k, v\n"
                                      "        return k[:, :, -new:], v[:, :, -new:]"),
                             ("cache_position = self.check_update(layer_idx, k, v, cache_position)",
                              "cache_position = self.check_update(layer_idx, k, v, cache_position)\n"
                              "        new = k.shape[2]")],
        "update returned only the new keys"),
    # Renormalised after the softmax with a float32 floor: 0 / 0 in float16, not an added mask.
    "gpt2-renormalised_by_a_floor_that_underflows": (
        "gpt2", "attention_pattern",
        [(_FILL, "pass"), ("pattern = torch.softmax(scores, dim=-1)\n    if seen is None:",
                           "pattern = torch.softmax(scores, dim=-1)\n    if mask is not None:\n"
                           "        pattern = pattern * mask\n"
                           "        pattern = pattern / pattern.sum(-1, keepdim=True).clamp_min(1e-30)\n"
                           "    if seen is None:")],
        "divided by its sum"),
}

# (part, exercise, edits of solution.py): correct, so the exercise passes.
CORRECT = {
    "gpt2-fill_neg_inf_then_zero_rows": ("gpt2", "attention_pattern",
                                         [(_FILL, "scores = scores.masked_fill(~mask, float(\"-inf\"))")]),
    # Llama: RMSNorm divided by sqrt (the stub's form), repeat_kv by repeat_interleave, rotate_half by slices.
    "llama-rms_norm_divided_by_the_scale": ("llama", "rms_norm", [("x_hat = x32 * torch.rsqrt(mean_square + self.eps)",
                                                                   "x_hat = x32 / torch.sqrt(mean_square + self.eps)")]),
    "llama-repeat_kv_by_repeat_interleave": ("llama", "repeat_kv",
                                             [(_LLAMA_REPEAT, "return x.repeat_interleave(n_rep, dim=1)")]),
    "llama-rotate_half_by_slices": ("llama", "rotary", [(_LLAMA_HALF, "h = x.shape[-1] // 2\n"
                                                                      "    return torch.cat((-x[..., h:], x[..., :h]), -1)")]),
}


def _title(part: str, exercise: str) -> str:
    return next(e.title for e in exercises(part) if e.name == exercise)


@pytest.mark.parametrize("case", NAMED)
def test_a_mistake_written_otherwise_is_named(case):
    part, exercise, edits, name = NAMED[case]
    report = check_report(part, exercise, planted_source(part, edits))
    causes = likely_causes(report)
    assert causes and catalogue(part)[name].cause in causes[0], f"{case}: check should name {name!r}; it said:\n{report}"


@pytest.mark.parametrize("case", UNNAMED)
def test_an_uncatalogued_mistake_is_named_as_none(case):
    part, exercise, edits, says = UNNAMED[case]
    report = check_report(part, exercise, planted_source(part, edits))
    assert f"Next: {_title(part, exercise)}" in report, f"{case}: the exercise should fail; check said:\n{report}"
    assert not likely_causes(report), f"{case}: check named a mistake that is not there:\n{report}"
    assert says in report, f"{case}: the failure should say {says!r}; check said:\n{report}"


@pytest.mark.parametrize("case", CORRECT)
def test_correct_code_written_otherwise_passes_undiagnosed(case):
    part, exercise, edits = CORRECT[case]
    report = check_report(part, exercise, planted_source(part, edits))
    assert "This exercise passes" in report and not likely_causes(report), (
        f"{case}: correct code should pass with no diagnosis; check said:\n{report}")


def test_a_wrong_scalar_is_not_called_a_scale_factor():
    """A loss off by anything is "the answer times" something: for one number that says nothing."""
    import torch

    from mlab_tfs.testing.compare import Mismatch, assert_close

    with pytest.raises(Mismatch) as info:
        assert_close(torch.tensor(4.6179), torch.tensor(4.6094), name="loss", atol=1e-5)
    assert "likely cause" not in str(info.value), str(info.value)
    with pytest.raises(Mismatch, match="times 2: check a scale factor"):
        assert_close(torch.tensor([1.0, 2.0]) * 2, torch.tensor([1.0, 2.0]), name="x", atol=1e-5)
