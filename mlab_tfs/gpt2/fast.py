"""Fast paths for the GPT-2 solution, each an opt-in beside the hand-written code and
tested equal to it (mlab_tfs/gpt2/tests/test_fast_paths.py).

1. Decoding over a static KV cache (as in PyTorch's gpt-fast): ``KVCache.static`` /
   ``KVCache.for_model`` (mlab_tfs.gpt2.solution) preallocates (B, nh, max_len, hs) key and
   value buffers per layer, which the model's own attention writes in place at the current
   positions. Every decode step then has the same shapes, so it can be compiled once and
   captured as a CUDA graph (``torch.compile(mode="reduce-overhead")``).
   ``static_forward`` is the model's forward over such a cache, returning logits;
   ``mlab_tfs.sampling.fast`` decodes with it. No second attention or model loop: the same
   modules, the same code as ``GPT2LMHeadModel.forward``. ``LinearAsSums`` runs the linear
   layers of a one-row step as matrix-vector sums that inductor fuses with their neighbours.
2. Fused kernels for eager mode: ``use_fused_ops(model)`` (or ``with fused_ops(model):``)
   runs the hand-written layer norms as ``F.layer_norm`` and the hand-written GELUs as
   ``F.gelu``: one kernel each instead of several, same module names and weights.

Shapes: B batch, T new tokens, M = max_len cache columns, C = n_embd, nh heads,
hs = C // nh head size, V vocabulary.
"""

from __future__ import annotations

import contextlib
import functools
import types
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from mlab_tfs.gpt2.solution import GPT2LMHeadModel, KVCache

Tensor = torch.Tensor

# ---------------------------------------------------------------------------------------
# 1. Static KV cache
# ---------------------------------------------------------------------------------------


def static_forward(model: nn.Module, input_ids: Tensor, position_ids: Tensor, cache: KVCache,
                   cache_position: Tensor, last_only: bool = False) -> Tensor:
    """Our GPT-2's (or Llama's: any of our causal LMs with a body at ``base_model_prefix`` and
    an ``lm_head``) forward pass over a static KVCache; returns logits (B, T, V), or
    (B, 1, V) for the last column only with ``last_only`` (a prefill needs no more).

    input_ids, position_ids: (B, T) (position_ids may be (1, T)); cache: a static KVCache
    (``KVCache.for_model(model, B, max_len)``, then ``cache.reset(prompt_mask)``);
    cache_position: (T,) long, the cache columns the T tokens go to (the same for every
    row). Each new token attends to the cache columns up to its own that ``cache.key_mask``
    marks real. The model's input checks that read values are skipped under torch.compile,
    so the function compiles to one graph. Errors: as GPT2Model.forward's, and a
    TypeError naming cache for anything but a static KVCache (a dynamic one, or None, would
    give other shapes every step).
    """
    if not (isinstance(cache, KVCache) and cache.is_static):
        kind = "a dynamic KVCache" if isinstance(cache, KVCache) else f"a {type(cache).__name__}"
        raise TypeError(f"cache must be a static KVCache (KVCache.for_model(model, batch_size, max_len)), got {kind}")
    body = getattr(model, type(model).base_model_prefix)  # GPT-2's transformer, Llama's model
    out = body(input_ids, position_ids=position_ids, past_key_values=cache,
                            cache_position=cache_position)
    x = out.last_hidden_state  # (B, T, C)
    if last_only:
        x = x[:, -1:]
    return model.lm_head(x)


