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


def test_one_exercise_passed_names_it_and_the_next_one(fake_part, capsys):
    """--exercise 1 passing is not "all exercises pass": it names the exercise and the next command."""
    done = progress.report([fake_part], "student", {(fake_part, "core"): PASSED}, only=["1"])
    out = capsys.readouterr().out
    assert done is True
    assert "All exercises pass" not in out
    assert out.splitlines()[-3:] == [
        "This exercise passes: Core.",
        "Next: Extra — mlab_tfs/fake/GUIDE.md#2-extra",
        "  run it: mlab-tfs check fake --exercise 2   (or: pytest --impl=student mlab_tfs/fake --exercise extra)",
    ]


def test_the_last_exercise_passed_has_no_next(fake_part, capsys):
    done = progress.report([fake_part], "solution", {(fake_part, "last"): PASSED}, only=["last"])
    out = capsys.readouterr().out
    assert done is True and out.splitlines()[-1] == "This exercise passes: Last." and "Next" not in out


def test_a_part_named_twice_is_checked_and_shown_once(fake_part, capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(progress, "run", lambda parts, impl, verbose, only: seen.append(parts) or {})
    progress.check(["fake", "fake"], solution=False, only=["1"])
    out = capsys.readouterr().out
    assert seen == [["fake"]] and out.count("fake (student)") == 1


@pytest.mark.parametrize("args, kwargs, error, words", [
    ((2,), {}, TypeError, "parts must be given one by one as strings, check('gpt2', 'bert'), got int 2"),
    ((["gpt2"],), {}, TypeError, "got list ['gpt2']"),
    (("gpt3",), {}, ValueError, "parts must be among"),
    (("gpt2",), {"exercise": True}, TypeError, "exercise must be an exercise's name (str) or number (int)"),
    (("gpt2",), {"exercise": 1.5}, TypeError, "got float 1.5"),
    (("gpt2",), {"exercise": {1}}, TypeError, "got set {1}"),
    (("gpt2",), {"exercise": []}, ValueError, "got an empty list"),
    (("gpt2",), {"exercise": (1, "nope")}, ValueError, "got 'nope'"),
    (("gpt2",), {"exercise": 0}, ValueError, "got '0'"),
    (("gpt2",), {"solution": "yes"}, TypeError, "solution must be True or False, got str 'yes'"),
    (("gpt2",), {"verbose": 1}, TypeError, "verbose must be True or False, got int 1"),
])
def test_notebook_check_refuses_bad_arguments_before_running(args, kwargs, error, words, monkeypatch):
    from mlab_tfs.testing import check

    monkeypatch.setattr(progress, "run", lambda *a, **k: pytest.fail("ran the tests"))
    with pytest.raises(error) as e:
        check(*args, **kwargs)
    assert words in str(e.value)


def test_notebook_check_takes_a_tuple_of_exercises(monkeypatch, capsys):
    from mlab_tfs.testing import check

    seen = []
    monkeypatch.setattr(progress, "run", lambda parts, impl, verbose, only: seen.append((parts, impl, only)) or {})
    assert check("gpt2", exercise=(1, "embedding")) is False  # nothing ran: nothing passed
    assert seen == [(["gpt2"], "student", ["1", "embedding"])]


@pytest.mark.parametrize("wanted, name", [
    ("layer_norm", "layer_norm"), ("Layer norm", "layer_norm"), ("layer-norm", "layer_norm"),
    ("LAYER_NORM", "layer_norm"), (" 1 ", "layer_norm"), ("KV cache", "kv_cache"), ("kv-cache", "kv_cache"),
    ("GELU (tanh approximation)", "gelu"), ("11", "kv_cache"),
    ("layernorm", None), ("", None), ("0", None), ("12", None), ("norm", None),
])
def test_an_exercise_by_name_title_or_number(wanted, name):
    from mlab_tfs.testing.exercises import select

    found = select("gpt2", wanted)
    assert (found.name if found else None) == name


def test_an_error_inside_torch_says_where_in_your_code():
    """A shape that does not broadcast raises deep inside torch: the report names the line of the
    learner's file it came from, with its source."""
    from mlab_tfs.testing.mistakes import check_report, planted_source

    source = planted_source("llama", [("mean_square = x32.pow(2).mean(-1, keepdim=True)",
                                       "mean_square = x32.pow(2).mean(-1)")])
    report = check_report("llama", "rms_norm", source)
    assert "RuntimeError: The size of tensor a (16) must match" in report, report
    assert "raised in your code at " in report and "student_planted.py:" in report, report
    assert "x_hat = x32 * torch.rsqrt(mean_square + self.eps)" in report, report


def test_a_failed_check_says_no_location():
    from mlab_tfs.testing.mistakes import check_report, planted_source

    from mlab_tfs.testing.mistakes import PACKAGE_DIR, plants

    report = check_report("llama", "rms_norm", planted_source("llama", plants("llama")["mean_subtracted"]))
    assert "does not match" in report and "raised in your code" not in report, report
    stub = check_report("llama", "rms_norm", (PACKAGE_DIR / "llama" / "student.py").read_text())
    assert "NotImplementedError: Exercise 1" in stub and "raised in your code" not in stub, stub
