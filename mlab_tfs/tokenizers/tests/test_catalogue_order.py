"""The catalogue of mistakes lists the exercises in course order (exercises.py), as the
Catalogue promises: after Part 2's reorder (minbpe's: train before merging by rank) a block
left in the old place would still render, but out of order for whoever reads the file."""

from __future__ import annotations

from mlab_tfs.tokenizers.exercises import EXERCISES
from mlab_tfs.tokenizers.mistakes import MISTAKES


def test_catalogue_follows_the_course_order():
    position = {e.name: i for i, e in enumerate(EXERCISES)}
    order = [position[m.exercise] for m in MISTAKES.mistakes]
    assert order == sorted(order), [EXERCISES[i].name for i in dict.fromkeys(order)]
