"""Given classes that run with the learner's pieces.

The layer, attention wrapper and models of DeBERTa are given (imported from the solution),
but they build the exercises: ``DebertaV2Layer`` makes a ``DebertaV2Attention``, which
makes a ``DisentangledSelfAttention``... Imported as they are, they would build the
solution's versions. ``given`` returns copies of such classes whose methods are the
solution's code, unchanged, but look global names up in the namespace of student.py, so
the copy of ``DebertaV2Attention`` builds *your* ``DisentangledSelfAttention``.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def _copy_function(fn: types.FunctionType, namespace: dict[str, Any], cell: types.CellType) -> types.FunctionType:
    # Zero-argument super() reads the class from a closure cell named __class__: point it at the copy.
    closure = None
    if fn.__closure__ is not None:
        closure = tuple(cell if name == "__class__" else c for name, c in zip(fn.__code__.co_freevars, fn.__closure__))
    new = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, closure)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__doc__, new.__qualname__, new.__annotations__ = fn.__doc__, fn.__qualname__, fn.__annotations__
    new.__module__ = namespace["__name__"]
    return new


def given(*classes: type, namespace: dict[str, Any]) -> tuple[type, ...]:
    """Copies of the given classes, in order, bound to ``namespace`` (pass ``globals()``).

    Names are looked up in ``namespace`` first and then in the module that defined the class,
    so private helpers of the solution still resolve. Each copy is added to the namespace.
    """
    source = vars(sys.modules[classes[0].__module__])
    lookup = {**source, **namespace}
    copies = []
    for cls in classes:
        cell = types.CellType()
        body = {}
        for name, value in vars(cls).items():
            if name in ("__dict__", "__weakref__"):
                continue
            if isinstance(value, types.FunctionType):
                value = _copy_function(value, lookup, cell)
            elif isinstance(value, staticmethod) and isinstance(value.__func__, types.FunctionType):
                value = staticmethod(_copy_function(value.__func__, lookup, cell))
            body[name] = value
        body["__module__"] = namespace["__name__"]
        copy = type(cls)(cls.__name__, cls.__bases__, body)
        cell.cell_contents = copy
        lookup[cls.__name__] = copy
        namespace[cls.__name__] = copy
        copies.append(copy)
    return tuple(copies)
