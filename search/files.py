"""Every file and directory the project writes appears whole or not at all, with the mode a user expects.

A file is written to a temporary name in its directory and renamed into place, so a reader, a crash or a full disk
never leaves half a file. ``tempfile`` creates files 0600 and directories 0700; a replaced file keeps the mode it had,
and a new one gets the mode the user's umask gives (0644 and 0755 under the usual umask 022), so a model directory
stays readable by the people it is shared with.

Example:
    >>> import pathlib, tempfile
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
    >>> atomic_write(target, "hello\\n") is None  # no previous file, so no backup
    True
    >>> target.read_text()
    'hello\\n'
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


def umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def backup_path(path: Path) -> Path:
    """The first free backup name of ``path``: ``NAME.bak``, then ``NAME.bak2``, ``NAME.bak3``..."""
    candidate, n = path.with_name(path.name + ".bak"), 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.bak{n}")
    return candidate


def atomic_write(path: str | Path, data: str | bytes, *, backup: bool = False) -> Path | None:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file renamed into place.

    Args:
        path: the file; its directory is created when missing.
        data: the whole content.
        backup: copy a previous file to :func:`backup_path` first.

    Returns:
        The backup of the previous file, or None when none was made.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = path.stat().st_mode if path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, stat.S_IMODE(previous) if previous is not None else 0o666 & ~umask())
        copy = None
        if backup and previous is not None:
            copy = backup_path(path)
            shutil.copy2(path, copy)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return copy


@contextlib.contextmanager
def staged_dir(parent: str | Path, name: str) -> Iterator[Path]:
    """A new, empty directory in ``parent`` to fill, deleted on an error; :func:`publish_dir` puts it in place."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))
    try:
        yield staged
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def publish_dir(staged: Path, target: Path) -> Path | None:
    """Rename a filled staged directory to ``target``, every file and directory in it with the modes new ones get
    (libraries write some files 0600: transformers' ``model.safetensors``); an existing ``target`` is kept as its
    :func:`backup_path`, which is returned."""
    mask = umask()
    for path in [staged, *staged.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
    backup = backup_path(target) if target.exists() else None
    if backup is not None:
        target.rename(backup)
    staged.rename(target)
    return backup


__all__ = ["atomic_write", "backup_path", "publish_dir", "staged_dir", "umask"]
