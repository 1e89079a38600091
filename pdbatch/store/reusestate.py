"""A job's reuse state on disk: one file, ``reuse.bin``, written at submit and read by :func:`load` alone.

What a job's result and its cache filling need besides the backend's output:
which rows take an earlier row's answer (the alias), the output lines of the
rows answered from the response cache, and the cache key of each row sent,
sealed by this home (:mod:`pdbatch.store.trust`). Planning what is reused is
:mod:`pdbatch.jobs.reuse`; this module only keeps it. The layout (numbers
little-endian)::

    b"pdbatch reuse 1\\n"   16 bytes
    seal                   32 bytes: this home's HMAC of the keys for this folder and job; zeros until submitted
    head                   4 bytes of length, then JSON {"rows", "alias_dtype", "alias", "keys", "cached"}:
                           the row count and each section's length in bytes
    alias                  a row number per row (int32, or int64 past 2**31 rows), -1 for its own answer;
                           empty when no row repeats another
    keys                   JSON object {custom_id: cache key} of the rows sent
    cached                 output lines (JSONL) of the rows answered from the cache

The alias is a flat array read with one ``frombuffer``; the cached lines, which
may be large (embeddings), and the keys are read only by who needs them, from
their offsets. Writes go through :mod:`pdbatch.store.jobdir` (never through a
link, private). Folders written before this file existed keep four files
(``cached.jsonl``, ``alias.npy``, ``keys.json``, ``keys.seal``); :func:`load`
reads them too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import orjson

from ..errors import JobFolderError, answers_hint
from ..lines.jsontext import dumps_mapping
from ..lines.outputs import iter_file_lines
from . import jobdir

__all__ = ["SEAL_BYTES", "Saved", "has_keys", "load", "save", "seal"]

MAGIC = b"pdbatch reuse 1\n"
#: The seal's size (an HMAC-SHA256); all zeros means not sealed.
SEAL_BYTES = 32
_HEAD_AT = len(MAGIC) + SEAL_BYTES
_NO_SEAL = bytes(SEAL_BYTES)
_LOST = "rows that repeat an earlier row or were answered from the cache cannot get their answers"


def save(folder: Path, alias: np.ndarray, cached: Mapping[int, bytes], keys: dict[str, str]) -> None:
    """Write what a job's result needs into ``reuse.bin``: aliases, cached answers, the cache keys of the rows sent.

    Writes nothing when no row repeats another, none was cached and none keyed.

    Parameters
    ----------
    folder : pathlib.Path
        The job's files, before they move into its folder (:func:`pdbatch.jobs.submit.submit`).
    alias : numpy.ndarray
        For each row, the row whose answer it takes, or -1.
    cached : mapping of int to bytes
        Output lines from the cache, by the row they answer.
    keys : dict of str to str
        The cache key of each row sent, by custom_id (sealed later by :func:`seal`).
    """
    repeats = bool((alias >= 0).any())
    if not (repeats or cached or keys):
        return
    dtype = "<i4" if len(alias) < 2**31 else "<i8"
    alias_bytes = alias.astype(dtype, copy=False).tobytes() if repeats else b""
    keys_bytes = dumps_mapping(keys) if keys else b""  # orjson.dumps would take 5x its size
    lines = b"".join(line + b"\n" for line in cached.values())
    head = orjson.dumps({"rows": len(alias), "alias_dtype": dtype, "alias": len(alias_bytes), "keys": len(keys_bytes),
                         "cached": len(lines)})
    jobdir.write_file(folder / jobdir.REUSE, MAGIC + _NO_SEAL + len(head).to_bytes(4, "little") + head, alias_bytes,
                      keys_bytes, lines)


def seal(folder: Path, mac: bytes) -> None:
    """Put this home's seal of the keys (:func:`pdbatch.store.trust.seal_keys`) into the job's ``reuse.bin``."""
    if len(mac) != SEAL_BYTES:
        raise ValueError(f"a seal is {SEAL_BYTES} bytes, not {len(mac)}")
    jobdir.write_at(folder / jobdir.REUSE, len(MAGIC), mac)


@dataclass(frozen=True)
class _Section:
    """Where a part of the reuse state is: a file, and a byte range in it (``length`` -1: the whole file)."""

    path: Path
    offset: int = 0
    length: int = -1

    def read(self) -> bytes:
        if self.length < 0:
            return jobdir.read_file(self.path)
        with os.fdopen(jobdir.open_file(self.path), "rb") as fh:
            return os.pread(fh.fileno(), self.length, self.offset)


@dataclass(frozen=True)
class Saved:
    """A job folder's reuse state, as :func:`load` read it.

    Attributes
    ----------
    alias : numpy.ndarray or None
        For each frame row, the position whose answer it takes, or -1; None when no row repeats another.
    seal : bytes or None
        This home's seal of :attr:`keys` for this folder and job, as the folder holds it (unchecked:
        :func:`pdbatch.store.trust.keys_sealed` checks it); None when the job was never sealed.
    keys_at, cached_at : _Section or None
        Where :attr:`keys` and :attr:`cached` are (a byte range of ``reuse.bin``, or an older folder's file).
    """

    alias: np.ndarray | None
    seal: bytes | None = None
    keys_at: _Section | None = None
    cached_at: _Section | None = None

    @property
    def cached(self) -> bytes | None:
        """The output lines answered from the cache (read on each use: they may be large), or None."""
        return None if self.cached_at is None else self.cached_at.read()

    @property
    def keys(self) -> bytes | None:
        """The cache key of each row sent, as JSON ``{custom_id: key}`` bytes (untrusted), or None."""
        return None if self.keys_at is None else self.keys_at.read()

    def answer_lines(self, outputs: list[Path], complete_only: bool = False) -> Iterator[bytes]:
        """Every line that answers a row: those of ``outputs`` (``complete_only``: whole lines), then the cached."""
        for path in outputs:
            yield from iter_file_lines(path, complete_only=complete_only)
        cached = self.cached
        if cached:
            yield from cached.splitlines()


def has_keys(folder: Path) -> bool:
    """Whether the job in ``folder`` sent rows under cache keys (so it claimed them, :mod:`pdbatch.jobs.claims`)."""
    try:
        return load(folder, None, []).keys_at is not None
    except (OSError, JobFolderError):
        # damaged: it may have claimed rows, and releasing a job's claims is harmless when it held none,
        # while keeping them would make other calls wait for answers that never come into the cache
        return (folder / jobdir.REUSE).is_file()


def load(folder: Path, n_rows: int | None, outputs: list[Path]) -> Saved:
    """Read a job folder's reuse state: the one reader of ``reuse.bin`` (and of the four files before it).

    Parameters
    ----------
    folder : pathlib.Path
        The job's folder.
    n_rows : int or None
        The frame's rows, which the alias must match (None: the alias is not read).
    outputs : list of pathlib.Path
        The job's output files, named by the error as what survives.

    Raises
    ------
    JobFolderError
        The state is damaged (not a reuse file, cut short, aliases that are not one row per row).
    """
    path = folder / jobdir.REUSE
    try:
        fd = jobdir.open_file(path)
    except FileNotFoundError:
        return _legacy(folder, n_rows, outputs)
    with os.fdopen(fd, "rb") as fh:
        try:
            start = fh.read(_HEAD_AT + 4)
            size = int.from_bytes(start[_HEAD_AT:], "little")
            if start[: len(MAGIC)] != MAGIC or len(start) != _HEAD_AT + 4:
                raise ValueError("not a reuse file of this pdbatch")
            if size > os.fstat(fd).st_size - _HEAD_AT - 4:  # a length from the file: reading it would allocate it
                raise ValueError(f"a head of {size} bytes, past the file's end")
            head = orjson.loads(fh.read(size))
            if not isinstance(head, dict) or head.get("alias_dtype") not in ("<i4", "<i8"):
                raise ValueError("not a reuse file of this pdbatch")
            lengths = [n for n in (head.get(k) for k in ("alias", "keys", "cached")) if isinstance(n, int) and n >= 0]
            if len(lengths) != 3:
                raise ValueError("not a reuse file of this pdbatch")
            at = _HEAD_AT + 4 + size
            if os.fstat(fd).st_size != at + sum(lengths):
                raise ValueError(f"{os.fstat(fd).st_size} bytes, not the {at + sum(lengths)} its head gives")
            alias = None
            if n_rows is not None and lengths[0]:
                values = np.frombuffer(os.pread(fd, lengths[0], at), dtype=np.dtype(head["alias_dtype"]))
                alias = _checked(values.astype(np.int64), n_rows, path, outputs)
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
            raise JobFolderError(f"{path} is damaged ({exc}): {_LOST}. {answers_hint(outputs)}", path=path) from None
    sealed = start[len(MAGIC) : _HEAD_AT]
    keys, cached = _Section(path, at + lengths[0], lengths[1]), _Section(path, at + lengths[0] + lengths[1], lengths[2])
    return Saved(alias, None if sealed == _NO_SEAL else sealed, keys if lengths[1] else None,
                 cached if lengths[2] else None)


def _legacy(folder: Path, n_rows: int | None, outputs: list[Path]) -> Saved:
    """The reuse state of a folder written before ``reuse.bin``: ``cached.jsonl``, ``alias.npy``, ``keys.*``."""
    cached, path, keys, seal_path = (folder / name for name in jobdir.LEGACY_REUSE)
    alias = None
    if n_rows is not None and path.exists():
        try:
            with os.fdopen(jobdir.open_file(path), "rb") as fh:  # never through a link
                values = _load_npy(fh, n_rows)
        except (OSError, ValueError, EOFError) as exc:
            raise JobFolderError(f"{path} cannot be read ({exc}): {_LOST}. {answers_hint([*outputs, cached])}",
                                 path=path) from None
        alias = _checked(values, n_rows, path, [*outputs, cached])
    try:
        sealed: bytes | None = bytes.fromhex(jobdir.read_file(seal_path).decode("ascii").strip())
    except (OSError, ValueError, JobFolderError):
        sealed = None
    return Saved(alias, sealed, _Section(keys) if keys.exists() else None,
                 _Section(cached) if cached.exists() else None)


def _load_npy(fh: BinaryIO, n_rows: int) -> np.ndarray:
    """The row positions in an ``.npy`` file, its header checked before its data is read.

    The header's shape comes from the file: ``np.load`` would allocate it first,
    so a header of a billion rows on a 100-byte file would take gigabytes.
    ``np.load`` never unpickles here: object arrays are refused.
    """
    version = np.lib.format.read_magic(fh)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(fh)
    if dtype.kind != "i":
        raise ValueError(f"it holds {dtype} values, not row positions")
    if shape != (n_rows,):
        raise ValueError(f"its header gives a shape of {shape}, not one row position per row ({n_rows})")
    fh.seek(0)
    return np.load(fh, allow_pickle=False)


def _checked(alias: np.ndarray, n_rows: int, path: Path, outputs: list[Path]) -> np.ndarray:
    """``alias`` when it holds one earlier-or-own row position (or -1) per row; else the error naming ``path``."""
    if alias.shape == (n_rows,) and (n_rows == 0 or (alias.min() >= -1 and alias.max() < n_rows)):
        return alias
    raise JobFolderError(
        f"{path} holds {alias.dtype} values of shape {alias.shape}, not one row position (-1 to {n_rows - 1}) per "
        f"row ({n_rows}): {_LOST}. "
        f"{answers_hint(outputs)}", path=path)
