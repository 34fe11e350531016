"""The catalogue of common mistakes: one list per part, read by the tests, the guides and a test
that plants each mistake.

Each part keeps ``MISTAKES = Catalogue(PART, [...])`` in ``mlab_tfs/<part>/mistakes.py``. A
:class:`Mistake` is what a learner commonly gets wrong in one exercise, with the words
``mlab-tfs check`` uses for it ("likely cause: ..."). The same list is

- what the tests recognise: ``assert_close(..., mistakes={MISTAKES["eps_outside_sqrt"]: output})``
  names the mistake when the learner's output matches what it gives, and checks that are not a
  tensor comparison say ``likely(mistake)`` in their message;
- the guide's list of mistakes for the exercise, rendered between ``<!-- mistakes: <exercise> -->``
  and ``<!-- /mistakes -->`` in the part's GUIDE.md (``python -m mlab_tfs.testing.mistakes write``
  rewrites those blocks; a test holds the guides equal to the catalogues);
- what ``mlab_tfs/testing/tests/test_catalogue.py`` plants: ``mlab_tfs/<part>/tests/plants.py`` maps
  each mistake to source edits of the part's solution; the edited solution runs as the learner's
  code through ``mlab-tfs check``, whose "likely cause" line must name the mistake. A diagnosis
  therefore cannot silently stop working.

Commands (``python -m mlab_tfs.testing.mistakes ...``):

- ``write``: rewrite every guide's generated blocks (mistakes, the exercise's numbers line, and
  the Difficulty / Importance / Time cells of the exercise table) from the catalogues;
- ``plant PART NAME``: print the ``mlab-tfs check`` report for the solution with that mistake.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import linecache
import re
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlab_tfs.testing.exercises import PARTS, Exercise, exercises

PACKAGE_DIR = Path(__file__).resolve().parent.parent
Edit = tuple[str, str]


@dataclass(frozen=True)
class Mistake:
    """A common mistake in one exercise.

    exercise: the exercise's name (as in the part's exercises.py).
    name: an identifier, unique within the part ("eps_outside_sqrt").
    cause: a short noun phrase, what ``mlab-tfs check`` prints after "likely cause:", as in
        "your output matches what <cause> gives" ("eps outside the sqrt (sqrt(var) + eps)").
    why: the guide's text: why it is wrong and how it shows (markdown; may link a guide anchor).
    """

    exercise: str
    name: str
    cause: str
    why: str

    def __str__(self) -> str:  # a Mistake can be a key of assert_close(mistakes=...)
        return self.cause


class Catalogue:
    """A part's mistakes, in course order. ``catalogue["name"]`` is one mistake.

    fewer: {exercise: why it has fewer than three catalogued mistakes}; every other exercise of
    the part must have at least three (tested).
    """

    def __init__(self, part: str, mistakes: Sequence[Mistake], fewer: dict[str, str] | None = None) -> None:
        known = [e.name for e in exercises(part)]
        self.part, self.mistakes, self.fewer = part, list(mistakes), dict(fewer or {})
        self._by_name: dict[str, Mistake] = {}
        for m in self.mistakes:
            if m.exercise not in known:
                raise ValueError(f"{part} mistake {m.name!r}: exercise must be one of {known}, got {m.exercise!r}")
            if m.name in self._by_name:
                raise ValueError(f"{part} mistake {m.name!r} is catalogued twice")
            if not re.fullmatch(r"[a-z0-9_]+", m.name):
                raise ValueError(f"{part} mistake name must be snake_case, got {m.name!r}")
            self._by_name[m.name] = m
        for ex in self.fewer:
            if ex not in known:
                raise ValueError(f"{part}: fewer names an unknown exercise {ex!r}")

    def __getitem__(self, name: str) -> Mistake:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no {self.part} mistake is named {name!r}; the catalogue has "
                           f"{sorted(self._by_name)}") from None

    def __iter__(self) -> Iterator[Mistake]:
        return iter(self.mistakes)

    def __len__(self) -> int:
        return len(self.mistakes)

    def for_exercise(self, exercise: str) -> list[Mistake]:
        return [m for m in self.mistakes if m.exercise == exercise]


def likely(mistake: Mistake) -> str:
    """The line an assertion message ends with when it has recognised a mistake."""
    return f"likely cause: {mistake.cause}"


def catalogue(part: str) -> Catalogue:
    """The part's catalogue (an empty one if the part has no mistakes.py yet)."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    try:
        module = importlib.import_module(f"mlab_tfs.{part}.mistakes")
    except ModuleNotFoundError as e:
        if e.name != f"mlab_tfs.{part}.mistakes":
            raise
        return Catalogue(part, [])
    return module.MISTAKES


