"""Helpers of the tokenizer tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from mlab_tfs.tokenizers.mistakes import MISTAKES

Candidate = Callable[[], object]


Candidates = Mapping[str, "Candidate | Sequence[Candidate]"]
Other = tuple[Candidate, Candidates]


def _value(fn: Candidate) -> object:
    try:
        return fn()
    except Exception as e:  # noqa: BLE001  (a mistake that raises matches code that raises the same)
        return e


def _same(value: object, got: object) -> bool:
    if isinstance(got, BaseException) or isinstance(value, BaseException):
        return isinstance(got, BaseException) and isinstance(value, BaseException) and type(value) is type(got)
    return value == got and type(value) is type(got)


def _matches(got: object, fns: Candidate | Sequence[Candidate]) -> bool:
    return any(_same(_value(fn), got) for fn in (fns if isinstance(fns, (list, tuple)) else [fns]))


def diagnose(got: object, candidates: Candidates, others: Sequence[Other] = ()) -> str:
    """The "likely cause" line for an output that differs from the expected one: the
    catalogued mistakes (by name) whose computation gives exactly ``got``; "" if none does.

    candidates: {mistake name: a function computing what that mistake outputs on this input,
    or a list of them (the mistake written in several ways)}. A computation that raises is
    not a match (unless the learner's code raised the same kind of error).
    others: (the learner's output on another input, as a function; the candidates on that
    input), used only when several mistakes give ``got``: the mistakes that also give the
    learner's output on the other inputs are kept, so that "a (or b)" is said only when no
    input tells them apart. An input on which none of them matches (the learner's code has
    yet another mistake there) is skipped.
    """
    found = [name for name, fns in candidates.items() if _matches(got, fns)]
    for learner, cands in others:
        if len(found) < 2:
            break
        theirs = _value(learner)
        kept = [name for name in found if name in cands and _matches(theirs, cands[name])]
        if kept:
            found = kept
    if not found:
        return ""
    causes = [MISTAKES[name].cause for name in found]
    return "\n  likely cause: your output matches what " + " (or ".join(causes) + ")" * (len(causes) - 1) + " gives"


def check(got: object, expected: object, message: str, candidates: Candidates, others: Sequence[Other] = ()) -> None:
    """assert got == expected, with message and, when a catalogued mistake gives got, its name
    (others: see diagnose)."""
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    if got != expected or type(got) is not type(expected):
        raise AssertionError(message + diagnose(got, candidates, others))
