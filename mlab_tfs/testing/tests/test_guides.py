"""The guides and the exercise lists say the same thing: each exercise's numbers line, its
list of common mistakes (the catalogue's), the exercise table's Difficulty / Importance / Time."""

from __future__ import annotations

import re

import pytest

from mlab_tfs.testing.exercises import PARTS, exercises
from mlab_tfs.testing.mistakes import PACKAGE_DIR, anchor, catalogue, guide_path, render_guide, time_mark

GUIDED = [p for p in PARTS if guide_path(p).is_file()]


def _sections(text: str) -> dict[str, str]:
    """{anchor of a '## ' heading: the text of its section}."""
    out, current = {}, None
    for line in text.split("\n"):
        if line.startswith("## "):
            current = anchor(line[3:])
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


@pytest.mark.parametrize("part", GUIDED)
def test_guide_is_rendered_from_the_catalogue(part):
    text = guide_path(part).read_text(encoding="utf-8")
    assert render_guide(part, text) == text, (
        f"mlab_tfs/{part}/GUIDE.md differs from its exercise list and catalogue: run "
        "`python -m mlab_tfs.testing.mistakes write`")


@pytest.mark.parametrize("part", GUIDED)
def test_every_exercise_section_has_its_blocks(part):
    sections = _sections(guide_path(part).read_text(encoding="utf-8"))
    for ex in exercises(part):
        assert ex.section in sections, f"{part} GUIDE.md has no section #{ex.section} for exercise {ex.name!r}"
        body = sections[ex.section].lstrip("\n")
        assert body.startswith(f"<!-- exercise: {ex.name} -->\n"), (
            f"{part} GUIDE.md #{ex.section} should open with the block <!-- exercise: {ex.name} --> ... "
            "<!-- /exercise --> (its difficulty, importance and time)")
        if catalogue(part).for_exercise(ex.name):
            assert f"<!-- mistakes: {ex.name} -->" in sections[ex.section], (
                f"{part} GUIDE.md #{ex.section} should list its common mistakes: add the lines "
                f"<!-- mistakes: {ex.name} --> and <!-- /mistakes --> there, then run "
                "`python -m mlab_tfs.testing.mistakes write`")


@pytest.mark.parametrize("part", GUIDED)
def test_exercise_table_has_the_numbers(part):
    section = _sections(guide_path(part).read_text(encoding="utf-8")).get("exercises", "")
    header = next((ln for ln in section.split("\n") if ln.startswith("| #")), "")
    for col in ("Difficulty", "Importance", "Time"):
        assert f"| {col} " in header + " ", f"{part} GUIDE.md's exercise table should have a {col} column"
    rows = [ln for ln in section.split("\n") if re.match(r"\| \d+ \|", ln)]
    assert len(rows) == len(exercises(part)), f"{part} GUIDE.md's table should have one row per exercise"


@pytest.mark.parametrize("part", GUIDED)
def test_pitfalls_are_the_catalogues(part):
    """A '## Pitfalls' section explains at length; every subsection is where some catalogued
    mistake's text points, so the two are one list."""
    text = guide_path(part).read_text(encoding="utf-8")
    pitfalls = _sections(text).get("pitfalls")
    if pitfalls is None:
        return
    linked = " ".join(m.why for m in catalogue(part))
    for line in pitfalls.split("\n"):
        if line.startswith("### "):
            assert f"(#{anchor(line[4:])})" in linked, (
                f"{part} GUIDE.md pitfall {line[4:]!r} is not linked from any catalogued mistake: link it from "
                "the why of the mistakes it explains, or catalogue the mistake")


def test_readme_gives_each_part_its_time():
    readme = (PACKAGE_DIR.parent / "README.md").read_text(encoding="utf-8")
    for part in GUIDED:
        total = sum(e.minutes for e in exercises(part))
        row = next((ln for ln in readme.split("\n") if ln.startswith("|") and f"mlab_tfs/{part}/GUIDE.md" in ln), None)
        assert row is not None, f"README's course table has no row for {part}"
        assert f"| {time_mark(total)} |" in row, (
            f"README's course table should give {part} the sum of its exercises' times, {time_mark(total)}: {row}")


# Understanding checks: a visible question, its answer collapsed, as
#
#   <details>
#   <summary>Why does the key bias get no gradient?</summary>
#
#   The answer.
#
#   </details>
QUESTION = re.compile(r"<details>\s*<summary>(.*?)</summary>(.*?)</details>", re.S)
# Sections that teach nothing to be checked: how to run things, lists and links.
UNCHECKED = {"how-to-work", "exercises", "hook-points", "going-further", "references", "pitfalls",
             "config-checks", "bad-input", "you-wrote-these-in-gpt2", "part-1-wordpiece-bert",
             "part-2-byte-level-bpe-gpt-2"}
ALL_GUIDES = [p for p in (*PARTS, "training") if (PACKAGE_DIR / p / "GUIDE.md").is_file()]


@pytest.mark.parametrize("part", ALL_GUIDES)
def test_every_section_has_understanding_checks(part):
    text = (PACKAGE_DIR / part / "GUIDE.md").read_text(encoding="utf-8")
    assert text.count("<details>") == text.count("</details>"), f"{part} GUIDE.md: unbalanced <details>"
    for name, body in _sections(text).items():
        if name in UNCHECKED:
            continue
        questions = QUESTION.findall(body)
        assert len(questions) >= 2, (f"{part} GUIDE.md section #{name} has {len(questions)} understanding "
                                     "check(s); give it two or three (<details><summary>question?</summary> answer)")
        for question, answer in questions:
            assert question.strip().endswith("?"), f"{part} #{name}: the summary {question!r} is not a question"
            assert len(answer.strip()) >= 20, f"{part} #{name}: the question {question!r} has no answer"
