"""The sampling options: one checked, frozen record of how the next token is chosen.

``process_logits``, ``generate``, ``generate_fast``, ``beam_search``, ``sample_two_contexts``
and ``filtered_sample`` take ``options=SamplingOptions(...)``. They still take the options'
fields as keywords (``generate(model, ids, do_sample=True, top_k=5)``): those build the
options object. The fields are those of transformers' ``GenerationConfig`` of the same
names (generation/configuration_utils.py), plus OpenAI's frequency and presence penalties.

Every field is checked once, when the object is made; a decoding loop then reads plain
Python values, without checking them again at every step.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, TypedDict

from mlab_tfs.inputs import check_bool, check_int, check_number

# The fields that only matter when sampling, with their "off" values.
SAMPLING_ONLY = (("temperature", 1.0), ("top_k", 0), ("top_p", 1.0), ("min_p", None))


@dataclass(frozen=True)
class SamplingOptions:
    """How the next token is chosen from the logits; every field checked in ``__post_init__``.

    do_sample: False picks the argmax (greedy), True draws from the processed distribution.
    temperature: finite and > 0 (logits / temperature); with do_sample=False it is unused and
        0 is accepted too.
    top_k: an int >= 0 (0 = off): keep the k largest logits (top-k sampling, Fan et al. 2018).
    top_p: in [0, 1] (1 = off): nucleus filtering (Holtzman et al. 2020).
    min_p: None (off) or in [0, 1]: min-p filtering (Nguyen et al. 2024).
    repetition_penalty: finite and > 0 (1 = off): CTRL's penalty (Keskar et al. 2019), as
        transformers applies it (negative logits multiplied).
    frequency_penalty, presence_penalty: finite (0 = off): OpenAI's penalties on the tokens
        generated so far.
    no_repeat_ngram_size: an int >= 0 (0 = off): no n-gram occurs twice.
    min_tokens_to_keep: an int >= 1: top-k, top-p and min-p keep at least this many tokens.

    Errors name the field: TypeError for a value of the wrong kind (a bool or float where an
    int belongs, a string where a number does), ValueError for NaN, inf or out of range.
    Ints and floats are stored as Python ints and floats (numpy numbers and 0-d tensors
    are accepted), so that equal options compare (and hash) equal.
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float | None = None
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    no_repeat_ngram_size: int = 0
    min_tokens_to_keep: int = 1

    def __post_init__(self) -> None:
        do_sample = check_bool("do_sample", self.do_sample)
        checked = dict(
            do_sample=do_sample,
            temperature=check_number("temperature", self.temperature, minimum=0.0, min_inclusive=not do_sample),
            top_k=check_int("top_k", self.top_k, minimum=0),
            top_p=check_number("top_p", self.top_p, minimum=0.0, maximum=1.0),
            min_p=None if self.min_p is None else check_number("min_p", self.min_p, minimum=0.0, maximum=1.0),
            repetition_penalty=check_number("repetition_penalty", self.repetition_penalty, minimum=0.0,
                                            min_inclusive=False),
            frequency_penalty=check_number("frequency_penalty", self.frequency_penalty),
            presence_penalty=check_number("presence_penalty", self.presence_penalty),
            no_repeat_ngram_size=check_int("no_repeat_ngram_size", self.no_repeat_ngram_size, minimum=0),
            min_tokens_to_keep=check_int("min_tokens_to_keep", self.min_tokens_to_keep, minimum=1),
        )
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # frozen: the normalised values replace what was given

    @property
    def unused(self) -> list[str]:
        """The sampling-only settings that are on although do_sample is False ("top_k=5", ...)."""
        if self.do_sample:
            return []
        return [f"{name}={getattr(self, name)}" for name, off in SAMPLING_ONLY if getattr(self, name) != off]

    def warn_unused(self, stacklevel: int = 2) -> None:
        """A UserWarning naming the settings that have no effect (as transformers' generate warns)."""
        if self.unused:
            warnings.warn(f"do_sample=False: {', '.join(self.unused)} only apply when sampling and have no effect",
                          UserWarning, stacklevel=stacklevel + 1)


FIELDS = tuple(f.name for f in dataclasses.fields(SamplingOptions))


class SamplingKeywords(TypedDict, total=False):
    """SamplingOptions' fields as keyword arguments of the decoders (``**sampling``); None
    means "not given". The types and ranges are SamplingOptions'."""

    do_sample: bool | None
    temperature: float | None
    top_k: int | None
    top_p: float | None
    min_p: float | None
    repetition_penalty: float | None
    frequency_penalty: float | None
    presence_penalty: float | None
    no_repeat_ngram_size: int | None
    min_tokens_to_keep: int | None


def resolve_options(options: SamplingOptions | None, defaults: dict[str, Any] | None = None, /,
                    **keywords: Any) -> SamplingOptions:
    """The options of one call, from ``options=`` and/or the options' fields passed as keywords.

    keywords: field name -> value, None meaning "not given"; any other name is a TypeError
    naming it (a decoder's ``**sampling`` takes only SamplingOptions' fields). Without
    options, the given keywords over ``defaults`` (the function's own defaults, e.g.
    do_sample=True for process_logits) build a SamplingOptions (checked: errors name the
    field). With options, a keyword that is also given must agree with the options' field
    (after normalisation: top_k=np.int64(5) agrees with 5); a disagreement is a ValueError
    naming both. options of another type: TypeError.
    """
    unknown = sorted(set(keywords) - set(FIELDS))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise TypeError(f"unexpected keyword argument{'s' if len(unknown) > 1 else ''} {names}: besides its own "
                        f"arguments, a decoder takes only SamplingOptions' fields ({', '.join(FIELDS)})")
    given = {name: value for name, value in keywords.items() if value is not None}
    if options is None:
        return SamplingOptions(**{**(defaults or {}), **given})
    if not isinstance(options, SamplingOptions):
        # A bool or a number here is most likely a setting passed by position, as the decoders
        # took do_sample / temperature before the options object: say how to pass it now.
        hint = (f" ({options!r}): the sampling settings are keywords (do_sample=True, temperature=0.7, ...) or "
                f"one SamplingOptions, not positional arguments" if isinstance(options, (bool, int, float)) else "")
        raise TypeError(f"options must be a mlab_tfs.sampling.SamplingOptions or None, got "
                        f"{type(options).__name__}{hint}")
    if given:
        try:
            merged = dataclasses.replace(options, **given)  # checks and normalises the keywords
        except (TypeError, ValueError):
            # A keyword that is bad only together with options (do_sample=True against options'
            # temperature=0) is first of all a conflict; one that is bad alone keeps its own error.
            if all(_same(given[n], getattr(options, n)) for n in given):
                raise
            merged = None
        clashes = [f"options.{n}={getattr(options, n)!r} and {n}={given[n]!r}" for n in given
                   if (not _same(given[n], getattr(options, n)) if merged is None
                       else getattr(merged, n) != getattr(options, n))]
        if clashes:
            raise ValueError(f"conflicting sampling settings: {'; '.join(clashes)}: pass each setting once, in "
                             f"options or as a keyword (dataclasses.replace(options, ...) makes a changed copy)")
    return options


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError, RuntimeError):  # a tensor of several values, say
        return False
