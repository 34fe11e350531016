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
