"""The shared activation table against transformers' ACT2FN, and the learner's overrides."""

from __future__ import annotations

import pytest
import torch

from mlab_tfs.activations import ACT2FN, ACTIVATIONS, gelu, gelu_new, get_activation


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_equals_transformers(name):
    from transformers.activations import ACT2FN as HF_ACT2FN

    x = torch.linspace(-8, 8, 2001, dtype=torch.float64)
    # float64: the formulas agree to rounding (1e-15); a wrong constant shows at 1e-4 or more.
    torch.testing.assert_close(get_activation(name)(x), HF_ACT2FN[name](x), rtol=0, atol=1e-12)


def test_own_replaces_every_alias_of_its_function():
    mine = lambda x: x * 0  # noqa: E731
    for name in ("gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh"):
        assert get_activation(name, own={"gelu_new": mine}) is mine
    assert get_activation("gelu", own={"gelu_new": mine}) is gelu  # another function: untouched
    assert get_activation("gelu_python", own={"gelu": mine}) is mine
    assert get_activation("relu", own={"gelu": mine, "gelu_new": mine}) is torch.relu
    assert ACT2FN["gelu_new"] is gelu_new


def test_unknown_names_are_errors_naming_them():
    with pytest.raises(ValueError, match=r"unknown activation 'gelu_tanh'.*expected one of"):
        get_activation("gelu_tanh")
    with pytest.raises(ValueError, match=r"own: unknown activation 'gelu_approx'"):
        get_activation("gelu", own={"gelu_approx": gelu})


# The two GELUs that are exercises keep their textbook formulas (erf, tanh); transformers runs
# PyTorch's fused F.gelu for these names, which rounds once in half precision where the formula
# rounds at every operation (same values in float32 and float64, above).
FUSED_IN_TRANSFORMERS = ("gelu", "gelu_pytorch_tanh")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", [n for n in ACTIVATIONS if n not in FUSED_IN_TRANSFORMERS])
def test_activations_equal_transformers_bit_for_bit_in_half_precision(name, dtype):
    """silu as x * sigmoid(x) rounds the sigmoid, then the product: a last-bit difference from
    transformers' nn.SiLU in bfloat16 that grew to 0.05 in a Llama's logits."""
    from transformers.activations import ACT2FN as HF_ACT2FN

    x = torch.linspace(-8, 8, 4001).to(dtype)
    assert torch.equal(get_activation(name)(x), HF_ACT2FN[name](x))
