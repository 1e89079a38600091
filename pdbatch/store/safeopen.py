"""Opening a job's files: never through a symbolic link, only regular files, chmod-ed through a descriptor.

A job folder may come from elsewhere (copied, unpacked, synced), and tar
keeps links: a link there could point anywhere outside ``PDBATCH_HOME``.
Every file pdbatch opens in a job folder goes through :func:`open_file`
(``O_NOFOLLOW``; a FIFO opened without blocking, then refused), and the
folder a backend downloads into is checked and made private with
:func:`private_tree`, which changes modes through descriptors opened without
following links. :mod:`pdbatch.store.jobdir` re-exports these; it owns the names.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..atomic import PRIVATE_DIR, PRIVATE_FILE
from ..errors import JobFolderError

__all__ = ["not_regular", "open_file", "private_tree", "read_file", "write_at", "write_file"]


def not_regular(path: Path) -> JobFolderError:
    """The error for a link, a FIFO, a folder, ... where a job's file should be."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        mode = 0
    if stat.S_ISLNK(mode):
        try:
            what = f"a symbolic link (to {os.readlink(path)})"
        except OSError:
            what = "a symbolic link"
    elif stat.S_ISDIR(mode):
        what = "a folder, not a file"
    elif stat.S_ISREG(mode):
        what = "a file where pdbatch keeps a folder"
    else:
        what = "not a regular file"
    return JobFolderError(
        f"{path} is {what}: pdbatch never reads or writes a job's file through a link or a special file, which "
        f"could reach anything outside PDBATCH_HOME (a copied or unpacked job folder may hold one). Remove it "
        f"(rm {path}) and put the job's own file there if you have it.", path=path)


def open_file(path: Path, flags: int = os.O_RDONLY) -> int:
    """``os.open`` a job's file, never through a symbolic link, and only a regular file; returns the fd.

    With ``os.O_CREAT`` in ``flags`` the file is created ``0600`` (and made
    ``0600`` if it was not). A FIFO is opened without blocking, then refused.

    Raises
    ------
    JobFolderError
        ``path`` is a link, a folder, a FIFO, a device or a socket.
    OSError
        Any other failure (missing, permission denied).
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, PRIVATE_FILE)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):  # a link; a FIFO nobody reads; a folder
            raise not_regular(path) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise not_regular(path)
        os.set_blocking(fd, True)
        if flags & os.O_CREAT:
            os.fchmod(fd, PRIVATE_FILE)  # os.open's mode went through the umask, or the file was there
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file(path: Path) -> bytes:
    """The bytes of a job's file (:func:`open_file`'s refusals apply)."""
    with os.fdopen(open_file(path), "rb") as fh:
        return fh.read()


def write_file(path: Path, data: bytes | bytearray, *more: bytes | bytearray) -> None:
    """Write ``data`` (then each of ``more``) as the whole content of a job's file, private.

    :func:`open_file`'s refusals apply; ``more`` spares the caller joining large pieces into one.
    """
    with os.fdopen(open_file(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as fh:
        for piece in (data, *more):
            fh.write(piece)


def write_at(path: Path, offset: int, data: bytes) -> None:
    """Overwrite ``len(data)`` bytes of an existing job's file at ``offset`` (:func:`open_file`'s refusals apply)."""
    fd = open_file(path, os.O_WRONLY)
    try:
        if os.pwrite(fd, data, offset) != len(data):
            raise OSError(f"short write to {path}")
    finally:
        os.close(fd)


def private_tree(path: Path, *, chmod: bool = True) -> None:
    """Check (and with ``chmod``, make private) a folder a backend downloaded into, never through a link.

    Folders become ``0700`` and files ``0600``. Each is opened without
    following links (``O_NOFOLLOW``) and changed through its descriptor,
    so that a link planted anywhere in the tree changes nothing outside it.
    A missing ``path`` is fine.

    Raises
    ------
    JobFolderError
        ``path`` or something in it is a link or a special file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise not_regular(path) from None
        raise
    try:
        if chmod:
            os.fchmod(fd, PRIVATE_DIR)
        with os.scandir(fd) as entries:
            names = [(e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False)) for e in entries]
        for name, is_dir, is_file in names:
            inner = path / name
            if is_dir:
                private_tree(inner, chmod=chmod)
            elif is_file:
                if chmod:
                    file_fd = open_file(inner)
                    try:
                        os.fchmod(file_fd, PRIVATE_FILE)
                    finally:
                        os.close(file_fd)
            else:
                raise not_regular(inner)
    finally:
        os.close(fd)
