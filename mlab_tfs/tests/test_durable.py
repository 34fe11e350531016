"""The durable-write primitives: a failed or killed save leaves the previous state."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlab_tfs import durable
from mlab_tfs.durable import atomic_file, atomic_folder, write_text_atomic


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.endswith(".partial"))


def test_atomic_file_replaces_and_leaves_nothing(tmp_path):
    target = tmp_path / "a.txt"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert _leftovers(tmp_path) == []


def test_atomic_file_failure_keeps_old(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_file(target) as tmp:
            tmp.write_text("half of the new")
            raise OSError("disk full")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_atomic_file_needs_its_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_text_atomic(tmp_path / "missing" / "a.txt", "x")


def test_atomic_folder_new_and_replace_carries_other_files(tmp_path):
    folder = tmp_path / "ckpt"
    with atomic_folder(folder) as staging:
        (staging / "config.json").write_text("1")
        (staging / "model-00001-of-00002.safetensors").write_text("w1")
    (folder / "tokenizer.json").write_text("tok")  # saved beside the model by another writer
    (folder / "sub").mkdir()
    (folder / "sub" / "f").write_text("kept")
    with atomic_folder(folder, drop=["model-*.safetensors"]) as staging:
        (staging / "config.json").write_text("2")
        (staging / "model.safetensors").write_text("w2")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "sub", "tokenizer.json"]
    assert (folder / "config.json").read_text() == "2"
    assert (folder / "tokenizer.json").read_text() == "tok"
    assert (folder / "sub" / "f").read_text() == "kept"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_atomic_folder_failure_midway_keeps_whole_old(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(durable, "_exchange", lambda a, b: False)
    folder = tmp_path / "ckpt"
    with atomic_folder(folder) as staging:
        (staging / "config.json").write_text("old config")
        (staging / "model.safetensors").write_text("old weights")
    with pytest.raises(OSError, match="No space left"):
        with atomic_folder(folder) as staging:
            (staging / "config.json").write_text("new config")
            raise OSError(28, "No space left on device")
    assert (folder / "config.json").read_text() == "old config"
    assert (folder / "model.safetensors").read_text() == "old weights"
    assert _leftovers(tmp_path) == []
    with atomic_folder(folder) as staging:  # and the fallback swap works when nothing fails
        (staging / "config.json").write_text("new config")
    assert (folder / "config.json").read_text() == "new config"
    assert (folder / "model.safetensors").read_text() == "old weights"


def test_atomic_folder_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        with atomic_folder(tmp_path / "f"):
            pass


def test_killed_save_leaves_old_state_and_next_save_cleans_up(tmp_path):
    """kill -9 in the middle of a save: the folder is the old one, the next save tidies."""
    folder = tmp_path / "ckpt"
    with atomic_folder(folder) as staging:
        (staging / "config.json").write_text("old config")
        (staging / "model.safetensors").write_text("old weights")
    script = textwrap.dedent(f"""
        import sys, time
        from mlab_tfs.durable import atomic_folder
        with atomic_folder({str(folder)!r}) as staging:
            (staging / "config.json").write_text("new config")
            print("halfway", flush=True)
            time.sleep(60)
            (staging / "model.safetensors").write_text("new weights")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "halfway"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert (folder / "config.json").read_text() == "old config"
    assert (folder / "model.safetensors").read_text() == "old weights"
    assert len(_leftovers(tmp_path)) == 1  # the killed process's staging folder
    with atomic_folder(folder) as staging:
        (staging / "config.json").write_text("newer config")
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("bad,error", [(None, TypeError), (3, TypeError), (b"x", TypeError), ("", ValueError),
                                       ("  ", ValueError)])
def test_atomic_folder_refuses_a_non_path(bad, error):
    with pytest.raises(error, match="folder must"):
        with atomic_folder(bad):
            pass


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_atomic_folder_into_the_working_directory(tmp_path, monkeypatch, exchange):
    """"." is a folder like any other, and the working directory follows the swap: relative
    writes after the save land in the new folder, not in the deleted old one."""
    if not exchange:
        monkeypatch.setattr(durable, "_exchange", lambda a, b: False)
    folder = tmp_path / "run"
    (folder / "logs").mkdir(parents=True)
    monkeypatch.chdir(folder / "logs")
    with atomic_folder("..") as staging:
        (staging / "config.json").write_text("1")
    assert os.getcwd() == str(folder / "logs")
    Path("after.txt").write_text("kept")
    monkeypatch.chdir(folder)
    with atomic_folder(".") as staging:
        (staging / "config.json").write_text("2")
    Path("after2.txt").write_text("kept")
    assert sorted(p.name for p in folder.iterdir()) == ["after2.txt", "config.json", "logs"]
    assert (folder / "config.json").read_text() == "2"
    assert (folder / "logs" / "after.txt").read_text() == "kept"
    assert _leftovers(tmp_path) == []


def test_save_killed_between_the_two_renames_leaves_the_old_state_restorable(tmp_path):
    """Without renameat2 the swap is two renames; killed between them, the folder is missing
    and its old contents sit in a hidden sibling: the next save puts them back (carrying the
    files it does not write) instead of deleting them as leftovers."""
    folder = tmp_path / "ckpt"
    with atomic_folder(folder) as staging:
        (staging / "config.json").write_text("old config")
        (staging / "tokenizer.json").write_text("old tokenizer")
    script = textwrap.dedent(f"""
        import os, signal
        from mlab_tfs import durable
        durable._exchange = lambda a, b: False
        real_rename, calls = os.rename, []
        def rename(a, b):
            calls.append(a)
            if len(calls) == 2:  # the old folder is aside, the new one not yet in place
                os.kill(os.getpid(), signal.SIGKILL)
            real_rename(a, b)
        os.rename = rename
        with durable.atomic_folder({str(folder)!r}) as staging:
            (staging / "config.json").write_text("new config")
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not folder.exists()
    assert [name.endswith(".old.partial") for name in _leftovers(tmp_path)].count(True) == 1
    with atomic_folder(folder) as staging:
        (staging / "config.json").write_text("newer config")
    assert (folder / "config.json").read_text() == "newer config"
    assert (folder / "tokenizer.json").read_text() == "old tokenizer"  # carried over from the restored state
    assert _leftovers(tmp_path) == []
