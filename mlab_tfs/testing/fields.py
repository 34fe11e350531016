"""Bad values for each kind of config field, for the tests that every config refuses them."""

from __future__ import annotations

import math
from typing import Any

NAN, INF = math.nan, math.inf

# kind -> values a field of that kind must refuse. Bools are refused wherever a number is
# asked for: Python counts True as 1, which would hide a swapped argument.
BAD_VALUES: dict[str, list[Any]] = {
    "positive_int": [0, -1, 2.0, True, "4", None],
    "optional_positive_int": [0, -3, 2.5, True, "4"],
    "non_negative_int": [-1, 1.0, False, "0", None],
    "int": [1.5, True, "1", None],
    "probability": [-0.1, 1.0, 2.0, NAN, INF, True, "0.1", None],
    "optional_probability": [-0.1, 1.0, 2.0, NAN, True, "0.1"],
    "positive_float": [0.0, -1.0, NAN, INF, True, "1e-5", None],
    "non_negative_float": [-0.01, NAN, INF, True, "0.02", None],
    "bool": [1, 0, "True", None, 1.0],
    "choice": ["no_such_value", None, 3, ""],
    "optional_choice": ["no_such_value", 3, ""],
    "token_id": [-1, 1.5, True, "0"],  # plus vocab_size, where the id indexes the vocabulary
}


def bad_cases(fields: dict[str, str]) -> list[tuple[str, Any]]:
    """[(field, bad value)] for every field of a {field: kind} table."""
    return [(name, value) for name, kind in fields.items() for value in BAD_VALUES[kind]]
