"""Checks on config fields, shared by every model's config dataclass.

Each config checks every field where it is built (``__post_init__``), so that a bad value
fails at once with the config class and the field named, instead of as NaN logits
(``layer_norm_epsilon=-1``) or a torch error deep inside a layer (``dropout=2.0``).
Type errors (a bool where an int is expected: ``True`` is an int to Python) raise
``ConfigTypeError``, range errors ``ConfigError``; both are ValueErrors.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from typing import Any, ClassVar, Iterable


class ConfigError(ValueError):
    """A config field with a value the model cannot use."""


class ConfigTypeError(ConfigError, TypeError):
    """A config field of the wrong type (also a TypeError)."""


def _where(owner: object, name: str) -> str:
    return f"{type(owner).__name__}.{name}"


# The largest value torch can hold in a size or an index (int64); beyond it torch fails
# deep inside with an unnamed overflow.
INT_MAX = 2**63 - 1
# The largest finite float32: a larger value (an eps, an init std) becomes inf in an fp32 model.
FLOAT32_MAX = 3.4028234663852886e38


def _as_float32(value: float) -> float:
    """value rounded to float32 (what it becomes in an fp32 model); |value| <= FLOAT32_MAX."""
    return struct.unpack("f", struct.pack("f", value))[0]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(owner: object, name: str, *, minimum: int | None = None, optional: bool = False) -> None:
    """owner.<name> is an int (not a bool) in [minimum, INT_MAX], or None if optional."""
    value = getattr(owner, name)
    if value is None and optional:
        return
    if not _is_int(value):
        expected = "an int" + (" or None" if optional else "")
        raise ConfigTypeError(f"{_where(owner, name)} must be {expected}, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{_where(owner, name)} must be >= {minimum}, got {value}")
    if abs(value) > INT_MAX:
        raise ConfigError(f"{_where(owner, name)} must fit in int64 (at most {INT_MAX} in size), got {value}")


def check_float(
    owner: object, name: str, *, low: float, high: float | None = None, low_open: bool = False,
    high_open: bool = True, optional: bool = False,
) -> None:
    """owner.<name> is a real number (an int is fine, a bool is not) in the given interval,
    finite in float32 (the models' default dtype: a larger value would become inf there)."""
    value = getattr(owner, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        expected = "a number" + (" or None" if optional else "")
        raise ConfigTypeError(f"{_where(owner, name)} must be {expected}, got {value!r} ({type(value).__name__})")
    interval = ("(" if low_open else "[") + f"{low:g}, " + ("inf)" if high is None else f"{high:g}" +
                                                           (")" if high_open else "]"))
    ok = math.isfinite(value) and abs(value) <= FLOAT32_MAX and (value > low if low_open else value >= low)
    if ok and low_open and _as_float32(value) <= low:  # an eps of 1e-300 is 0 in float32: no longer > 0
        ok = False
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        raise ConfigError(f"{_where(owner, name)} must be finite (in float32) and in {interval}, got {value!r}")


def check_probability(owner: object, name: str, *, optional: bool = False) -> None:
    """A dropout probability: in [0, 1) (1 would drop everything)."""
    check_float(owner, name, low=0.0, high=1.0, optional=optional)


def check_bool(owner: object, name: str) -> None:
    """owner.<name> is True or False (not 0/1): ConfigTypeError naming it otherwise."""
    value = getattr(owner, name)
    if not isinstance(value, bool):
        raise ConfigTypeError(f"{_where(owner, name)} must be True or False, got {value!r} ({type(value).__name__})")


def check_choice(owner: object, name: str, choices: Iterable[Any], *, optional: bool = False) -> None:
    """owner.<name> is one of the strings choices (or None if optional): ConfigError naming
    it and the choices otherwise."""
    value = getattr(owner, name)
    choices = tuple(choices)
    if value is None and optional:
        return
    if not isinstance(value, str) or value not in choices:
        extra = " or None" if optional else ""
        raise ConfigError(f"{_where(owner, name)} must be one of {choices}{extra}, got {value!r}")


def check_token_id(owner: object, name: str, vocab_size: int) -> None:
    """None, or an id in [0, vocab_size)."""
    check_int(owner, name, minimum=0, optional=True)
    value = getattr(owner, name)
    if value is not None and value >= vocab_size:
        raise ConfigError(f"{_where(owner, name)} must be in [0, vocab_size={vocab_size}) or None, got {value}")


def check_divisible(owner: object, name: str, by: str) -> None:
    """owner.<name> is a multiple of owner.<by> (hidden size by heads): ConfigError otherwise."""
    value, divisor = getattr(owner, name), getattr(owner, by)
    if value % divisor != 0:
        raise ConfigError(f"{_where(owner, name)} ({value}) must be divisible by {by} ({divisor})")



def check_encoder_fields(owner: object) -> None:
    """The fields transformers' encoder configs share (BertConfig, DebertaV2Config: the same
    names and meanings): vocab_size, hidden_size, num_hidden_layers, num_attention_heads,
    intermediate_size, max_position_embeddings ints >= 1; hidden_size divisible by
    num_attention_heads; hidden_act one of activations.ACTIVATIONS; hidden_dropout_prob and
    attention_probs_dropout_prob in [0, 1); layer_norm_eps > 0; initializer_range >= 0;
    pad_token_id a vocabulary id or None; tie_word_embeddings a bool. ConfigError or
    ConfigTypeError naming the field."""
    from mlab_tfs.activations import ACTIVATIONS

    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings"):
        check_int(owner, name, minimum=1)
    check_divisible(owner, "hidden_size", "num_attention_heads")
    check_choice(owner, "hidden_act", ACTIVATIONS)
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        check_probability(owner, name)
    check_float(owner, "layer_norm_eps", low=0.0, low_open=True)  # inside a sqrt: > 0
    check_float(owner, "initializer_range", low=0.0)
    check_token_id(owner, "pad_token_id", owner.vocab_size)  # type: ignore[attr-defined]  (the padding row)
    check_bool(owner, "tie_word_embeddings")

def config_dict(owner_name: str, d: object) -> dict[str, Any]:
    """from_dict's argument: a dict with str keys (what config.json holds)."""
    if not isinstance(d, dict):
        raise TypeError(f"{owner_name}.from_dict needs a dict (a config.json's contents), got {type(d).__name__}")
    return d


class _Architectures:
    """``architectures`` as transformers keeps it: on an instance a list of class names (the
    one read from config.json, or a copy of the class's default), settable; on the class the
    default tuple."""

    def __init__(self, default: tuple[str, ...]):
        self.default = tuple(default)

    def __get__(self, instance: object, owner: type) -> Any:
        if instance is None:
            return self.default
        return instance.__dict__.setdefault("_architectures", list(self.default))

    def __set__(self, instance: object, value: Any) -> None:
        if value is not None and (not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value)):
            raise ConfigTypeError(f"{type(instance).__name__}.architectures must be a list of class names or None, "
                                  f"got {value!r}")
        instance.__dict__["_architectures"] = None if value is None else list(value)


class ConfigMixin:
    """config.json reading and writing for a config dataclass, shared by every model.

    A class sets:
    - ``model_type``: what config.json's "model_type" must be (another is a ValueError);
    - ``architectures``: written to config.json, so transformers' Auto classes know the model;
    - ``attribute_map``: transformers' generic names read as the class's own fields
      (``hidden_size`` -> ``n_embd`` for GPT-2); the generic name wins, as in transformers;
    - ``unsupported``: field -> the only value this implementation runs (``{"add_cross_attention":
      False}``): config.json holding another is a ValueError, and to_dict writes it;
    - ``not_written``: fields left out of config.json (``attn_implementation``, which
      transformers keeps as a loading option, not a stored field).

    ``model_type`` and ``architectures`` read on an instance too (``config.architectures`` is a
    list, as transformers keeps it; from_pretrained sets config.json's).
    ``from_dict`` ignores keys that are not fields (config.json holds many); ``_from_dict``
    and ``_to_dict`` are the places for a class's own conversions.
    """

    model_type: ClassVar[str] = ""
    architectures: ClassVar[Any] = _Architectures(())
    attribute_map: ClassVar[dict[str, str]] = {}
    unsupported: ClassVar[dict[str, Any]] = {}
    not_written: ClassVar[tuple[str, ...]] = ("attn_implementation",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        default = cls.__dict__.get("architectures")
        if isinstance(default, (tuple, list)):
            cls.architectures = _Architectures(default)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """A config from a Hugging Face config.json's contents. ValueError for another
        model_type or an unsupported setting; ConfigError naming a field with a bad value."""
        d = config_dict(cls.__name__, d)
        model_type = d.get("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ValueError(f"config has model_type {model_type!r}; {cls.__name__} reads checkpoints with "
                             f"model_type {cls.model_type!r}{cls._model_type_hint(model_type)}")
        for name, value in cls.unsupported.items():
            if name in d and d[name] != value and not (value is False and not d[name]):
                raise ValueError(f"config has {name}={d[name]!r}; this implementation supports only "
                                 f"{name}={value!r}")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs = {k: v for k, v in d.items() if k in known}
        for alias, name in cls.attribute_map.items():
            if alias in d:
                kwargs[name] = d[alias]
        if "attn_implementation" in known and "attn_implementation" not in d and d.get("_attn_implementation"):
            kwargs["attn_implementation"] = d["_attn_implementation"]  # transformers' private name
        cls._from_dict(d, kwargs)
        return cls(**kwargs)

    @classmethod
    def _model_type_hint(cls, model_type: str) -> str:
        """Extra words for the wrong-model_type error (" (DeBERTa v1 ...)")."""
        return ""

    @classmethod
    def _from_dict(cls, d: dict[str, Any], kwargs: dict[str, Any]) -> None:
        """Adjust the constructor's keywords ``kwargs`` read from config.json ``d``, in place."""

    def to_dict(self) -> dict[str, Any]:
        """A config.json that transformers' config class of this model_type reads back to the same model."""
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        for name in self.not_written:
            d.pop(name, None)
        d.update(self.unsupported)
        d["model_type"] = self.model_type
        if self.architectures:
            d["architectures"] = list(self.architectures)
        self._to_dict(d)
        return d

    def _to_dict(self, d: dict[str, Any]) -> None:
        """Adjust the config.json dict ``d`` in place."""