def plants(part: str) -> dict[str, list[Edit]]:
    """{mistake name: source edits of the part's solution.py}, from mlab_tfs/<part>/tests/plants.py."""
    try:
        module = importlib.import_module(f"mlab_tfs.{part}.tests.plants")
    except ModuleNotFoundError as e:
        if e.name != f"mlab_tfs.{part}.tests.plants":
            raise
        return {}
    return module.PLANTS


# ----------------------------------------------------------------------------- the guides

DIFFICULTY, IMPORTANCE = ("⭐", "☆"), ("●", "○")


def difficulty_mark(n: int) -> str:
    return DIFFICULTY[0] * n + DIFFICULTY[1] * (5 - n)


def importance_mark(n: int) -> str:
    return IMPORTANCE[0] * n + IMPORTANCE[1] * (5 - n)


def time_mark(minutes: int) -> str:
    """~25 min; ~1 h 30 min from 60 minutes on (rounded to 5 minutes)."""
    if minutes < 60:
        return f"~{minutes} min"
    h, m = divmod(5 * round(minutes / 5), 60)
    return f"~{h} h" + (f" {m} min" if m else "")


def exercise_line(ex: Exercise) -> str:
    return (f"Difficulty {difficulty_mark(ex.difficulty)} · Importance {importance_mark(ex.importance)} · "
            f"about {ex.minutes} minutes" + (" · optional" if ex.optional else ""))


def mistakes_block(mistakes: Sequence[Mistake]) -> str:
    lines = ["Common mistakes (the tests name each one in their \"likely cause\" line):", ""]
    lines += [f"- **{m.cause}**: {m.why}" for m in mistakes]
    return "\n".join(lines)


_BLOCK = re.compile(r"(<!-- (mistakes|exercise): (\w+) -->\n)(.*?)(<!-- /\2 -->)", re.S)


def render_guide(part: str, text: str) -> str:
    """The guide's text with its generated blocks and table cells rewritten from the catalogue."""
    by_name = {e.name: e for e in exercises(part)}
    cat = catalogue(part)

    def block(match: re.Match) -> str:
        kind, name = match.group(2), match.group(3)
        if name not in by_name:
            raise ValueError(f"{part} GUIDE.md: a {kind} block names an unknown exercise {name!r}")
        body = exercise_line(by_name[name]) if kind == "exercise" else mistakes_block(cat.for_exercise(name))
        return f"{match.group(1)}{body}\n{match.group(5)}"

    return _render_table(part, _BLOCK.sub(block, text))


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _render_table(part: str, text: str) -> str:
    """Rewrite the Difficulty, Importance and Time cells of the table under '## Exercises'."""
    lines = text.split("\n")
    exs = exercises(part)
    try:
        start = lines.index("## Exercises")
    except ValueError:
        return text
    i = start + 1
    while i < len(lines) and not lines[i].startswith("|"):
        i += 1
    if i >= len(lines):
        return text
    header = _cells(lines[i])
    cols = {c: header.index(c) for c in ("Difficulty", "Importance", "Time") if c in header}
    if "#" not in header or not cols:
        return text
    num = header.index("#")
    i += 2  # past the |---| line
    while i < len(lines) and lines[i].startswith("|"):
        cells = _cells(lines[i])
        k = int(cells[num]) - 1
        if not 0 <= k < len(exs):
            raise ValueError(f"{part} GUIDE.md exercise table: row {cells[num]} has no exercise")
        ex = exs[k]
        for col, j in cols.items():
            cells[j] = {"Difficulty": difficulty_mark, "Importance": importance_mark, "Time": time_mark}[col](
                {"Difficulty": ex.difficulty, "Importance": ex.importance, "Time": ex.minutes}[col])
        lines[i] = "| " + " | ".join(cells) + " |"
        i += 1
    return "\n".join(lines)


def anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading's text ("1. Layer norm" -> "1-layer-norm")."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def guide_path(part: str) -> Path:
    return PACKAGE_DIR / part / "GUIDE.md"


def write_guides(parts: Sequence[str] = PARTS) -> list[Path]:
    """Rewrite the generated parts of every guide; returns the files that changed."""
    from mlab_tfs.durable import write_text_atomic

    changed = []
    for part in parts:
        path = guide_path(part)
        text = path.read_text(encoding="utf-8")
        new = render_guide(part, text)
        if new != text:
            write_text_atomic(path, new)
            changed.append(path)
    return changed


# ----------------------------------------------------------------------------- planting


def planted_source(part: str, edits: Sequence[Edit]) -> str:
    """The part's solution.py with the edits applied in order; each old text must occur once."""
    text = (PACKAGE_DIR / part / "solution.py").read_text(encoding="utf-8")
    for old, new in edits:
        n = text.count(old)
        if n != 1:
            raise ValueError(f"{part} plant: the text to replace must occur exactly once in solution.py, "
                             f"found {n} times: {old!r}")
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def as_student(part: str, source: str) -> Iterator[types.ModuleType]:
    """Within the block, ``mlab_tfs.<part>.student`` is a module built from source (an edited
    solution), so that ``--impl=student`` runs it; the real module is put back afterwards."""
    name = f"mlab_tfs.{part}.student"
    filename = str(PACKAGE_DIR / part / "student_planted.py")
    package = importlib.import_module(f"mlab_tfs.{part}")
    saved_module, saved_attr = sys.modules.get(name), package.__dict__.get("student")
    module = types.ModuleType(name)
    module.__file__, module.__package__ = filename, f"mlab_tfs.{part}"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks show it
    sys.modules[name] = module
    try:
        exec(compile(source, filename, "exec"), module.__dict__)
        package.student = module
        yield module
    finally:
        linecache.cache.pop(filename, None)
        if saved_module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = saved_module
        if saved_attr is None:
            package.__dict__.pop("student", None)
        else:
            package.student = saved_attr


def check_report(part: str, exercise: str, source: str) -> str:
    """What ``mlab-tfs check <part> --exercise <exercise>`` prints with source as the learner's code
    (stopping at the first failing test, which is the one whose diagnosis the report shows)."""
    from mlab_tfs.testing import progress

    with as_student(part, source):
        results = progress.run([part], "student", only=[exercise], maxfail=1, announce=False)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            progress.report([part], "student", results, only=[exercise])
    return out.getvalue()


def likely_causes(report: str) -> list[str]:
    """The "likely cause:" lines of a check report, without that prefix."""
    return [line.split("likely cause:", 1)[1].strip() for line in report.splitlines() if "likely cause:" in line]


def plant_report(part: str, name: str) -> str:
    mistake = catalogue(part)[name]
    edits = plants(part).get(name)
    if edits is None:
        raise ValueError(f"{part} mistake {name!r} has no plant in mlab_tfs/{part}/tests/plants.py")
    return check_report(part, mistake.exercise, planted_source(part, edits))


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mlab_tfs.testing.mistakes")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("write", help="rewrite the guides' generated blocks from the catalogues")
    p = sub.add_parser("plant", help="print the check report for the solution with one mistake planted")
    p.add_argument("part", choices=PARTS)
    p.add_argument("name", help="the mistake's name in the part's catalogue")
    args = parser.parse_args(argv)
    if args.command == "write":
        for path in write_guides():
            print(f"rewrote {path.relative_to(PACKAGE_DIR.parent)}")
        return 0
    print(plant_report(args.part, args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
