"""What tools built for transformers' models look for on a model, shared by every model class.

transformers' ``PreTrainedModel`` (``transformers/modeling_utils.py``) gives every model
``.device`` and ``.dtype`` (``ModuleUtilsMixin``), ``get_input_embeddings()`` /
``get_output_embeddings()``, ``tie_weights()``, and a forward that takes ``inputs_embeds``
instead of ``input_ids`` and ``return_dict=False`` for a tuple. Pipelines, ``generate``,
peft, accelerate and the exporters call these. ``ModelSurfaceMixin`` adds them to a model
class without the class's own forward knowing: the forward a class defines is wrapped once,
where the class is made, so a learner's forward (student.py) gets them as the solution's does.

- ``inputs_embeds`` (B, T, D), D the word embedding's width, replaces the *word-embedding
  lookup only*, as in transformers: GPT-2 adds the position embeddings to it; BERT and
  DeBERTa add positions and token types (and DeBERTa projects and normalises) as they do
  for looked-up ids. The forward runs on placeholder ids of shape (B, T) while a forward
  hook makes the word embedding return inputs_embeds, so every hook point after it
  (``hook_embed`` first) sees inputs_embeds, and the lookup table gets no gradient from it.
- ``return_dict=False`` returns ``output.to_tuple()`` (the set fields in field order, as
  transformers' tuples); None or True the ModelOutput. Where transformers records
  ``cross_attentions`` (GPT-2, BertModel) the output's field is () whenever attentions are
  asked for, so the tuples are equal element by element.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from mlab_tfs.inputs import _describe, require_tensor, same_device

Tensor = torch.Tensor

_WRAPPED = "__mlab_tfs_boundary__"


def check_inputs_embeds(inputs_embeds: object, width: int, device: torch.device) -> Tensor:
    """inputs_embeds: a floating (batch, seq, width) tensor, batch and seq >= 1, on ``device``
    (the word embedding's). TypeError if not a tensor, ValueError naming inputs_embeds otherwise."""
    x = require_tensor("inputs_embeds", inputs_embeds)
    if not x.dtype.is_floating_point:
        raise ValueError(f"inputs_embeds must be a floating tensor of embeddings, got {_describe(x)}")
    if x.dim() != 3 or x.shape[-1] != width:
        raise ValueError(f"inputs_embeds must have shape (batch, seq, {width}) (the word embedding's width), "
                         f"got {_describe(x)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"inputs_embeds must hold at least one sequence of at least one position, got {_describe(x)}")
    if not same_device(x.device, device):
        raise ValueError(f"inputs_embeds is on {x.device} but the model's word embedding is on {device}")
    return x


def _check_return_dict(value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"return_dict must be True, False or None, got {value!r} ({type(value).__name__})")


def _signature(forward: Callable) -> inspect.Signature:
    """forward's signature with input_ids optional and keyword-only inputs_embeds and return_dict."""
    sig = inspect.signature(forward)
    params = [p.replace(default=None) if p.name == "input_ids" and p.default is p.empty else p
              for p in sig.parameters.values()]
    var_kw = [p for p in params if p.kind is p.VAR_KEYWORD]
    params = [p for p in params if p.kind is not p.VAR_KEYWORD]
    params += [inspect.Parameter("inputs_embeds", inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation="Tensor | None"),
               inspect.Parameter("return_dict", inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation="bool | None")]
    return sig.replace(parameters=params + var_kw)


_BOUNDARY_DOC = """

        Also, for every model (mlab_tfs.surface, as transformers' PreTrainedModel):
        inputs_embeds (B, T, D) instead of input_ids (exactly one of them: both or neither is
        a ValueError) replaces the word-embedding lookup (positions and token types are still
        added); return_dict=False returns the output's to_tuple(), None or True the output."""


def _boundary(forward: Callable) -> Callable:
    """forward with transformers' inputs_embeds and return_dict (see the module docstring)."""
    if getattr(forward, _WRAPPED, False):
        return forward
    names = inspect.signature(forward).parameters
    if "inputs_embeds" in names or "return_dict" in names or "input_ids" not in names:
        return forward  # a forward that handles them itself, or takes no ids

    @functools.wraps(forward)
    def wrapped(self, *args: Any, inputs_embeds: Tensor | None = None, return_dict: bool | None = None,
                **kwargs: Any) -> Any:
        _check_return_dict(return_dict)
        if inputs_embeds is None:
            if (args[0] if args else kwargs.get("input_ids")) is None:
                raise ValueError("pass input_ids (batch, seq) or inputs_embeds (batch, seq, width); got neither")
            out = forward(self, *args, **kwargs)
        else:
            if args:
                input_ids, args = args[0], args[1:]
            else:
                input_ids = kwargs.pop("input_ids", None)
            if input_ids is not None:
                raise ValueError(f"pass input_ids or inputs_embeds, not both (got input_ids {_describe(input_ids)} "
                                 f"and inputs_embeds {_describe(inputs_embeds)})")
            out = _forward_embeds(self, forward, inputs_embeds, args, kwargs)
        if (type(self).records_cross_attentions and getattr(out, "attentions", None) is not None
                and getattr(out, "cross_attentions", ()) is None):
            out.cross_attentions = ()  # as transformers' recorder gives, with no cross-attention layer
        return out.to_tuple() if return_dict is False else out

    wrapped.__signature__ = _signature(forward)  # type: ignore[attr-defined]
    wrapped.__doc__ = (forward.__doc__ or "").rstrip() + _BOUNDARY_DOC
    setattr(wrapped, _WRAPPED, True)
    return wrapped


_EMBEDS = "_mlab_tfs_inputs_embeds"  # the word embedding's __dict__ entry its hook returns while set
_EMBEDS_HOOK = "_mlab_tfs_inputs_embeds_hook"


def _return_inputs_embeds(module: nn.Module, inputs: Any, output: Tensor) -> Tensor | None:
    """The word embedding's forward hook: inputs_embeds while a forward with them runs, else
    the lookup as it is (None)."""
    return module.__dict__.get(_EMBEDS)


def _install_embeds_hook(table: nn.Module) -> None:
    """Register _return_inputs_embeds on the word embedding once, first among its forward hooks
    (so hooks of the table registered later see inputs_embeds). Done when the model is built,
    so a compiled forward only sets and clears the table's entry (no hook registered while
    tracing: no graph break); a table replaced since gets it on its first eager use."""
    if not table.__dict__.get(_EMBEDS_HOOK, False):
        table.register_forward_hook(_return_inputs_embeds, prepend=True)
        table.__dict__[_EMBEDS_HOOK] = True
        table.__dict__[_EMBEDS] = None


def _forward_embeds(model: nn.Module, forward: Callable, inputs_embeds: Tensor, args: tuple, kwargs: dict) -> Any:
    """forward on placeholder ids while the word embedding returns inputs_embeds."""
    table = model.get_input_embeddings()  # type: ignore[attr-defined]
    weight = table.weight
    x = check_inputs_embeds(inputs_embeds, weight.shape[-1], weight.device)
    # Zeros: an id every table has. Shape (B, T), for the shape checks, labels and positions;
    # no value of them is read (the word embedding's output is replaced by x).
    ids = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
    _install_embeds_hook(table)
    table.__dict__[_EMBEDS] = x
    try:
        return forward(model, ids, *args, **kwargs)
    finally:
        table.__dict__[_EMBEDS] = None


def _retie_after_init(init: Callable) -> Callable:
    """init, then tie_weights() if the model is on the meta device with a tie it asked for
    lost: accelerate's init_empty_weights replaces every Parameter a module registers,
    which cuts the tie an ``__init__`` made by assignment (transformers ties in post_init)."""
    if getattr(init, _WRAPPED, False):
        return init

    @functools.wraps(init)
    def wrapped(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if self._lost_tie_on_meta():
            self.tie_weights()
        if type(self).input_embeddings_name:
            try:
                table = self.get_input_embeddings()
            except AttributeError:  # a model without a word embedding (or a learner's not built yet)
                table = None
            if isinstance(table, nn.Module):
                _install_embeds_hook(table)

    setattr(wrapped, _WRAPPED, True)
    return wrapped


class ModelSurfaceMixin:
    """``.device``, ``.dtype``, ``get_input_embeddings()``, ``get_output_embeddings()``,
    ``tie_weights()``, and inputs_embeds / return_dict on every forward a subclass defines
    (see the module docstring). A model class sets:

    - ``base_model_prefix``: the attribute holding the body in a model with a head
      (transformers' name: ``"transformer"`` for GPT-2, ``"bert"``, ``"deberta"``);
    - ``input_embeddings_name``: the word embedding's path within the body (``"wte"``,
      ``"embeddings.word_embeddings"``);
    - ``tied_weights`` (from PretrainedMixin): alias -> source parameter names, tied when
      ``config.tie_word_embeddings``; the first alias's module is the output embedding.
    """

    base_model_prefix: ClassVar[str] = ""
    input_embeddings_name: ClassVar[str] = ""
    tied_weights: ClassVar[dict[str, str]] = {}
    # transformers' GPT-2 and BERT record cross_attentions (an empty tuple here, beside
    # attentions) in the outputs that have the field; DeBERTa's outputs have none.
    records_cross_attentions: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "forward" in cls.__dict__:
            cls.forward = _boundary(cls.__dict__["forward"])  # type: ignore[attr-defined]
        if "__init__" in cls.__dict__:
            cls.__init__ = _retie_after_init(cls.__dict__["__init__"])  # type: ignore[misc]

    @property
    def device(self) -> torch.device:
        """The device of the first parameter (transformers' ModuleUtilsMixin.device: the model is
        assumed to be on one device; under accelerate's init_empty_weights, meta)."""
        for p in self.parameters():  # type: ignore[attr-defined]
            return p.device
        raise AttributeError(f"{type(self).__name__} has no parameters, so no device")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the first floating parameter (transformers' ModuleUtilsMixin.dtype)."""
        for p in self.parameters():  # type: ignore[attr-defined]
            if p.is_floating_point():
                return p.dtype
        raise AttributeError(f"{type(self).__name__} has no floating parameters, so no dtype")

    def get_input_embeddings(self) -> nn.Module:
        """The word embedding module (its ``weight`` is (V, D)), as transformers' method."""
        body = getattr(self, self.base_model_prefix, self) if self.base_model_prefix else self
        return body.get_submodule(type(self).input_embeddings_name)  # type: ignore[union-attr]

    def get_output_embeddings(self) -> nn.Module | None:
        """The module whose weight is the head tied to the word embedding (GPT-2's lm_head, BERT's
        decoder), None for a model without one, as transformers' method (a class whose
        transformers counterpart answers otherwise overrides it: DeBERTa-v3's MLM head)."""
        for alias in self.tied_weights:
            owner = alias.rpartition(".")[0]
            try:
                return self.get_submodule(owner)  # type: ignore[attr-defined]
            except AttributeError:  # this variant has no such head (DeBERTa's legacy=False)
                continue
        return None

    def _tied_pairs(self) -> list[tuple[str, str]]:
        """The tied_weights pairs this model has both ends of."""
        pairs = []
        for alias, source in self.tied_weights.items():
            try:
                self.get_parameter(alias), self.get_parameter(source)  # type: ignore[attr-defined]
            except AttributeError:
                continue
            pairs.append((alias, source))
        return pairs

    def _lost_tie_on_meta(self) -> bool:
        if not getattr(getattr(self, "config", None), "tie_word_embeddings", False):
            return False
        for alias, source in self._tied_pairs():
            a, s = self.get_parameter(alias), self.get_parameter(source)  # type: ignore[attr-defined]
            if a is not s and a.device.type == "meta" and s.device.type == "meta":
                return True
        return False

    def tie_weights(self) -> None:
        """Tie each pair of ``tied_weights`` (the alias becomes the source Parameter itself, saved
        once) when ``config.tie_word_embeddings`` is True, as transformers' tie_weights; with
        False, nothing changes (a tie is not undone). Call it after building a model under
        accelerate's init_empty_weights (the tie survives there anyway) or after replacing the
        word embedding. In place; returns None."""
        from mlab_tfs.checkpoints import tie_weights

        if getattr(self.config, "tie_word_embeddings", False):  # type: ignore[attr-defined]
            pairs = dict(self._tied_pairs())
            if pairs:
                tie_weights(self, pairs)  # type: ignore[arg-type]