class LinearAsSums(TorchFunctionMode):
    """Inside ``with LinearAsSums(max_rows):``, ``F.linear`` (every nn.Linear) on an input of
    at most ``max_rows`` rows (the product of its leading dims) runs as a broadcast product and
    a sum over the input features, in float32, bias added before the one rounding to the
    input's dtype (as a matrix-multiply kernel accumulates). The same function as F.linear
    (tested equal); under torch.compile, inductor makes it one reduction kernel (a
    matrix-vector product) that fuses the bias and the pointwise work after it, where a
    matrix-multiply call is a kernel of its own and its bias and activation further kernels.
    For the decode step (``mlab_tfs.sampling.fast``, ``linear_as_sums``); larger inputs, and
    every other function, run unchanged. max_rows: an int >= 1 (ValueError otherwise)."""

    def __init__(self, max_rows: int):
        super().__init__()
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise ValueError(f"LinearAsSums: max_rows must be an int >= 1, got {max_rows!r}")
        self.max_rows = max_rows

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if x.numel() // max(x.shape[-1], 1) <= self.max_rows:
                y = (x.unsqueeze(-2).float() * weight.float()).sum(-1)  # (..., out_features)
                if bias is not None:
                    y = y + bias.float()
                return y.to(torch.promote_types(x.dtype, weight.dtype))
        return func(*args, **kwargs)


# ---------------------------------------------------------------------------------------
# 2. Fused layer norm and GELU for eager mode
# ---------------------------------------------------------------------------------------


def _fused_layer_norm_forward(self: nn.Module, x: Tensor) -> Tensor:
    # F.layer_norm wants input and weights in one dtype; otherwise the hand-written path
    # (half-precision input with fp32 weights, or float64 input) keeps its exact semantics.
    # A hook on the scale or the normalized input needs the hand-written path too: the
    # fused kernel forms neither.
    if x.dtype != self.weight.dtype or _hooked(self, "hook_scale") or _hooked(self, "hook_normalized"):
        return type(self).forward(self, x)
    return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


def _hooked(module: nn.Module, name: str) -> bool:
    point = getattr(module, name, None)
    return bool(getattr(point, "has_hooks", False))


def _hand_written_activations() -> dict:
    """hand-written activation -> the fused PyTorch op computing the same function."""
    from mlab_tfs import activations

    table = {activations.gelu_new: functools.partial(F.gelu, approximate="tanh"),
             activations.gelu: F.gelu}  # the exact (erf) GELU
    try:  # a part that still has its own copy of the exact GELU
        from mlab_tfs.bert import solution as bert

        table.setdefault(getattr(bert, "gelu", activations.gelu), F.gelu)
    except ImportError:  # pragma: no cover - the BERT part is optional here
        pass
    return table


def _is_hand_written_layer_norm(module: nn.Module) -> bool:
    return (type(module).__name__ == "LayerNorm" and type(module).forward is not nn.LayerNorm.forward
            and all(hasattr(module, a) for a in ("weight", "bias", "eps")))


def use_fused_ops(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Run ``model``'s hand-written layer norms and GELUs as single PyTorch kernels
    (``F.layer_norm``, ``F.gelu``), or back as written with ``enabled=False``.

    Changes the modules in place (module names, parameters and state dict stay as they
    are) and returns the model. Covers every module named ``LayerNorm`` with weight, bias
    and eps (GPT-2's and BERT's) and the activations ``gelu_new`` (GPT-2) and ``gelu``
    (BERT); other activations stay hand-written. Same outputs and gradients up to float
    rounding: the tests check 1e-5.
    """
    table = _hand_written_activations()
    for module in model.modules():
        if _is_hand_written_layer_norm(module):
            if enabled:
                module.forward = types.MethodType(_fused_layer_norm_forward, module)
            else:
                module.__dict__.pop("forward", None)
        act = module.__dict__.get("act")
        if enabled and act in table:
            module._hand_written_act = act
            module.act = table[act]
        elif not enabled and "_hand_written_act" in module.__dict__:
            module.act = module.__dict__.pop("_hand_written_act")
    return model


@contextlib.contextmanager
def fused_ops(model: nn.Module) -> Iterator[nn.Module]:
    """``with fused_ops(model):`` runs use_fused_ops(model) inside the block only."""
    use_fused_ops(model, True)
    try:
        yield model
    finally:
        use_fused_ops(model, False)
