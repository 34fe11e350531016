"""Every snippet of the README, benchmarks/README.md and the guides runs as written, offline.

- Each fenced ```python block runs in a fresh namespace, in a temporary working folder, with
  HF_HUB_OFFLINE=1 (so a snippet that needs the hub fails here, as it would for a learner
  offline). Blocks not meant to run (a signature, pseudo-code, output) use another fence
  (```text), or are indented formula blocks.
- ```ipython blocks (notebook cells: IPython's %magics) are compiled without their magics.
- Every ``mlab-tfs ...`` line of a ```bash / ```sh / ```console block (and ``python -m
  mlab_tfs.cli ...``) is parsed with the real parser, so a renamed flag breaks this test.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "mlab_tfs").glob("*/GUIDE.md"))]
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.S | re.M)
SHELL = {"bash", "sh", "console", "shell"}


def blocks(path: Path) -> list[tuple[str, int, str]]:
    """(language, line number, code) of every fenced block of a markdown file, dedented."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        indent = len(m.group("indent"))
        body = "".join(line[indent:] for line in m.group("body").splitlines(keepends=True))
        out.append((m.group("lang"), text.count("\n", 0, m.start()) + 1, body))
    return out


def _cases(langs: set[str]):
    return [pytest.param(path, line, code, id=f"{path.relative_to(ROOT)}:{line}")
            for path in DOCS for lang, line, code in blocks(path) if lang in langs]


def test_the_documents_have_blocks():
    """The extraction finds the blocks (a broken pattern would make every test below vacuous)."""
    readme = [lang for lang, _, _ in blocks(ROOT / "README.md")]
    assert readme.count("python") >= 4 and readme.count("bash") >= 2 and "ipython" in readme
    assert all(lang for path in DOCS for lang, _, _ in blocks(path)), "a fence without a language: name it"


@pytest.mark.parametrize("path, line, code", _cases({"python"}))
def test_python_block_runs(path, line, code, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    import huggingface_hub.constants

    # huggingface_hub reads the variable once, when first imported (maybe before this test).
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__snippet__"}
    exec(compile(code, f"{path.relative_to(ROOT)}:{line}", "exec"), namespace)


@pytest.mark.parametrize("path, line, code", _cases({"ipython"}))
def test_notebook_block_compiles(path, line, code):
    python = "".join(ln for ln in code.splitlines(keepends=True) if not ln.lstrip().startswith(("%", "!")))
    ast.parse(python, f"{path.relative_to(ROOT)}:{line}")


def commands(code: str) -> list[list[str]]:
    """The mlab-tfs command lines of a shell block, as argument lists after the program name."""
    out = []
    for raw in code.splitlines():
        line = raw.strip().removeprefix("$ ")
        words = shlex.split(line, comments=True)
        for i, word in enumerate(words):
            if word == "mlab-tfs" or word.endswith("/mlab-tfs"):
                out.append(words[i + 1:])
                break
            if word == "mlab_tfs.cli" and i > 0 and words[i - 1] == "-m":
                out.append(words[i + 1:])
                break
    return out


def test_commands_are_found():
    assert commands('mlab-tfs sample "ROMEO:"   # a comment\n.venv/bin/mlab-tfs check gpt2\n'
                    "torchrun --nproc-per-node 2 -m mlab_tfs.cli train --config my.toml\n./setup.sh\n") == [
        ["sample", "ROMEO:"], ["check", "gpt2"], ["train", "--config", "my.toml"]]


def refusal(argv: list[str]) -> str | None:
    """Why the mlab-tfs parser refuses argv (None if it takes it)."""
    import contextlib
    import io

    from mlab_tfs.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            _, extra = build_parser().parse_known_args(argv)
    except SystemExit:
        return err.getvalue().strip() or "refused"
    return f"unrecognized arguments: {' '.join(extra)}" if extra else None


def _check_all(found: list[tuple[str, list[str]]]) -> None:
    failures = [(where, argv, why) for where, argv in found if (why := refusal(argv))]
    # `check --exercise` comes with the exercise filter of mlab_tfs.testing.progress: until this
    # copy has it, the lines that use it wait for it (any other refusal fails).
    has_exercise = refusal(["check", "--exercise", "1"]) is None
    pending = [f for f in failures if f[1][:1] == ["check"] and "--exercise" in f[1] and not has_exercise]
    real = [f for f in failures if f not in pending]
    assert not real, "\n".join(f"{where}: `mlab-tfs {shlex.join(argv)}`: {why}" for where, argv, why in real)
    if pending:
        pytest.skip(f"{len(pending)} command(s) use `mlab-tfs check --exercise`, which this copy's parser lacks")


@pytest.mark.parametrize("path, line, code", _cases(SHELL))
def test_shell_block_commands_parse(path, line, code):
    _check_all([(f"{path.relative_to(ROOT)}:{line}", argv) for argv in commands(code)])


def test_inline_commands_parse():
    """`mlab-tfs ...` in running text (between backticks) parses too; a pattern (`mlab-tfs
    <cmd>`, `mlab-tfs --debug ...`) or an error message quoted is not a command."""
    found = []
    for path in DOCS:
        for snippet in re.findall(r"`(mlab-tfs [^`]+)`", path.read_text(encoding="utf-8")):
            if "<" in snippet or "..." in snippet or ": error" in snippet:
                continue
            found.append((str(path.relative_to(ROOT)), shlex.split(snippet)[1:]))
    assert len(found) >= 10
    _check_all(found)
