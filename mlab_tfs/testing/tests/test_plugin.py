"""The plugin's --exercise option: exactly one exercise's tests, named as mlab-tfs check names them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _collect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_exercise_selects_its_tests_and_no_others():
    """causal_mask has 5 tests (4 shapes and the device); -k causal_mask also picks up tests
    whose names merely contain the word."""
    run = _collect("mlab_tfs/gpt2/tests/test_components.py", "--exercise", "causal_mask")
    assert run.returncode == 0, run.stdout + run.stderr
    ids = [line for line in run.stdout.splitlines() if "::" in line]
    assert ids == [
        "mlab_tfs/gpt2/tests/test_components.py::test_causal_mask[1-1]",
        "mlab_tfs/gpt2/tests/test_components.py::test_causal_mask[5-5]",
        "mlab_tfs/gpt2/tests/test_components.py::test_causal_mask[2-6]",
        "mlab_tfs/gpt2/tests/test_components.py::test_causal_mask[1-7]",
        "mlab_tfs/gpt2/tests/test_components.py::test_causal_mask_device",
    ], ids


def test_an_unknown_exercise_is_a_usage_error_naming_it():
    run = _collect("mlab_tfs/gpt2/tests/test_components.py", "--exercise", "causal")
    assert run.returncode == 4, run.stdout + run.stderr
    assert "--exercise: no exercise of gpt2 is named or numbered 'causal'" in run.stdout + run.stderr


def test_an_exercise_by_its_number_in_its_part():
    by_number = _collect("mlab_tfs/gpt2/tests/test_components.py", "--exercise", "4")
    by_name = _collect("mlab_tfs/gpt2/tests/test_components.py", "--exercise", "causal_mask")
    assert by_number.returncode == 0, by_number.stdout + by_number.stderr
    ids = [line for line in by_number.stdout.splitlines() if "::" in line]
    assert ids == [line for line in by_name.stdout.splitlines() if "::" in line] and len(ids) == 5, ids
    too_far = _collect("mlab_tfs/gpt2/tests/test_components.py", "--exercise", "12")
    assert too_far.returncode == 4 and "gpt2 has 11" in too_far.stdout + too_far.stderr


class _Threads:
    """Records torch's thread count while each test runs."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def pytest_runtest_call(self, item) -> None:
        import torch

        self.seen.append(torch.get_num_threads())


def test_a_student_failure_shows_the_learners_line_not_library_frames(capsys, monkeypatch):
    """A learner's typo raises AttributeError from inside torch's nn.Module.__getattr__, called
    through torch's two module-call wrappers: the report keeps the test's line and the learner's
    line, and drops the three torch frames. In one process the tests run on one torch thread,
    and the caller's thread count is back afterwards."""
    import pytest
    import torch

    from mlab_tfs.testing.mistakes import as_student, planted_source

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    source = planted_source("gpt2", [("torch.sqrt(var + self.eps))  # eps inside the sqrt",
                                      "torch.sqrt(var + self.epss))")])
    threads = _Threads()
    with as_student("gpt2", source):
        code = pytest.main([str(ROOT / "mlab_tfs/gpt2/tests/test_components.py"), "--impl=student",
                            "--exercise=layer_norm", "-p", "no:cacheprovider", "--maxfail=1", "-W", "ignore"],
                           plugins=[threads])
    out = capsys.readouterr().out
    assert code == 1, out
    failure = out[out.index("FAILURES"):out.index("short test summary")]
    frames = [line for line in failure.splitlines() if line.startswith("mlab_tfs/") or "site-packages" in line
              or line.startswith("/")]
    files = [f.split(":")[0] for f in frames]
    assert len(files) == 2 and files[0].endswith("mlab_tfs/gpt2/tests/test_components.py"), failure
    assert files[1].endswith("mlab_tfs/gpt2/student_planted.py"), failure  # (absolute: it is not on disk)
    assert "self.epss" in failure and "E   AttributeError: 'LayerNorm' object has no attribute 'epss'" in failure
    assert "torch/nn/modules/module.py" not in out
    assert threads.seen and set(threads.seen) == {1}
    assert torch.get_num_threads() == 2


def test_full_trace_keeps_the_library_frames(capsys, monkeypatch):
    import pytest

    from mlab_tfs.testing.mistakes import as_student, planted_source

    source = planted_source("gpt2", [("torch.sqrt(var + self.eps))  # eps inside the sqrt",
                                      "torch.sqrt(var + self.epss))")])
    with as_student("gpt2", source):
        code = pytest.main([str(ROOT / "mlab_tfs/gpt2/tests/test_components.py"), "--impl=student",
                            "--exercise=layer_norm", "-p", "no:cacheprovider", "--maxfail=1", "-W", "ignore",
                            "--full-trace"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "torch/nn/modules/module.py" in out
