"""Test ordering shared by the parts' conftests: the tests that can name a mistake run first,
so that the first failure of an exercise (what ``mlab-tfs check`` shows) is one of them."""

from __future__ import annotations

from collections.abc import Sequence


def reorder_first(items: list, folder, first: Sequence[str]) -> None:
    """Put the tests of folder's files named in first before its other tests, in that order of
    files (each file keeps its own order), leaving every other test where it is."""
    slots = [i for i, item in enumerate(items) if item.path.parent == folder]

    def rank(item):
        return first.index(item.path.name) if item.path.name in first else len(first)

    for i, item in zip(slots, sorted((items[i] for i in slots), key=rank)):
        items[i] = item
