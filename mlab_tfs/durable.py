"""Durable writes: a save that fails, fills the disk or is killed at any moment leaves the
previous state loadable.

Two primitives, used by every writer in the package (checkpoints, tokenizers, training state):

- ``atomic_file(path)``: write one file through a temporary sibling, then ``os.replace`` it
  into place. Readers see the old file or the whole new one.
- ``atomic_folder(folder)``: write a whole folder (say config.json + model.safetensors) into
  a staging folder beside it, then swap the two folders in one step. Files already in
  ``folder`` that this save does not write (a tokenizer saved next to a model, a training
  log) are carried over, so saving into a shared folder loses nothing.

On Linux the swap is ``renameat2(RENAME_EXCHANGE)``, atomic; elsewhere it is two renames,
with a window of two system calls in which ``folder`` is missing (the old contents then
sit in a hidden sibling ``.<name>.<pid>-<random>.old.partial``; if the save is killed
there, the next save into the folder puts them back first). Leftovers of a killed save are
hidden siblings named ``.<name>.<pid>-<random>.partial``; the next save into the same
folder removes those whose process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fnmatch
import functools
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["atomic_file", "atomic_folder", "write_text_atomic", "write_bytes_atomic"]

_SUFFIX = ".partial"


# The marker of a folder's previous contents, moved aside by the two-rename swap.
_OLD = ".old"


def _partial_name(target: Path, marker: str = "") -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{marker}{_SUFFIX}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; nothing more to do there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _remove_stale_partials(target: Path) -> None:
    """Remove what killed saves into ``target`` left behind (their process is gone).

    A save killed between the two renames of the fallback swap leaves ``target`` missing and
    its previous contents in a hidden ``.old`` sibling: those are put back, not removed."""
    prefix = f".{target.name}."
    if not target.parent.is_dir():
        return
    entries = sorted(target.parent.iterdir(), key=lambda e: not e.name.endswith(_OLD + _SUFFIX))  # .old first
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(_SUFFIX)):
            continue
        pid_part = name[len(prefix):-len(_SUFFIX)].split("-", 1)[0]
        if pid_part.isdigit() and not _pid_alive(int(pid_part)):
            if name.endswith(_OLD + _SUFFIX) and not os.path.lexists(target):
                os.rename(entry, target)  # the whole previous state, as it was before the killed save
            else:
                _remove(entry)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path`` at once.

    Write the new contents to the yielded path (any writer that takes a path: ``torch.save``,
    ``safetensors.torch.save_file``...). If the block raises, ``path`` is untouched and the
    temporary file is removed. The parent folder must exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: its folder {path.parent} does not exist")
    _remove_stale_partials(path)
    tmp = _partial_name(path)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"atomic_file({path}): the block wrote nothing to {tmp}")
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """``Path(path).write_bytes(data)``, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """``Path(path).write_text(text)`` in UTF-8, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # no bytes copied: the old folder's file, under a second name
    except OSError:
        shutil.copy2(src, dst)


@functools.cache
def _renameat2():
    """libc's renameat2, or None: looked up once (find_library runs ldconfig, too slow for every save)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    return getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one system call (Linux renameat2 RENAME_EXCHANGE). False if unsupported."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    rc = renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this filesystem cannot; fall back
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _cwd_inside(folder: Path) -> str | None:
    """The working directory if it is folder or inside it (it would follow the old folder)."""
    try:
        cwd = os.getcwd()
    except FileNotFoundError:
        return None
    return cwd if cwd == str(folder) or cwd.startswith(str(folder) + os.sep) else None


def _follow(cwd: str | None) -> None:
    """After a swap, move the working directory from the old folder to the same path in the new one."""
    if cwd is not None:
        with contextlib.suppress(OSError):  # a subfolder this save dropped: stay where the path leads
            os.chdir(cwd)


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike, drop: Iterable[str] = ()) -> Iterator[Path]:
    """Yield an empty staging folder; on a clean exit it becomes ``folder`` in one step.

    Write every file of the new state into the yielded folder. Entries of the existing
    ``folder`` that the block did not write are carried over, except those whose names match
    one of the glob patterns in ``drop`` (e.g. ``"model-*.safetensors"``, the shards of an
    older save that this one replaces). If the block raises, ``folder`` is untouched and the
    staging folder is removed.

    A process whose working directory is ``folder`` (or inside it) keeps working there: it
    is moved into the new folder, not left in the old one, which is deleted.

    Raises TypeError if ``folder`` is not a str or path, ValueError if it is empty,
    NotADirectoryError if it exists and is not a folder.
    """
    if not isinstance(folder, (str, os.PathLike)) or isinstance(folder, bytes):
        raise TypeError(f"folder must be a str or os.PathLike, got {type(folder).__name__}")
    if not os.fspath(folder).strip():
        raise ValueError("folder must name a folder, got an empty string")
    # Absolute and normalised: "." and "x/.." have no name of their own to stage beside.
    folder = Path(os.path.realpath(folder) if Path(folder).is_symlink() else os.path.abspath(folder))
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"cannot save into {folder}: it exists and is not a folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(folder)
    staging = _partial_name(folder)
    staging.mkdir()
    drop = tuple(drop)
    try:
        yield staging
        written = {p.name for p in staging.iterdir()}
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name in written or any(fnmatch.fnmatch(entry.name, pat) for pat in drop):
                    continue
                if entry.name.endswith(_SUFFIX):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, staging / entry.name, symlinks=True, copy_function=_link_or_copy)
                elif entry.is_symlink():
                    os.symlink(os.readlink(entry), staging / entry.name)
                else:
                    _link_or_copy(str(entry), str(staging / entry.name))
        for root, _dirs, files in os.walk(staging):
            for name in files:
                p = Path(root) / name
                if not p.is_symlink():
                    _fsync_file(p)
            _fsync_dir(Path(root))
        cwd = _cwd_inside(folder)
        if not folder.exists():
            os.rename(staging, folder)
        elif _exchange(staging, folder):
            _follow(cwd)
            _remove(staging)  # now holds the old contents
        else:
            old = _partial_name(folder, _OLD)
            os.rename(folder, old)
            os.rename(staging, folder)
            _follow(cwd)
            _remove(old)
    except BaseException:
        _remove(staging)
        raise
    _fsync_dir(folder.parent)
