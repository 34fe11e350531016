"""Single PyTorch kernels on the solutions' default eager path, beside the hand-written code
they stand for.

By default the solutions' layer norms (GPT-2's ``LayerNorm``, which BERT and DeBERTa reuse),
Llama's ``RMSNorm`` and the GELU of GPT-2's, BERT's and DeBERTa's MLPs each run as one kernel
(``F.layer_norm``, ``F.rms_norm``, ``F.gelu``) wherever that kernel computes the same function
as the hand-written code: the same outputs and gradients up to float rounding (tested to 1e-5
for every model, ``mlab_tfs/tests/test_fused.py``). The hand-written code stays in each forward,
the readable reference, and is what runs

- when a hook is registered on one of the module's hook points: the fused kernels form
  neither ``hook_scale`` nor ``hook_normalized``, and a hooked call (``run_with_cache``,
  ``run_with_hooks``, ``capture``) sees exactly the hand-written activations;
- for inputs on which the kernel would compute something else: a layer norm whose input and
  weights differ in dtype (half-precision input with float32 weights); an RMSNorm outside
  float32 (transformers' ``LlamaRMSNorm`` rounds the normalised input to the input's dtype
  before the weight, and casts float64 input to float32); GPT-2's ``gelu_new`` in half
  precision (transformers' ``NewGELUActivation`` is the formula, rounded at every operation;
  the exact GELU runs ``F.gelu`` in every dtype, as transformers' ``GELUActivation``);
- when switched off: ``mlab_tfs.gpt2.fast.use_fused_ops(model, False)`` for one model's
  modules, or ``with hand_written():`` for every module that has no setting of its own. The
  course's exercise tests run under ``hand_written()`` (``mlab_tfs.testing.plugin``): they test
  the code a learner writes, in the solution and in a learner's copy alike.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from mlab_tfs.activations import gelu, gelu_new

Tensor = torch.Tensor
Activation = Callable[[Tensor], Tensor]

# The tanh GELU kernel equals gelu_new's formula in these dtypes (to 1e-7 in float32); in half
# precision the formula rounds at every operation, the kernel once.
FULL_PRECISION = (torch.float32, torch.float64)
HAS_RMS_NORM = hasattr(F, "rms_norm")  # torch >= 2.4


class FusedOps:
    """Base of the modules whose forward runs one fused kernel where it equals their
    hand-written code (``LayerNorm``, ``RMSNorm``, the MLPs).

    ``fused_ops``: read at every forward. The class default is True; ``hand_written()``
    turns the default off for its block; an instance's own value (set by
    ``mlab_tfs.gpt2.fast.use_fused_ops``) wins over both. A plain attribute, not in the state
    dict: ``copy.deepcopy`` and pickling keep it, and ``torch.compile`` guards on it (a change
    compiles again; no graph break).
    """

    fused_ops: bool = True

    def may_fuse(self, *hook_points: torch.nn.Module) -> bool:
        """Whether this call may take the fused kernel: ``fused_ops`` is on and no hook is
        registered on any of hook_points (each a HookPoint, read through ``has_hooks``)."""
        return self.fused_ops and not any(point.has_hooks for point in hook_points)


@contextlib.contextmanager
def hand_written() -> Iterator[None]:
    """``with hand_written():`` every FusedOps module without a setting of its own
    (``use_fused_ops`` gives one) runs its hand-written code inside the block; the default
    is put back afterwards, even on an error. Nests."""
    before = FusedOps.__dict__["fused_ops"]
    FusedOps.fused_ops = False
    try:
        yield
    finally:
        FusedOps.fused_ops = before


def gelu_new_fused(x: Tensor) -> Tensor:
    """gelu_new(x) as one kernel, ``F.gelu(x, approximate="tanh")`` (transformers'
    ``gelu_pytorch_tanh``), for float32 / float64 x; the formula itself in half precision."""
    if x.dtype in FULL_PRECISION:
        return F.gelu(x, approximate="tanh")
    return gelu_new(x)


def gelu_fused(x: Tensor) -> Tensor:
    """The exact (erf) gelu(x) as one kernel, ``F.gelu(x)``, in every dtype: what transformers'
    ``GELUActivation`` (BERT's and DeBERTa's "gelu") runs, half precision included
    (``transformers/activations.py``)."""
    return F.gelu(x)


# hand-written activation -> what the default path runs in its place.
FUSED_ACTIVATIONS: dict[Activation, Activation] = {gelu_new: gelu_new_fused, gelu: gelu_fused}


def fused_activation(act: Activation) -> Activation:
    """What the default path runs in place of the activation act: ``gelu_new_fused`` for
    ``gelu_new`` and ``gelu_fused`` for ``gelu`` (``mlab_tfs.activations``); act itself for any
    other function (a learner's own GELU included)."""
    return FUSED_ACTIVATIONS.get(act, act)
