"""How pdbatch writes under ``PDBATCH_HOME``: private to the user, and files replaced whole.

Prompts and answers can be private data, so every folder pdbatch creates there
is ``0700`` and every file ``0600``, whatever the process's umask (which only
ever removes bits, and which a library must not change in its caller's process).
Files replaced whole (status, manifest, converted weights) go through
:func:`atomic_path`: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "atomic_path", "open_private", "private_dir", "write_private"]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents as folders only the user can enter.

    Folders that already exist are left as they are: they may be the user's own.

    Parameters
    ----------
    path : Path

    Returns
    -------
    Path
        ``path``.
    """
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, PRIVATE_DIR)
        except FileExistsError:
            continue  # another process made it first
        os.chmod(d, PRIVATE_DIR)  # mkdir's mode went through the umask
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` a file, created ``0600`` if missing and made ``0600`` if not; returns the fd."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: bytes | bytearray) -> None:
    """Write ``data`` as the whole content of ``path``, a file only the user can read."""
    with os.fdopen(open_private(path, os.O_WRONLY | os.O_TRUNC), "wb") as fh:
        fh.write(data)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A fresh private temporary path beside ``target``, renamed onto it when the block succeeds.

    The name is unique (``mkstemp``), so two writers, threads or processes,
    never share one; if the block raises, the temporary file is removed and
    ``target`` is left as it was. The file is ``0600`` and keeps that mode
    when written to through its path.

    Parameters
    ----------
    target : Path
        The file to replace; its folder must exist.

    Yields
    ------
    Path
        Where to write the new content.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        os.fchmod(fd, PRIVATE_FILE)  # mkstemp's 0600 went through the umask
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
