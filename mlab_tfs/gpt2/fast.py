"""Fast paths for the GPT-2 solution beside the hand-written code, each tested equal to it
(mlab_tfs/gpt2/tests/test_fast_paths.py, mlab_tfs/tests/test_fused.py).

1. Decoding over a static KV cache (as in PyTorch's gpt-fast): ``KVCache.static`` /
   ``KVCache.for_model`` (mlab_tfs.gpt2.solution) preallocates (B, nh, max_len, hs) key and
   value buffers per layer, which the model's own attention writes in place at the current
   positions. Every decode step then has the same shapes, so it can be compiled once and
   captured as a CUDA graph (``torch.compile(mode="reduce-overhead")``).
   ``static_forward`` is the model's forward over such a cache, returning logits;
   ``mlab_tfs.sampling.fast`` decodes with it. No second attention or model loop: the same
   modules, the same code as ``GPT2LMHeadModel.forward``.
2. Fused kernels in eager mode, on by default: the solutions' layer norms run as one
   ``F.layer_norm``, Llama's RMSNorms as one ``F.rms_norm`` and the MLPs' GELUs as one
   ``F.gelu`` wherever that computes the same function (``mlab_tfs.fused`` says where);
   the hand-written code runs for hooked calls, for the dtypes where the kernel would differ,
   and after ``use_fused_ops(model, False)`` (or inside ``with fused_ops(model, False):``).
   Same module names and weights either way.

Shapes: B batch, T new tokens, M = max_len cache columns, C = n_embd, nh heads,
hs = C // nh head size, V vocabulary.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from mlab_tfs.fused import FusedOps
from mlab_tfs.gpt2.solution import KVCache

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


# ---------------------------------------------------------------------------------------
# 2. The fused kernels of the default eager path, switched per model
# ---------------------------------------------------------------------------------------

_UNSET = object()


def _fused_modules(model: nn.Module, where: str) -> list[FusedOps]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__}")
    modules = [m for m in model.modules() if isinstance(m, FusedOps)]
    if not modules:
        raise ValueError(f"{where}: model ({type(model).__name__}) has no module with a fused path (a "
                         f"mlab_tfs.fused.FusedOps: the solutions' LayerNorm, RMSNorm and MLPs); a model of "
                         f"other modules runs as written")
    return modules


def _check_enabled(where: str, enabled: object) -> bool:
    if not isinstance(enabled, bool):
        raise TypeError(f"{where}: enabled must be True or False, got {type(enabled).__name__} {enabled!r}")
    return enabled


def use_fused_ops(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Choose, for every module of ``model`` that has a fused path (``mlab_tfs.fused.FusedOps``:
    the layer norms, RMSNorms and MLPs of the GPT-2, BERT, DeBERTa and Llama solutions), the
    single PyTorch kernels (``enabled=True``: ``F.layer_norm``, ``F.rms_norm``, ``F.gelu``, where
    they compute the same function; the default of a new model) or the hand-written code
    (``enabled=False``).

    Sets each module's ``fused_ops`` attribute, in place; module names, parameters and the
    state dict stay as they are. Returns the model. The setting is the model's own: it holds
    inside ``mlab_tfs.fused.hand_written()`` too. Either way a call with a hook on a layer
    norm's ``hook_scale`` / ``hook_normalized`` or an MLP's ``hook_pre`` / ``hook_post`` runs
    that module's hand-written code. Same outputs and gradients up to float rounding (tested
    1e-5, ``mlab_tfs/tests/test_fused.py``).

    Errors: TypeError for a model that is not an nn.Module or an enabled that is not a bool;
    ValueError for a model without any such module (a learner's own modules have no fused path).
    """
    _check_enabled("use_fused_ops", enabled)
    for module in _fused_modules(model, "use_fused_ops"):
        module.fused_ops = enabled
    return model


@contextlib.contextmanager
def fused_ops(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """``with fused_ops(model):`` (or ``fused_ops(model, False)`` for the hand-written code)
    runs ``use_fused_ops(model, enabled)`` inside the block and yields the model; afterwards
    every module's setting is what it was before (its own value, or none: the default), even
    on an error. Errors as use_fused_ops's."""
    _check_enabled("fused_ops", enabled)
    modules = _fused_modules(model, "fused_ops")
    before = [m.__dict__.get("fused_ops", _UNSET) for m in modules]
    for module in modules:
        module.fused_ops = enabled
    try:
        yield model
    finally:
        for module, value in zip(modules, before):
            if value is _UNSET:
                module.__dict__.pop("fused_ops", None)
            else:
                module.fused_ops = value
