"""Helpers of the tokenizer tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from mlab_tfs.testing.mistakes import Mistake
from mlab_tfs.tokenizers.mistakes import MISTAKES

Candidate = Callable[[], object]


def diagnose(got: object, candidates: Mapping[str, Candidate | Sequence[Candidate]]) -> str:
    """The "likely cause" line for an output that differs from the expected one: the
    catalogued mistakes (by name) whose computation gives exactly ``got``; "" if none does.

    candidates: {mistake name: a function computing what that mistake outputs on this input,
    or a list of them (the mistake written in several ways)}. A computation that raises is
    not a match.
    """
    found: list[Mistake] = []
    for name, fns in candidates.items():
        for fn in fns if isinstance(fns, (list, tuple)) else [fns]:
            try:
                value = fn()
            except Exception as e:  # noqa: BLE001  (a mistake that raises matches code that raises the same)
                value = e
            if isinstance(got, BaseException) and isinstance(value, BaseException):
                same = type(value) is type(got)
            else:
                same = value == got and type(value) is type(got)
            if same:
                found.append(MISTAKES[name])
                break
    if not found:
        return ""
    return "\n  likely cause: your output matches what " + " (or ".join(m.cause for m in found) + \
        ")" * (len(found) - 1) + " gives"


def check(got: object, expected: object, message: str, candidates: Mapping[str, Candidate | Sequence[Candidate]]) -> None:
    """assert got == expected, with message and, when a catalogued mistake gives got, its name."""
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    if got != expected or type(got) is not type(expected):
        raise AssertionError(message + diagnose(got, candidates))


def reorder_first(items: list, folder, first: Sequence[str]) -> None:
    """Put the tests of folder's files named in first before its other tests, in that order of
    files (each file keeps its own order), leaving every other test where it is."""
    slots = [i for i, item in enumerate(items) if item.path.parent == folder]

    def rank(item):
        return first.index(item.path.name) if item.path.name in first else len(first)

    for i, item in zip(slots, sorted((items[i] for i in slots), key=rank)):
        items[i] = item
