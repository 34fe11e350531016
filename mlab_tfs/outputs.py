"""Output containers shared by every model in the course.

They behave like transformers' ``ModelOutput`` where the rest of the ecosystem relies on
it: attribute access (``out.logits``), string keys (``out["loss"]``) and integer
indexing over the fields that are set (``out[0]`` is the loss when there is one, as
transformers' ``Trainer`` expects), and iteration over the keys of the fields that are set,
as a dict (``transformers/utils/generic.py``: ``ModelOutput`` is an OrderedDict).
"""

from __future__ import annotations

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
    an absent field is a KeyError, ``out[i]`` past the set fields an IndexError."""

    def to_tuple(self) -> tuple[Any, ...]:
        """The set fields' values as a tuple (``out[0]`` is the loss when there is one)."""
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None)

    def keys(self) -> list[str]:
        """The names of the fields that are set (not None), in field order."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

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


@dataclass
class BaseModelOutput(ModelOutput):
    """A body's output (transformers' BaseModelOutput*): last_hidden_state (B, T, C);
    pooler_output (B, C) (BERT); past_key_values, the cache (GPT-2, use_cache=True);
    hidden_states, n_layer + 1 of (B, T, C); attentions, n_layer of (B, nh, T, S)."""

    last_hidden_state: Tensor | None = None
    pooler_output: Tensor | None = None
    past_key_values: PastKeyValues | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class CausalLMOutput(ModelOutput):
    """A language model's output (transformers' CausalLMOutputWithCrossAttentions): loss, a
    scalar with labels; logits (B, T, V); the rest as BaseModelOutput's."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    past_key_values: PastKeyValues | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


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
