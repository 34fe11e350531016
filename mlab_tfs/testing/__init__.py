"""What the course's tests are made of, and ``check`` for a notebook.

``from mlab_tfs.testing import check; check("gpt2")`` runs the same tests and prints the same
table as ``mlab-tfs check gpt2``, in the notebook's own process.
"""

from __future__ import annotations

import sys


def check(*parts: str, exercise: str | int | list[str | int] | None = None, solution: bool = False,
          verbose: bool = False) -> bool:
    """Run the tests of parts (default: every part) against your code and print the progress
    table with the diagnosis of the first failure, as ``mlab-tfs check`` does.

    exercise: one exercise (or a list or tuple), by name ("attention") or by its number in the table (5).
    solution: check the solutions instead. verbose: show pytest's own output too.
    Returns True when every exercise shown passes.

    Each call imports your ``student.py`` files afresh, so an edit is picked up without restarting
    the kernel. Raises ValueError for an unknown part or exercise, TypeError for an argument of
    another type (a part that is not a str, an exercise that is not a str or an int, a solution or
    verbose that is not a bool).
    """
    from mlab_tfs.testing.exercises import PARTS
    from mlab_tfs.testing.progress import check as run_check

    for part in parts:
        if not isinstance(part, str):
            raise TypeError(f"parts must be given one by one as strings, check('gpt2', 'bert'), got "
                            f"{type(part).__name__} {part!r}")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"parts must be among {PARTS}, got {', '.join(map(repr, unknown))}")
    for name, value in (("solution", solution), ("verbose", verbose)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    many = exercise if isinstance(exercise, (list, tuple)) else [] if exercise is None else [exercise]
    for e in many:
        if isinstance(e, bool) or not isinstance(e, (str, int)):
            raise TypeError(f"exercise must be an exercise's name (str) or number (int), or a list of them, got "
                            f"{type(e).__name__} {e!r}")
    wanted = None if exercise is None else [str(e) for e in many]
    if wanted == []:
        raise ValueError("exercise must name at least one exercise, got an empty list (None: every exercise)")
    forget_students()
    try:
        return run_check(list(parts) or None, solution=solution, verbose=verbose, only=wanted)
    except SystemExit as e:  # pytest could not run (a syntax error in student.py): say it, don't exit
        if isinstance(e.code, str):
            raise RuntimeError(e.code) from None
        raise


def forget_students() -> None:
    """Drop every imported ``mlab_tfs.<part>.student`` so that the next import reads the file again."""
    for name in [n for n in sys.modules if n.startswith("mlab_tfs.") and n.endswith(".student")]:
        package = sys.modules.get(name.rsplit(".", 1)[0])
        del sys.modules[name]
        if package is not None:
            package.__dict__.pop("student", None)
