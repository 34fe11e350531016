"""What an exercise is, and where each part keeps its list."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

# The course in order; a part counts once its folder has an exercises.py.
COURSE_ORDER = ["gpt2", "bert", "tokenizers", "sampling", "deberta", "training"]
_PACKAGE = Path(__file__).resolve().parent.parent
PARTS = [part for part in COURSE_ORDER if (_PACKAGE / part / "exercises.py").is_file()]


@dataclass(frozen=True)
class Exercise:
    name: str  # the name tests use in @pytest.mark.exercise(...)
    title: str  # what the progress table shows
    section: str  # the anchor of its section in the part's GUIDE.md
    optional: bool = False  # shown as optional; not started, it does not count against completing the part

    def guide_link(self, part: str) -> str:
        return f"mlab_tfs/{part}/GUIDE.md#{self.section}"


def exercises(part: str) -> list[Exercise]:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    return importlib.import_module(f"mlab_tfs.{part}.exercises").EXERCISES
