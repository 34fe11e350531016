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

# Other ways of writing a mistake, which compute something else: {name: [edits, ...]}.
VARIANTS = {
    # reordered, but with each prompt's beam index and not its row in the (B * nb) cache
    "cache_not_reordered": [[("        past = reorder_cache(past, (beam_src + batch_offset).view(-1))",
                              "        past = reorder_cache(past, beam_src.view(-1))")]],
}


@functools.cache
def mistaken(name: str, variant: int = 0) -> types.ModuleType:
    """The solution with mistake name written in: variant 0 is its plant, 1... its VARIANTS."""
    edits = PLANTS[name] if variant == 0 else VARIANTS[name][variant - 1]
    module = types.ModuleType(f"mlab_tfs.sampling._mistaken_{name}_{variant}")
    module.__package__ = "mlab_tfs.sampling"
    filename = str(PACKAGE_DIR / "sampling" / f"solution_with_{name}_{variant}.py")
    exec(compile(planted_source("sampling", edits), filename, "exec"), module.__dict__)
    return module


def variants(name: str) -> list[types.ModuleType]:
    """Every written form of the mistake, as modules."""
    return [mistaken(name, v) for v in range(1 + len(VARIANTS.get(name, [])))]
