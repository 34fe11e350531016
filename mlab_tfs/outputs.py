"""Output containers shared by every model in the course.

They behave like transformers' ``ModelOutput`` where the rest of the ecosystem relies on
it: attribute access (``out.logits``), string keys (``out["loss"]``) and integer
indexing over the fields that are set (``out[0]`` is the loss when there is one, as
transformers' ``Trainer`` expects), and iteration over the keys of the fields that are set,
as a dict (``transformers/utils/generic.py``: ``ModelOutput`` is an OrderedDict).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any

import torch

Tensor = torch.Tensor
# A KV cache as older transformers passed it: one (key, value) pair per layer, each
# (batch, heads, cached positions, head size).
LegacyKVCache = tuple[tuple[Tensor, Tensor], ...]
# What a model's past_key_values is: its cache object (mlab_tfs.gpt2.solution.KVCache,
# updated in place, as transformers' Cache) or, as input, a LegacyKVCache.
PastKeyValues = Any


@dataclass
class ModelOutput:
    """A model's outputs by name (transformers/utils/generic.py ``ModelOutput``): fields that
    are None are absent from keys(), iteration, indexing and to_tuple(); ``out["name"]`` of
    an absent field is a KeyError, ``out[i]`` past the set fields an IndexError.

    Item and attribute assignment stay in step, as transformers': ``out["logits"] = x`` sets
    ``out.logits``, and a key that is not a field (``out["extra"] = x``) becomes an attribute
    and appears in keys() after the fields. keys() keep field order even for a field set after
    construction (transformers' OrderedDict would append it): ``out[0]`` stays the loss.
    ``del``, ``pop``, ``setdefault`` and ``update`` are refused (TypeError), as transformers
    refuses them.

    Every subclass is a registered torch pytree node (``torch.utils._pytree``): its children
    are the fields' values in field order (None included) then the extra keys', its context
    their names, so ``torch.export.export`` and ``torch.onnx.export(..., dynamo=True)`` take
    a model that returns one, and the exported program returns the same class.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register_pytree(cls)

    def _extra(self) -> dict[str, Any]:
        return self.__dict__.setdefault("_extra_keys", {})

    def keys(self) -> list[str]:
        """The names of the fields that are set (not None), in field order, then the extra keys set."""
        names = [f.name for f in fields(self) if getattr(self, f.name) is not None]
        return names + [k for k in self._extra() if getattr(self, k) is not None]

    def to_tuple(self) -> tuple[Any, ...]:
        """The set values as a tuple, in keys() order (``out[0]`` is the loss when there is one)."""
        return tuple(getattr(self, k) for k in self.keys())

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"{type(self).__name__} keys are str (field names), got {key!r}")
        if key not in {f.name for f in fields(self)}:
            if key.startswith("_") or key in type(self).__dict__ or hasattr(ModelOutput, key):
                raise KeyError(f"{key!r} cannot be a key of {type(self).__name__} (it names a method or is private)")
            self._extra()[key] = None
        object.__setattr__(self, key, value)

    def __delitem__(self, key: object) -> None:
        raise TypeError(f"You cannot use ``__delitem__`` on a {type(self).__name__} instance (set the field to None)")

    def setdefault(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"You cannot use ``setdefault`` on a {type(self).__name__} instance")

    def pop(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"You cannot use ``pop`` on a {type(self).__name__} instance")

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"You cannot use ``update`` on a {type(self).__name__} instance")

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def values(self) -> list[Any]:
        """The set fields' values, in field order (as keys())."""
        return list(self.to_tuple())

    def items(self) -> list[tuple[str, Any]]:
        """(name, value) of the set fields, in field order."""
        return list(zip(self.keys(), self.to_tuple()))

    def __len__(self) -> int:
        return len(self.keys())


def _flatten(out: ModelOutput) -> tuple[list[Any], tuple[tuple[str, ...], tuple[str, ...]]]:
    names = tuple(f.name for f in fields(out))
    extra = tuple(out._extra())
    return [getattr(out, k) for k in names + extra], (names, extra)


def _flatten_with_keys(out: ModelOutput) -> tuple[list[tuple[Any, Any]], Any]:
    from torch.utils._pytree import GetAttrKey

    values, context = _flatten(out)
    return [(GetAttrKey(k), v) for k, v in zip(context[0] + context[1], values)], context


def _unflatten(cls: type, values: Any, context: tuple[tuple[str, ...], tuple[str, ...]]) -> ModelOutput:
    names, extra = context
    values = list(values)
    out = cls(**dict(zip(names, values[: len(names)])))
    for k, v in zip(extra, values[len(names):]):
        out[k] = v
    return out


def _register_pytree(cls: type) -> None:
    """Register cls as a pytree node (as transformers registers its ModelOutput subclasses)."""
    from torch.utils import _pytree

    _pytree.register_pytree_node(
        cls, _flatten, functools.partial(_unflatten, cls),
        serialized_type_name=f"{cls.__module__}.{cls.__qualname__}",
        flatten_with_keys_fn=_flatten_with_keys,
    )


@dataclass
class BaseModelOutput(ModelOutput):
    """A body's output (transformers' BaseModelOutput*): last_hidden_state (B, T, C);
    pooler_output (B, C) (BERT); past_key_values, the cache (GPT-2, use_cache=True);
    hidden_states, n_layer + 1 of (B, T, C); attentions, n_layer of (B, nh, T, S);
    cross_attentions, () beside attentions in the models whose transformers counterpart
    records them (GPT-2, BertModel: none here, so that to_tuple() is transformers' tuple)."""

    last_hidden_state: Tensor | None = None
    pooler_output: Tensor | None = None
    past_key_values: PastKeyValues | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    cross_attentions: tuple[Tensor, ...] | None = None


@dataclass
class CausalLMOutput(ModelOutput):
    """A language model's output (transformers' CausalLMOutputWithCrossAttentions): loss, a
    scalar with labels; logits (B, T, V); the rest as BaseModelOutput's."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    past_key_values: PastKeyValues | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    cross_attentions: tuple[Tensor, ...] | None = None


@dataclass
class MaskedLMOutput(ModelOutput):
    """A masked-LM head's output (transformers' MaskedLMOutput): loss, a scalar with labels;
    logits (B, T, V); hidden_states and attentions as BaseModelOutput's."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class SequenceClassifierOutput(ModelOutput):
    """A sequence classifier's output (transformers' SequenceClassifierOutput): loss, a scalar
    with labels; logits (B, num_labels); hidden_states and attentions as BaseModelOutput's."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
