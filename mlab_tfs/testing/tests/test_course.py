"""The course holds together: stubs mirror solutions, every stub points to its guide section,
every exercise has tests. These check the repository, not a learner's code, so they are
skipped under --impl=student."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import subprocess
from pathlib import Path

import pytest

from mlab_tfs.fused import FusedOps
from mlab_tfs.testing.exercises import PARTS, exercises

PACKAGE = Path(__file__).resolve().parents[2]
REPO = PACKAGE.parent


@pytest.fixture(autouse=True)
def _repository_only(pytestconfig):
    if pytestconfig.getoption("impl") == "student":
        pytest.skip("checks the course itself, not your implementation")


def anchors(markdown: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    out = set()
    for line in markdown.read_text().splitlines():
        if m := re.match(r"^#{1,6}\s+(.*)$", line):
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def public_api(module) -> dict[str, object]:
    return {
        name: obj
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module.__name__
    }


def methods(cls) -> dict[str, object]:
    return {
        name: fn for name, fn in vars(cls).items()
        if inspect.isfunction(fn) and (not name.startswith("_") or name == "__init__")
    }


@pytest.mark.parametrize("part", PARTS)
def test_student_api_equals_solution(part):
    solution = importlib.import_module(f"mlab_tfs.{part}.solution")
    student = importlib.import_module(f"mlab_tfs.{part}.student")
    problems = []
    for name, obj in public_api(solution).items():
        theirs = getattr(student, name, None)
        if theirs is None:
            problems.append(f"student.py lacks {name}")
            continue
        if inspect.isclass(obj):
            if not inspect.isclass(theirs):
                problems.append(f"{name} is a class in solution.py but not in student.py")
                continue
            for meth, fn in methods(obj).items():
                other = vars(theirs).get(meth)
                if other is None:
                    problems.append(f"student.py's {name} lacks {meth}")
                elif str(inspect.signature(fn)) != str(inspect.signature(other)):
                    problems.append(f"{name}.{meth}: solution {inspect.signature(fn)}, student {inspect.signature(other)}")
            # FusedOps gives the solution's modules their fused-kernel switch (mlab_tfs.fused): not
            # part of what a learner writes.
            ours_bases = [b.__name__ for b in obj.__mro__ if b.__module__.startswith("mlab_tfs") and b is not FusedOps]
            their_bases = [b.__name__ for b in theirs.__mro__ if b.__module__.startswith("mlab_tfs")]
            if ours_bases != their_bases:  # torch's own bases may differ (nn.LayerNorm vs nn.Module)
                problems.append(f"{name}: the course's base classes differ: {ours_bases} vs {their_bases}")
        elif str(inspect.signature(obj)) != str(inspect.signature(theirs)):
            problems.append(f"{name}: solution {inspect.signature(obj)}, student {inspect.signature(theirs)}")
    assert not problems, "student.py has drifted from solution.py:\n  " + "\n  ".join(problems)


def _pristine(path: Path) -> bool:
    if os.environ.get("MLAB_TFS_STUB_CHECK") == "1":  # force the check, e.g. while writing new stubs
        return True
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", str(path)], cwd=REPO, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == ""


def _stub_message(fn: ast.FunctionDef) -> str | None:
    """The message of a function whose body is (a docstring and) raise NotImplementedError("...")."""
    body = fn.body[1:] if fn.body and isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) else fn.body
    if len(body) != 1 or not isinstance(body[0], ast.Raise):
        return None
    exc = body[0].exc
    if (isinstance(exc, ast.Call) and getattr(exc.func, "id", None) == "NotImplementedError"
            and len(exc.args) == 1 and isinstance(exc.args[0], ast.Constant)):
        return exc.args[0].value
    return None


def _public_functions(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            yield node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and (not item.name.startswith("_") or item.name == "__init__"):
                    yield f"{node.name}.{item.name}", item


@pytest.mark.parametrize("part", PARTS)
def test_every_stub_raises_with_a_pointer_to_the_guide(part):
    path = PACKAGE / part / "student.py"
    if not _pristine(path):
        pytest.skip(f"{path.name} has local changes: this check is for the untouched stubs")
    guide = anchors(PACKAGE / part / "GUIDE.md")
    sections = {e.section: (i, e) for i, e in enumerate(exercises(part), start=1)}
    pattern = re.compile(rf"^Exercise (\d+) \((.+)\): see mlab_tfs/{part}/GUIDE\.md#([\w-]+)$")
    problems, pointed = [], set()
    student = importlib.import_module(f"mlab_tfs.{part}.student")
    for qualname, fn in _public_functions(ast.parse(path.read_text())):
        message = _stub_message(fn)
        if message is None:
            problems.append(f"{qualname} is not a stub (its body should only raise NotImplementedError)")
            continue
        m = pattern.match(message)
        if not m or m.group(3) not in sections or m.group(3) not in guide:
            problems.append(f"{qualname}: message {message!r} does not point to an exercise section of GUIDE.md")
            continue
        number, exercise = sections[m.group(3)]
        if int(m.group(1)) != number:
            problems.append(f"{qualname}: says exercise {m.group(1)}, but {exercise.section} is exercise {number}")
        pointed.add(m.group(3))
        # And it really raises that, when called.
        owner, _, name = qualname.rpartition(".")
        target = getattr(student, qualname) if not owner else getattr(getattr(student, owner), name)
        # The stub itself, inside the given boundary (mlab_tfs.surface wraps every model forward).
        target = inspect.unwrap(target)
        params = inspect.signature(target).parameters.values()
        args = [None for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        kwargs = {p.name: None for p in params if p.kind == p.KEYWORD_ONLY}
        if owner:
            args[0] = object.__new__(getattr(student, owner))
        with pytest.raises(NotImplementedError) as info:
            target(*args, **kwargs)
        assert str(info.value) == message
    assert not problems, "\n  ".join(["stubs that don't point to the guide:", *problems])


@pytest.mark.parametrize("part", PARTS)
def test_every_exercise_has_a_guide_section_and_tests(part, pytestconfig):
    guide = anchors(PACKAGE / part / "GUIDE.md")
    missing = [e.section for e in exercises(part) if e.section not in guide]
    assert not missing, f"GUIDE.md of {part} has no section for {missing}"
    source = "\n".join(p.read_text() for p in (PACKAGE / part / "tests").glob("test_*.py"))
    untested = [e.name for e in exercises(part) if f'exercise("{e.name}")' not in source]
    assert not untested, f"exercises without tests: {untested}"


def test_readme_links_every_guide():
    readme = (REPO / "README.md").read_text()
    for part in PARTS:
        assert f"mlab_tfs/{part}/GUIDE.md" in readme, f"README.md does not link the {part} guide"
