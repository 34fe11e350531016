"""``mlab-tfs check``'s table: optional exercises are shown as such, and one not started
does not keep a part from being complete."""

from __future__ import annotations

import pytest

from mlab_tfs.testing import progress
from mlab_tfs.testing.exercises import Exercise
from mlab_tfs.testing.progress import Result

EXERCISES = [Exercise("core", "Core", "1-core"), Exercise("extra", "Extra", "2-extra", optional=True),
             Exercise("last", "Last", "3-last")]


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
    assert progress.counts_against(Exercise("x", "X", "x", optional=optional), result) is counts
