"""What each catalogued mistake computes, for the tests' diagnoses.

``mistaken(name)`` is the solution with that mistake written in (the edits of tests/plants.py),
as a module: running it on a test's inputs gives the output the mistake produces, which the
test compares with the learner's output, whatever the learner's code looks like.
"""

from __future__ import annotations

import functools
import types

from mlab_tfs.testing.mistakes import PACKAGE_DIR, planted_source

from .plants import PLANTS


@functools.cache
def mistaken(name: str) -> types.ModuleType:
    module = types.ModuleType(f"mlab_tfs.sampling._mistaken_{name}")
    module.__package__ = "mlab_tfs.sampling"
    filename = str(PACKAGE_DIR / "sampling" / f"solution_with_{name}.py")
    exec(compile(planted_source("sampling", PLANTS[name]), filename, "exec"), module.__dict__)
    return module
