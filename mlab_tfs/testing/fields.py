"""Bad values for each kind of config field, for the tests that every config refuses them."""

from __future__ import annotations

import math
from typing import Any

NAN, INF = math.nan, math.inf
# Past int64 torch cannot size a tensor (it fails with an unnamed overflow); past float32's
# largest value a float field becomes inf in an fp32 model.
HUGE_INT, HUGE_FLOAT = 2**63, 1e39

# kind -> values a field of that kind must refuse. Bools are refused wherever a number is
# asked for: Python counts True as 1, which would hide a swapped argument.
BAD_VALUES: dict[str, list[Any]] = {
    "positive_int": [0, -1, 2.0, True, "4", None, HUGE_INT, 10**30],
    "optional_positive_int": [0, -3, 2.5, True, "4", HUGE_INT],
    "non_negative_int": [-1, 1.0, False, "0", None, HUGE_INT],
    "int": [1.5, True, "1", None, HUGE_INT, -HUGE_INT - 1],
    "probability": [-0.1, 1.0, 2.0, NAN, INF, True, "0.1", None],
    "optional_probability": [-0.1, 1.0, 2.0, NAN, True, "0.1"],
    "positive_float": [0.0, -1.0, NAN, INF, True, "1e-5", None, HUGE_FLOAT, 1e-300],  # 1e-300: 0 in float32
    "non_negative_float": [-0.01, NAN, INF, True, "0.02", None, HUGE_FLOAT],
    "bool": [1, 0, "True", None, 1.0],
    "choice": ["no_such_value", None, 3, ""],
    "optional_choice": ["no_such_value", 3, ""],
    "token_id": [-1, 1.5, True, "0", HUGE_INT],  # plus vocab_size, where the id indexes the vocabulary
}


def bad_cases(fields: dict[str, str]) -> list[tuple[str, Any]]:
    """[(field, bad value)] for every field of a {field: kind} table."""
    return [(name, value) for name, kind in fields.items() for value in BAD_VALUES[kind]]


def assert_init_like(ours: dict, theirs: dict, rtol: float = 0.1) -> None:
    """Fresh initialisations alike, name by name: tensors transformers fills with a constant
    (layer norms, biases) equal; random ones with the same std (within rtol, relative) and
    mean (within rtol x std). Random tensors of under 256 entries are too small to compare."""
    import torch

    for name, t in theirs.items():
        assert name in ours, f"{name}: transformers has it, the model does not"
        a, e = ours[name].detach().double(), t.detach().double()
        assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)}, transformers {tuple(e.shape)}"
        if float(e.std()) == 0.0 or e.numel() == 1:
            assert torch.equal(a, e), f"{name}: transformers initialises it to the constant {float(e.flatten()[0])}"
        elif e.numel() >= 256:
            sa, se = float(a.std()), float(e.std())
            assert abs(sa - se) <= rtol * se, f"{name}: std {sa:.4g}, transformers {se:.4g}"
            assert abs(float(a.mean()) - float(e.mean())) <= rtol * se, (
                f"{name}: mean {float(a.mean()):.4g}, transformers {float(e.mean()):.4g}")
