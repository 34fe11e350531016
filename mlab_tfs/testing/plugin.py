"""The pytest plugin behind the student/solution switch (registered as an entry point).

- ``pytest --impl=student`` (or ``MLAB_TFS_IMPL=student``) runs every test against
  ``mlab_tfs/<part>/student.py``; the default is the solution, so CI tests the solutions.
- ``@pytest.mark.exercise("layer_norm")`` ties a test to an exercise of its part, so that
  ``mlab-tfs check`` can show progress per exercise; unknown names are an error.
- The tests of an exercise run inside ``mlab_tfs.fused.hand_written()``: the solution's
  modules (and a learner's copy of them, as the catalogue's plants are) run their hand-written
  code there, the code the exercise is about, rather than the fused kernels of their default path.
- ``pytest --exercise layer_norm`` (or ``--exercise 1``, the number ``mlab-tfs check`` shows, counted
  in each part) runs that exercise's tests and no others (``-k layer_norm`` would also match other
  tests whose names contain the word, such as a later exercise's).
- With ``--impl=student`` failures are shown with ``--tb=short`` unless ``--tb`` is given, and
  without the frames of code the learner neither wrote nor called (torch's module-call
  wrappers, einops, the standard library, the model-surface wrappers of ``mlab_tfs/surface.py``)
  unless ``--full-trace`` is given: the test's line, the learner's line and the diagnosis.
- Without a GPU, ``TRITON_INTERPRET=1`` (unless set): the hand-written Triton kernels
  (``mlab_tfs.decode_kernels``) run in Triton's interpreter on CPU tensors.
- Under pytest-xdist each worker gets an equal share of the CPU cores as torch threads (unless
  ``OMP_NUM_THREADS`` says otherwise): N workers of all the cores each would fight for them.
  In one process (no ``-n``: ``mlab-tfs check --exercise``, a notebook's ``check``) torch gets
  one thread for the session, restored afterwards: the course's tensors are small, and on a
  busy 2-core machine a second thread made a run several times slower (measured: 77 s against
  33 s for GPT-2's exercise 9), while using three times the CPU.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest

IMPLS = ("solution", "student")
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # mlab_tfs/
_MACHINERY = (PACKAGE_DIR / "surface.py",)  # wrappers around the learner's __init__ and forward
_THREADS_BEFORE = "_mlab_tfs_threads_before"
EXERCISE_PROPERTY = "mlab_tfs_exercise"  # a test report's user property: "<part>:<exercise>"


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
        metavar="NAME_OR_NUMBER",
        help="run only the tests of this exercise (repeatable): its name or its number in its part, "
             "as mlab-tfs check shows them",
    )


def _triton_interpreter_without_gpu() -> None:
    """Without a GPU, Triton's interpreter for ``mlab_tfs.decode_kernels``' tests: it must be
    chosen before triton is imported, which torch.compile does early (the kernels' module
    can set it only when it imports triton first)."""
    import sys

    import torch

    if "triton" not in sys.modules and not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "exercise(name): the course exercise this test checks")
    config.addinivalue_line("markers", "solution_only: checks a feature only the solution has")
    _triton_interpreter_without_gpu()
    if impl_name(config) == "student" and getattr(config.option, "tbstyle", None) == "auto":
        config.option.tbstyle = "short"
    if os.environ.get("OMP_NUM_THREADS"):
        return  # the user's choice
    workerinput = getattr(config, "workerinput", None)  # set in an xdist worker's own session only
    if workerinput is not None:
        import torch

        workers = int(workerinput.get("workercount") or os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
        torch.set_num_threads(max(1, cores() // workers))
    elif not getattr(config.option, "numprocesses", None):  # (xdist's controller runs no test)
        # One process, perhaps a session inside another (a notebook's check, the catalogue's
        # plants): one thread for the session, the caller's count back afterwards.
        import torch

        setattr(config, _THREADS_BEFORE, torch.get_num_threads())
        torch.set_num_threads(1)


def cores() -> int:
    """The CPU cores this process may run on (its affinity, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pytest_unconfigure(config: pytest.Config) -> None:
    before = getattr(config, _THREADS_BEFORE, None)
    if before is not None:  # a notebook's process goes on after check()
        import torch

        torch.set_num_threads(before)


def _shown(filename: str) -> bool:
    """Whether a frame of this file is the learner's, a test's or the course's (not a library's)."""
    try:
        path = Path(filename).resolve()
    except (TypeError, OSError):
        return True
    return path.is_relative_to(PACKAGE_DIR) and path not in _MACHINERY


def _drop_library_frames(tb) -> bool:
    """Unlink, from a traceback's chain, the frames after the first course frame (the test's)
    that are not _shown; True when it dropped any. The chain itself is edited (``tb_next`` is
    writable) because pytest rebuilds its traceback from it when it cuts at the test."""
    chain = []
    while tb is not None:
        chain.append(tb)
        tb = tb.tb_next
    first = next((i for i, t in enumerate(chain) if _shown(t.tb_frame.f_code.co_filename)), None)
    if first is None:  # a failure wholly inside a library keeps its frames
        return False
    kept = chain[:first + 1] + [t for t in chain[first + 1:] if _shown(t.tb_frame.f_code.co_filename)]
    if len(kept) == len(chain):
        return False
    for a, b in zip(kept, kept[1:]):
        a.tb_next = b
    kept[-1].tb_next = None
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    with _as_written(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    with _as_written(item):
        yield


def _as_written(item: pytest.Item):
    """An exercise's tests check the code a learner writes: the solution's (and a planted
    copy's) modules run their hand-written code there, not the fused kernels of their default
    path (mlab_tfs.fused). Other tests run the default."""
    if exercise_of(item) is None:
        return contextlib.nullcontext()
    from mlab_tfs.fused import hand_written

    return hand_written()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> None:
    excinfo = call.excinfo
    if excinfo is None or impl_name(item.config) != "student" or item.config.getoption("fulltrace", False):
        return
    if _drop_library_frames(excinfo.tb):
        excinfo.traceback = type(excinfo.traceback)(excinfo.tb)


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
        # Reports carry it, so that mlab-tfs check files outcomes from pytest-xdist's workers too.
        item.user_properties.append((EXERCISE_PROPERTY, f"{part}:{name}"))
    wanted = config.getoption("exercise")
    if wanted:
        from mlab_tfs.testing.exercises import PARTS, select

        parts = sorted({p for p in map(part_of, items) if p in PARTS}) or PARTS
        for w in wanted:
            if not any(select(p, w) for p in parts):
                names = sorted({e.name for p in parts for e in exercises(p)})
                counts = ", ".join(f"{p} has {len(exercises(p))}" for p in parts)
                raise pytest.UsageError(
                    f"--exercise: no exercise of {', '.join(parts)} is named or numbered {w!r}; "
                    f"the names are those mlab-tfs check shows ({', '.join(names[:6])}, ...), the numbers "
                    f"count from 1 in each part ({counts})")

        def chosen(item: pytest.Item) -> bool:
            name, part = exercise_of(item), part_of(item)
            return name is not None and any((e := select(part, w)) is not None and e.name == name for w in wanted)

        kept = [item for item in items if chosen(item)]
        config.hook.pytest_deselected(items=[item for item in items if not chosen(item)])
        items[:] = kept
