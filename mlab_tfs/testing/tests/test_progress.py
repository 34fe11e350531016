"""``mlab-tfs check``'s table: optional exercises are shown as such, and one not started
does not keep a part from being complete."""

from __future__ import annotations

import pytest

from mlab_tfs.testing import progress
from mlab_tfs.testing.exercises import Exercise
from mlab_tfs.testing.progress import Result

EXERCISES = [Exercise("core", "Core", "1-core", difficulty=1, importance=1, minutes=5), Exercise("extra", "Extra", "2-extra", optional=True, difficulty=1, importance=1, minutes=5),
             Exercise("last", "Last", "3-last", difficulty=1, importance=1, minutes=5)]


@pytest.fixture
def fake_part(monkeypatch):
    monkeypatch.setattr(progress, "exercises", lambda part: EXERCISES)
    return "fake"


def _report(part, capsys, **statuses):
    results = {(part, name): result for name, result in statuses.items()}
    done = progress.report([part], "student", results)
    return done, capsys.readouterr().out


PASSED, NOT_STARTED, FAILING = Result(passed=3), Result(not_started=2), Result(passed=1, failed=1)


def test_an_optional_exercise_not_started_does_not_count(fake_part, capsys):
    done, out = _report(fake_part, capsys, core=PASSED, extra=NOT_STARTED, last=PASSED)
    assert done is True
    assert "Extra (optional)" in out and "Core (optional)" not in out
    assert "All required exercises pass (optional, not started: Extra)." in out
    assert "Next:" not in out


def test_a_started_optional_exercise_that_fails_counts(fake_part, capsys):
    done, out = _report(fake_part, capsys, core=PASSED, extra=FAILING, last=PASSED)
    assert done is False
    assert "Next: Extra — mlab_tfs/fake/GUIDE.md#2-extra" in out


def test_next_skips_an_optional_exercise_not_started(fake_part, capsys):
    done, out = _report(fake_part, capsys, core=PASSED, extra=NOT_STARTED, last=NOT_STARTED)
    assert done is False
    assert "Next: Last — mlab_tfs/fake/GUIDE.md#3-last" in out


def test_every_exercise_passed(fake_part, capsys):
    done, out = _report(fake_part, capsys, core=PASSED, extra=PASSED, last=PASSED)
    assert done is True and "All exercises pass." in out


@pytest.mark.parametrize("status, optional, counts", [
    ("passed", False, False), ("passed", True, False), ("not started", True, False), ("no tests", True, False),
    ("not started", False, True), ("failing", True, True), ("failing", False, True), ("no tests", False, True),
])
def test_counts_against(status, optional, counts):
    result = {"passed": PASSED, "not started": NOT_STARTED, "failing": FAILING, "no tests": Result()}[status]
    assert result.status == status
    assert progress.counts_against(Exercise("x", "X", "x", optional=optional, difficulty=1, importance=1, minutes=5), result) is counts


class _Report:
    """What Collector reads of a pytest TestReport."""

    def __init__(self, nodeid, message):
        self.nodeid, self.when, self.passed, self.skipped, self.failed = nodeid, "call", False, False, True
        self.longreprtext = f"    raise NotImplementedError(...)\nE   {message}"


@pytest.mark.parametrize("message, status, first", [
    ("NotImplementedError: Exercise 1 (core): see mlab_tfs/fake/GUIDE.md#1-core", "not started",
     "NotImplementedError: Exercise 1 (core): see mlab_tfs/fake/GUIDE.md#1-core"),
    ("NotImplementedError: Exercise 2 (embedding): see mlab_tfs/gpt2/GUIDE.md#2-embedding", "failing",
     "your code calls a piece of another part not written yet: NotImplementedError: Exercise 2 (embedding): "
     "see mlab_tfs/gpt2/GUIDE.md#2-embedding"),
])
def test_a_stub_of_another_part_is_not_this_exercise_not_started(message, status, first):
    """A BERT test that reaches the learner's unwritten GPT-2 Embedding: the BERT exercise is
    written (its own code ran), so it is failing, with the GPT-2 stub named; its own stub is
    "not started"."""
    collector = progress.Collector(where={"t::x": ("fake", "core")})
    collector.pytest_runtest_logreport(_Report("t::x", message))
    result = collector.results[("fake", "core")]
    assert (result.status, result.first_failure) == (status, first)
