"""``mlab-tfs check``: run a part's tests through pytest and show progress per exercise."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import textwrap
import time
from dataclasses import dataclass, field

import pytest

from mlab_tfs.testing.exercises import PARTS, Exercise, exercises, select
from mlab_tfs.testing.plugin import EXERCISE_PROPERTY, PACKAGE_DIR, cores, exercise_of, part_of


@dataclass
class Result:
    passed: int = 0
    failed: int = 0
    not_started: int = 0
    skipped: int = 0
    first_failure: str | None = None  # the diagnosis of the first failing test
    first_failing_test: str | None = None
    first_place: int = 0  # the first failing test's place in collection order

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.not_started

    @property
    def status(self) -> str:
        if self.total == 0:
            return "no tests"
        if self.passed == self.total:
            return "passed"
        if self.not_started == self.total:
            return "not started"
        return "failing"


@dataclass(eq=False)  # pytest keeps plugins in sets: they must stay hashable
class Collector:
    """A pytest plugin that files each test's outcome under its (part, exercise), in one process
    or as the controller of pytest-xdist's workers (the reports carry the exercise)."""

    results: dict[tuple[str, str], Result] = field(default_factory=dict)
    where: dict[str, tuple[str, str]] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)  # nodeid -> place in collection order
    announce: object = None  # a stream to say "running N tests of ..." on, once collected
    total: int = 0
    done: int = 0

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            name, part = exercise_of(item), part_of(item)
            if name and part:
                self.where[item.nodeid] = (part, name)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.items:  # not under xdist, whose controller collects nothing
            self._collected([item.nodeid for item in session.items])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids: list[str]) -> None:
        if not self.order:  # every worker collects the same tests
            self._collected(list(ids), workers=len(node.config.getvalue("tx") or []) or None)

    def _collected(self, ids: list[str], workers: int | None = None) -> None:
        self.order = {nodeid: i for i, nodeid in enumerate(ids)}
        self.total = n = len(ids)
        if self.announce is None:
            return
        parts = list(dict.fromkeys(p.split("/")[1] for p in ids if p.startswith("mlab_tfs/") and "/tests/" in p))
        what = f"{len(parts)} part{'s' * (len(parts) != 1)}" + (f" ({', '.join(parts)})" if parts else "")
        on = f" on {workers} workers" if workers else ""
        print(f"running {n} test{'s' * (n != 1)} of {what}{on}…", file=self.announce, flush=True)

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple) -> None:
        self.done += 1
        stream = self.announce
        if stream is not None and self.total and _is_terminal(stream) and (
                self.done == self.total or self.done % max(1, self.total // 100) == 0):
            end = "\n" if self.done == self.total else ""
            print(f"\r  {self.done}/{self.total} tests run", end=end, file=stream, flush=True)

    def _key(self, report: pytest.TestReport) -> tuple[str, str] | None:
        if report.nodeid in self.where:
            return self.where[report.nodeid]
        value = dict(report.user_properties).get(EXERCISE_PROPERTY)
        if value is None:
            return None
        part, name = value.split(":", 1)
        self.where[report.nodeid] = (part, name)
        return part, name

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        key = self._key(report)
        if key is None:
            return
        result = self.results.setdefault(key, Result())
        if report.when == "call" and report.passed:
            result.passed += 1
        elif report.skipped and report.when in ("setup", "call"):
            result.skipped += 1
        elif report.failed:
            message = _message(report)
            stub = message.startswith("NotImplementedError")
            if stub and "GUIDE.md" in message and f"mlab_tfs/{key[0]}/GUIDE.md" not in message:
                # This part's code ran and reached a stub of an earlier part (BERT on the GPT-2
                # layer norm): not "not started", and the message says which piece to write first.
                message = f"your code calls a piece of another part not written yet: {message}"
                stub = False
            if stub:
                result.not_started += 1
            else:
                result.failed += 1
            # Show a real failure in preference to "not implemented yet", and among those the
            # first in collection order (workers finish tests in any order).
            place = self.order.get(report.nodeid, len(self.order))
            shown = result.first_failure
            better = shown is None or (shown.startswith("NotImplementedError") and not stub) or (
                shown.startswith("NotImplementedError") == stub and place < result.first_place)
            if better:
                result.first_failure, result.first_failing_test, result.first_place = message, report.nodeid, place


def workers() -> int:
    """How many pytest-xdist workers check runs on: one per core (MLAB_TFS_WORKERS overrides it;
    1 runs in this process, as it does without pytest-xdist)."""
    try:
        import xdist  # noqa: F401
    except ImportError:
        return 1
    wanted = os.environ.get("MLAB_TFS_WORKERS", "").strip()
    if wanted:
        if not wanted.isdigit() or int(wanted) < 1:
            raise ValueError(f"MLAB_TFS_WORKERS must be a whole number >= 1, got {wanted!r}")
        return int(wanted)
    return cores()


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _message(report: pytest.TestReport) -> str:
    # The exception's lines are the "E   " lines at the end of pytest's report.
    lines = report.longreprtext.splitlines()
    tail: list[str] = []
    for line in reversed(lines):
        if line.startswith("E "):
            tail.append(line[1:])
        elif tail:
            break
    text = textwrap.dedent("\n".join(reversed(tail))) if tail else lines[-1] if lines else "failed"
    # A failed check or a stub not started says what to do itself; an error raised inside torch does not.
    failed_check = text.startswith(("mlab_tfs.testing.compare.Mismatch: ", "AssertionError", "NotImplementedError"))
    for prefix in ("mlab_tfs.testing.compare.Mismatch: ", "AssertionError: "):
        text = text.removeprefix(prefix)
    where = None if failed_check else _in_your_code(lines)
    return text.strip() + (f"\n  raised in your code at {where}" if where else "")


_YOUR_FILE = re.compile(r"^(\S*student(?:_planted)?\.py):(\d+): ")


def _in_your_code(lines: list[str]) -> str | None:
    """"path:line: source" of the last frame of a traceback (pytest's long report) in a learner's
    student.py: where an error raised inside torch (a shape that does not broadcast, say) came from."""
    where, source = None, ""
    for i, line in enumerate(lines):
        if line.startswith(">"):  # --tb=long: the source line comes before its location
            source = line[1:].strip()
        elif m := _YOUR_FILE.match(line):
            after = lines[i + 1] if i + 1 < len(lines) else ""
            if after.startswith(" ") and after.strip():  # --tb=short: after it
                source = after.strip()
            where = f"{m.group(1)}:{m.group(2)}" + (f": {source}" if source else "")
            source = ""
    return where


def run(parts: list[str], impl: str, verbose: bool = False, only: list[str] | None = None,
        maxfail: int | None = None, announce: bool = True) -> dict[tuple[str, str], Result]:
    """Run the parts' tests against impl ("student" or "solution") and file the outcomes per
    exercise. only: exercise names or numbers to run only those (``--exercise``); maxfail: stop after
    that many failing tests; announce: print "running N tests of ..." once they are collected."""
    collector = Collector(announce=sys.stdout if announce else None)
    paths = [str(PACKAGE_DIR / part / "tests") for part in parts]
    args = [*paths, f"--impl={impl}", "-p", "no:cacheprovider", "-q", "--no-header", "-W", "ignore"]
    args += [f"--exercise={e}" for e in only or []]
    if maxfail:
        args.append(f"--maxfail={maxfail}")
    elif not only and (n_workers := workers()) > 1:  # one exercise's tests run faster than workers start
        args += ["-n", str(n_workers)]
    started = time.monotonic()
    if announce:
        print(f"collecting the tests of {', '.join(parts)} (imports torch and transformers: a few seconds)…",
              flush=True)
    if verbose:
        code = pytest.main(args, plugins=[collector])
    else:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = pytest.main(args, plugins=[collector])
    if code in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
        if not verbose:  # what pytest said (a syntax error in student.py, say), then the one-line verdict
            print("\n".join(out.getvalue().splitlines()[-30:]), file=sys.stderr)
        raise SystemExit(f"pytest could not run the tests (exit code {int(code)}): its last lines are above; "
                         "`mlab-tfs check -v` shows all of its output")
    if announce:
        print(f"done in {time.monotonic() - started:.0f} s", flush=True)
    return collector.results


def _paint(text: str, status: str) -> str:
    if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        return text
    color = {"passed": "32", "failing": "31", "not started": "33"}.get(status, "0")
    return f"\033[{color}m{text}\033[0m"


MARKS = {"passed": "✓ passed", "failing": "✗ failing", "not started": "· not started", "no tests": "- no tests"}


def counts_against(ex: Exercise, result: Result) -> bool:
    """Whether an exercise keeps its part from being complete: any that has not passed,
    except an optional one not started (or without tests)."""
    if result.status == "passed":
        return False
    return not (ex.optional and result.status in ("not started", "no tests"))


def _select(part: str, wanted: str) -> Exercise | None:
    return select(part, wanted, among=exercises(part))


def resolve(parts: list[str], wanted: list[str] | None) -> dict[str, list[Exercise]]:
    """{part: its exercises named or numbered in wanted (all of them when wanted is empty)}.
    Raises ValueError naming the part's exercises when one of wanted is in none of the parts."""
    chosen: dict[str, list[Exercise]] = {}
    for part in parts:
        if not wanted:
            chosen[part] = list(exercises(part))
            continue
        picked = {e.name for w in wanted if (e := _select(part, w)) is not None}
        chosen[part] = [e for e in exercises(part) if e.name in picked]
    for w in wanted or []:
        if not any(_select(part, w) for part in parts):
            listing = "; ".join(f"{part}: " + ", ".join(f"{i} {e.name}" for i, e in enumerate(exercises(part), 1))
                                for part in parts)
            raise ValueError(f"exercise must be the name or number of an exercise of {', '.join(parts)}, "
                             f"got {w!r} ({listing})")
    return chosen


def report(parts: list[str], impl: str, results: dict[tuple[str, str], Result],
           only: list[str] | None = None) -> bool:
    """Print one table per part (only the rows of the exercises only names or numbers, when given);
    return True when every exercise shown passed (optional ones not started do not count).
    "Next" is the first exercise that counts against it."""
    chosen = resolve(parts, only)
    all_passed = True
    first: tuple[str, int, Exercise, Result] | None = None
    for part in parts:
        print(f"\n{part} ({impl}) — guide: mlab_tfs/{part}/GUIDE.md")
        print(f"  {'#':>2}  {'exercise':<34} {'tests':>7}   status")
        for i, ex in enumerate(exercises(part), start=1):
            if ex not in chosen[part]:
                continue
            result = results.get((part, ex.name), Result())
            done = f"{result.passed}/{result.total}"
            title = f"{ex.title} (optional)" if ex.optional else ex.title
            print(f"  {i:>2}  {title:<34} {done:>7}   {_paint(MARKS[result.status], result.status)}")
            if counts_against(ex, result):
                all_passed = False
                if first is None:
                    first = (part, i, ex, result)
    if first is None:
        skipped = [ex.title for part in parts for ex in chosen[part]
                   if results.get((part, ex.name), Result()).status != "passed"]
        if only:  # some exercises only: say which, and where the course goes on
            shown = [ex for part in parts for ex in chosen[part]]
            print(f"\n{'This exercise passes' if len(shown) == 1 else 'These exercises pass'}: "
                  f"{', '.join(ex.title for ex in shown)}.")
            after = _after(parts, chosen)
            if after is not None:
                part, i, ex = after
                print(f"Next: {ex.title} — {ex.guide_link(part)}\n  run it: {_commands(part, i, ex, impl)}")
            return all_passed
        print("\nAll exercises pass." if not skipped else
              f"\nAll required exercises pass (optional, not started: {', '.join(skipped)}).")
        return all_passed
    part, i, ex, result = first
    print(f"\nNext: {ex.title} — {ex.guide_link(part)}")
    if result.first_failure:
        print(f"  first failing test: {result.first_failing_test}")
        print("  " + result.first_failure.replace("\n", "\n  "))
    print(f"  run just this exercise: {_commands(part, i, ex, impl)}")
    return all_passed


def _commands(part: str, number: int, ex: Exercise, impl: str) -> str:
    """The two commands that run one exercise's tests: check's, and pytest's."""
    solution = " --solution" if impl == "solution" else ""
    return (f"mlab-tfs check {part} --exercise {number}{solution}"
            f"   (or: pytest --impl={impl} mlab_tfs/{part} --exercise {ex.name})")


def _after(parts: list[str], chosen: dict[str, list[Exercise]]) -> tuple[str, int, Exercise] | None:
    """(part, number, exercise) of the first exercise after the last one chosen, in course order."""
    last = max(((k, i) for k, part in enumerate(parts) for i, ex in enumerate(exercises(part))
                if ex in chosen[part]), default=None)
    if last is None:
        return None
    k, i = last
    for part in parts[k:]:
        exs = exercises(part)
        start = i + 1 if part == parts[k] else 0
        if start < len(exs):
            return part, start + 1, exs[start]
    return None


def check(parts: list[str] | None, solution: bool, verbose: bool = False, only: list[str] | None = None) -> bool:
    """Run and report, as ``mlab-tfs check [PART...] [--exercise E] [--solution]`` does. A part
    named twice is checked once."""
    parts = list(dict.fromkeys(parts or PARTS))
    resolve(parts, only)  # a wrong name is an error before minutes of tests
    impl = "solution" if solution else "student"
    return report(parts, impl, run(parts, impl, verbose, only=only), only=only)
