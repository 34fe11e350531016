"""The activation functions a transformers config may name, hand-written, in one table.

Names and formulas are those of ``transformers/activations.py`` (``ACT2FN``). Two of
them are exercises — ``gelu_new`` (GPT-2's tanh approximation) and ``gelu`` (BERT's
exact, erf GELU) — so a learner's model passes its own versions of those through
``own`` and gets the rest from here.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Activation = Callable[[Tensor], Tensor]


def gelu_new(x: Tensor) -> Tensor:
    """GELU, tanh approximation (Hendrycks & Gimpel 2016), as in OpenAI's GPT-2."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gelu(x: Tensor) -> Tensor:
    """The exact GELU, x * Phi(x) with Phi the standard normal CDF (Hendrycks & Gimpel 2016)."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_fast(x: Tensor) -> Tensor:
    """The tanh approximation with sqrt(2 / pi) rounded to 0.7978845608 (transformers' FastGELU)."""
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def quick_gelu(x: Tensor) -> Tensor:
    """x * sigmoid(1.702 x), the sigmoid approximation of GELU (OpenAI's CLIP)."""
    return x * torch.sigmoid(1.702 * x)


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x) (Elfwing et al. 2017; also called swish), computed as PyTorch's fused
    ``F.silu`` (transformers' ``nn.SiLU``): in bfloat16 / float16 the product of a rounded
    sigmoid is rounded twice, and differs from transformers' in the last bit."""
    return F.silu(x)


# name -> the function that computes it; aliases share one function, so that ``own``
# replaces every name of the function it implements.
ACT2FN: dict[str, Activation] = {
    "gelu_new": gelu_new, "gelu_pytorch_tanh": gelu_new, "gelu_python_tanh": gelu_new,
    "gelu": gelu, "gelu_python": gelu,
    "gelu_fast": gelu_fast,
    "quick_gelu": quick_gelu,
    "relu": torch.relu,
    "silu": silu, "swish": silu,
    "tanh": torch.tanh,
}
ACTIVATIONS = tuple(ACT2FN)


def get_activation(name: str, own: Mapping[str, Activation] | None = None) -> Activation:
    """The function a config's activation name means.

    own: replacements keyed by the name of the function they implement (``{"gelu_new":
    my_gelu_new}``): every alias of that function (``gelu_pytorch_tanh``...) then runs it.
    Raises ValueError naming the unknown name and the choices.
    """
    if name not in ACT2FN:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    fn = ACT2FN[name]
    for key, replacement in (own or {}).items():
        if key not in ACT2FN:
            raise ValueError(f"own: unknown activation {key!r}; expected one of {ACTIVATIONS}")
        if ACT2FN[key] is fn:
            return replacement
    return fn
