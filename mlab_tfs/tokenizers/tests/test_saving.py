"""save_pretrained of both tokenizers is atomic: a writer that fails midway (full disk), a
failure at the final swap, or a process killed with SIGKILL during the save all leave the
folder with the whole old tokenizer (same ids), beside the model files another writer put
there; the next save then succeeds and tidies up."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mlab_tfs
from mlab_tfs import assets, durable

SAMPLE = "Héllo, Wörld! 中文東京 <|endoftext|> don't the end<|pad|>"
MODEL_FILES = {"config.json": '{"n_layer": 2}', "model.safetensors": "weights, written by the model's save"}


def _pair(tok, kind: str):
    """(old, new) tokenizers of one kind whose ids on SAMPLE differ."""
    if kind == "bert":
        old = tok.WordPieceTokenizer.from_pretrained(assets.minilm_path())
        new = tok.WordPieceTokenizer.from_pretrained(assets.minilm_path(), do_lower_case=False,
                                                     tokenize_chinese_chars=False)
    else:
        text = assets.shakespeare_text()
        old = tok.ByteLevelBPETokenizer.train([text[:6000]], 300, special_tokens=["<|endoftext|>", "<|pad|>"])
        new = tok.ByteLevelBPETokenizer.train([text[6000:12000]], 320, special_tokens=["<|pad|>"])
    return old, new


def _ids(tokenizer) -> list[int]:
    if hasattr(tokenizer, "merges"):
        return tokenizer.encode(SAMPLE, allowed_special="all")
    return tokenizer.encode(SAMPLE)


def _load(tok, kind: str, folder: Path):
    cls = tok.WordPieceTokenizer if kind == "bert" else tok.ByteLevelBPETokenizer
    return cls.from_pretrained(folder)


def _old_folder(tmp_path: Path, old) -> Path:
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    for name, text in MODEL_FILES.items():
        (folder / name).write_text(text)
    old.save_pretrained(folder)
    return folder


def _assert_whole_old(tok, kind, folder, old, written):
    __tracebackhide__ = True  # a failure shows the test's line and the diagnosis
    again = _load(tok, kind, folder)
    assert _ids(again) == _ids(old), "the folder must load the old tokenizer, id for id"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == written, "not one byte of the old folder may change"
    leftovers = [p.name for p in folder.parent.iterdir() if p.name != folder.name]
    assert leftovers == [], f"a failed save must clean up after itself: {leftovers}"


@pytest.mark.solution_only
@pytest.mark.parametrize("kind", ["bert", "bpe"])
def test_save_writes_transformers_files_and_keeps_other_writers_files(tok, kind, tmp_path):
    old, new = _pair(tok, kind)
    assert _ids(old) != _ids(new)
    folder = _old_folder(tmp_path, old)
    (folder / "tokenizer.json").write_text("{}")  # a stale fast-tokenizer file transformers would prefer
    paths = new.save_pretrained(folder)
    names = ["vocab.json", "merges.txt"] if kind == "bpe" else ["vocab.txt"]
    names.append("tokenizer_config.json")
    assert paths == [folder / n for n in names]
    assert sorted(p.name for p in folder.iterdir()) == sorted([*names, *MODEL_FILES])
    assert all((folder / n).read_text() == t for n, t in MODEL_FILES.items())
    assert _ids(_load(tok, kind, folder)) == _ids(new)


@pytest.mark.solution_only
@pytest.mark.parametrize("kind, n_files", [("bert", 2), ("bpe", 3)])
def test_writer_failing_midway_leaves_the_old_tokenizer(tok, kind, n_files, tmp_path, monkeypatch):
    """The k-th file write of the save writes half its text, then the disk is full."""
    old, new = _pair(tok, kind)
    folder = _old_folder(tmp_path, old)
    written = {p.name: p.read_bytes() for p in folder.iterdir()}
    real_write_text = pathlib.Path.write_text
    for fail_at in range(1, n_files + 1):
        calls = []

        def write_text(self, data, *args, _fail_at=fail_at, _calls=calls, **kwargs):
            _calls.append(self.name)
            if len(_calls) == _fail_at:
                real_write_text(self, data[: len(data) // 2], *args, **kwargs)
                raise OSError(28, "No space left on device")
            return real_write_text(self, data, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "write_text", write_text)
        with pytest.raises(OSError, match="No space left"):
            new.save_pretrained(folder)
        monkeypatch.setattr(pathlib.Path, "write_text", real_write_text)
        assert len(calls) == fail_at
        _assert_whole_old(tok, kind, folder, old, written)
    new.save_pretrained(folder)  # nothing fails: the new one, whole, and the model files kept
    assert _ids(_load(tok, kind, folder)) == _ids(new)
    assert all((folder / n).read_text() == t for n, t in MODEL_FILES.items())


@pytest.mark.solution_only
@pytest.mark.parametrize("kind", ["bert", "bpe"])
def test_failure_at_the_swap_leaves_the_old_tokenizer(tok, kind, tmp_path, monkeypatch):
    old, new = _pair(tok, kind)
    folder = _old_folder(tmp_path, old)
    written = {p.name: p.read_bytes() for p in folder.iterdir()}

    def exchange(a, b):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(durable, "_exchange", exchange)
    with pytest.raises(OSError, match="Input/output error"):
        new.save_pretrained(folder)
    _assert_whole_old(tok, kind, folder, old, written)


@pytest.mark.solution_only
@pytest.mark.parametrize("kind", ["bert", "bpe"])
def test_save_killed_midway_leaves_the_old_tokenizer(tok, kind, tmp_path):
    """SIGKILL after the save has written its first file: the folder is the old one; the next
    save succeeds and removes the killed save's staging folder."""
    old, new = _pair(tok, kind)
    new_dir = tmp_path / "new"
    new.save_pretrained(new_dir)
    folder = _old_folder(tmp_path, old)
    written = {p.name: p.read_bytes() for p in folder.iterdir()}
    cls = "WordPieceTokenizer" if kind == "bert" else "ByteLevelBPETokenizer"
    script = textwrap.dedent(f"""
        import pathlib, time
        from {tok.__name__} import {cls}
        new = {cls}.from_pretrained({str(new_dir)!r})
        real_write_text = pathlib.Path.write_text
        def write_text(self, *args, **kwargs):
            out = real_write_text(self, *args, **kwargs)
            print("halfway", flush=True)
            time.sleep(60)
            return out
        pathlib.Path.write_text = write_text
        new.save_pretrained({str(folder)!r})
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(mlab_tfs.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "halfway"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    again = _load(tok, kind, folder)
    assert _ids(again) == _ids(old)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == written
    stale = [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert len(stale) == 1, f"the killed save leaves its hidden staging folder: {stale}"
    new.save_pretrained(folder)
    assert _ids(_load(tok, kind, folder)) == _ids(new)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []
