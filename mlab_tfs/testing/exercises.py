"""What an exercise is, and where each part keeps its list."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

# The course in order; a part counts once its folder has an exercises.py.
COURSE_ORDER = ["gpt2", "bert", "tokenizers", "sampling", "deberta", "training", "llama", "interp"]
_PACKAGE = Path(__file__).resolve().parent.parent
PARTS = [part for part in COURSE_ORDER if (_PACKAGE / part / "exercises.py").is_file()]


@dataclass(frozen=True)
class Exercise:
    name: str  # the name tests use in @pytest.mark.exercise(...)
    title: str  # what the progress table shows
    section: str  # the anchor of its section in the part's GUIDE.md
    optional: bool = False  # shown as optional; not started, it does not count against completing the part
    # What the guide's exercise table and each section's first line show, as ARENA's chapters do:
    difficulty: int = field(kw_only=True)  # 1 (a few lines, one idea) to 5
    importance: int = field(kw_only=True)  # 1 (a detail) to 5 (what the course is about)
    minutes: int = field(kw_only=True)  # a first attempt, reading the section included

    def __post_init__(self) -> None:
        for name, low, high in (("difficulty", 1, 5), ("importance", 1, 5), ("minutes", 1, 600)):
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"exercise {self.name!r}: {name} must be an int in [{low}, {high}], got {value!r}")

    def guide_link(self, part: str) -> str:
        return f"mlab_tfs/{part}/GUIDE.md#{self.section}"


def exercises(part: str) -> list[Exercise]:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    return importlib.import_module(f"mlab_tfs.{part}.exercises").EXERCISES


def select(part: str, wanted: str | int, among: list[Exercise] | None = None) -> Exercise | None:
    """The part's exercise named wanted, or numbered wanted (1 is the first, as ``mlab-tfs check``
    numbers them); None if the part has no such exercise. among: the part's list, if already read.
    A name matches whatever its case, with spaces or hyphens for its underscores ("Layer norm",
    "layer-norm"), and so does the title the table shows ("Layer norm", "KV cache")."""
    exs = exercises(part) if among is None else among
    text = str(wanted).strip()
    if text.isdigit():
        k = int(text)
        return exs[k - 1] if 1 <= k <= len(exs) else None
    key = _key(text)
    return next((e for e in exs if e.name == text), None) or next(
        (e for e in exs if key and key in (_key(e.name), _key(e.title))), None)


def _key(text: str) -> str:
    return "_".join(text.lower().replace("-", " ").replace("_", " ").split())
