"""The pytest plugin behind the student/solution switch (registered as an entry point).

- ``pytest --impl=student`` (or ``MLAB_TFS_IMPL=student``) runs every test against
  ``mlab_tfs/<part>/student.py``; the default is the solution, so CI tests the solutions.
- ``@pytest.mark.exercise("layer_norm")`` ties a test to an exercise of its part, so that
  ``mlab-tfs check`` can show progress per exercise; unknown names are an error.
- ``pytest --exercise layer_norm`` runs that exercise's tests and no others (``-k layer_norm``
  also matches other tests whose names contain the word, such as a config field's).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

IMPLS = ("solution", "student")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mlab_tfs")
    group.addoption(
        "--impl",
        choices=IMPLS,
        default=os.environ.get("MLAB_TFS_IMPL", "solution"),
        help="which implementation the course tests import: solution (default) or student",
    )
    group.addoption(
        "--exercise",
        action="append",
        default=[],
        metavar="NAME",
        help="run only the tests of this exercise (repeatable), as named by mlab-tfs check",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "exercise(name): the course exercise this test checks")
    config.addinivalue_line("markers", "solution_only: checks a feature only the solution has")


def pytest_report_header(config: pytest.Config) -> str:
    return f"mlab_tfs: testing the {config.getoption('impl')} implementations"


def impl_name(config: pytest.Config) -> str:
    return config.getoption("impl")


def load_impl(config: pytest.Config, part: str) -> ModuleType:
    """The module under test for a part: mlab_tfs.<part>.solution or mlab_tfs.<part>.student."""
    return importlib.import_module(f"mlab_tfs.{part}.{impl_name(config)}")


def under_test(config: pytest.Config, cls: type) -> type:
    """The class of the implementation under test named as cls, a class of a part's solution
    (mlab_tfs.gpt2.solution.GPT2Model -> mlab_tfs.gpt2.student.GPT2Model with --impl=student)."""
    part = cls.__module__.split(".")[1]
    return getattr(load_impl(config, part), cls.__name__)


def part_of(item: pytest.Item) -> str | None:
    """mlab_tfs.<part>.tests.test_x -> <part>."""
    module = getattr(item, "module", None)
    parts = (module.__name__ if module else "").split(".")
    if len(parts) >= 3 and parts[0] == "mlab_tfs" and parts[2] == "tests":
        return parts[1]
    return None


def exercise_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("exercise")
    return marker.args[0] if marker and marker.args else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from mlab_tfs.testing.exercises import exercises

    student = impl_name(config) == "student"
    known: dict[str, set[str]] = {}
    for item in items:
        if student and item.get_closest_marker("solution_only"):
            item.add_marker(pytest.mark.skip(reason="checks a feature of the solution only"))
        name, part = exercise_of(item), part_of(item)
        if name is None:
            continue
        if part not in known:
            known[part] = {e.name for e in exercises(part)}
        if name not in known[part]:
            raise pytest.UsageError(f"{item.nodeid}: unknown exercise {name!r} for part {part!r}")
        item.extra_keyword_matches.add(name)  # so that `pytest -k layer_norm` selects the exercise
    wanted = set(config.getoption("exercise"))
    if wanted:
        from mlab_tfs.testing.exercises import PARTS

        every = {e.name for part in PARTS for e in exercises(part)}
        unknown = sorted(wanted - every)
        if unknown:
            raise pytest.UsageError(f"--exercise: no exercise is named {', '.join(map(repr, unknown))}; the "
                                    f"names are those mlab-tfs check shows, e.g. {sorted(every)[:4]}")
        kept = [item for item in items if exercise_of(item) in wanted]
        config.hook.pytest_deselected(items=[item for item in items if exercise_of(item) not in wanted])
        items[:] = kept
