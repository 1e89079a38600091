"""A job's reuse state on disk: the one writer (at submit) and the one reader (at result) of its files.

``cached.jsonl`` (answers from the cache), ``alias.npy`` (rows that take an
earlier row's answer) and ``keys.json`` (the cache key of each row sent, which
:mod:`pdbatch.store.trust` seals into ``keys.seal``). Planning what is reused is
:mod:`pdbatch.jobs.reuse`; this module only keeps it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import open_private, write_private
from ..errors import JobFolderError, answers_hint
from ..lines.jsontext import dumps_mapping
from . import jobdir

__all__ = ["Saved", "load", "save"]


def save(folder: Path, alias: np.ndarray, cached: Mapping[int, bytes], keys: dict[str, str]) -> None:
    """Write what a job's result needs: cached answers, aliases, and the cache keys of the rows sent, by custom_id.

    Parameters
    ----------
    folder : pathlib.Path
        The job's files, before they move into its folder (:func:`pdbatch.jobs.submit.submit`).
    alias : numpy.ndarray
        For each row, the row whose answer it takes, or -1.
    cached : mapping of int to bytes
        Output lines from the cache, by the row they answer.
    keys : dict of str to str
        The cache key of each row sent, by custom_id (sealed by :func:`pdbatch.store.trust.seal_keys`).
    """
    if cached:
        write_private(folder / jobdir.CACHED, b"".join(line + b"\n" for line in cached.values()))
    if (alias >= 0).any():
        with os.fdopen(open_private(folder / jobdir.ALIAS, os.O_WRONLY | os.O_TRUNC), "wb") as fh:
            np.save(fh, alias)
    if keys:
        write_private(folder / jobdir.KEYS, dumps_mapping(keys))  # orjson.dumps would take 5x its size


@dataclass(frozen=True)
class Saved:
    """A job folder's reuse state, as :func:`load` read it (the one reader of what :func:`save` wrote).

    Attributes
    ----------
    alias : numpy.ndarray or None
        For each frame row, the position whose answer it takes, or -1; None when no row repeats another.
    cached : pathlib.Path or None
        The output lines answered from the cache (``cached.jsonl``), when there are any.
    """

    alias: np.ndarray | None
    cached: Path | None

    def answer_files(self, outputs: list[Path]) -> list[Path]:
        """The job's output files and then the cached lines: every file that answers a row."""
        return [*outputs, *([self.cached] if self.cached is not None else [])]


def load(folder: Path, n_rows: int, outputs: list[Path]) -> Saved:
    """Read a job folder's reuse state (aliases checked against ``n_rows``; ``outputs`` name what is left if not).

    Raises
    ------
    JobFolderError
        The saved aliases are damaged (not one position per row).
    """
    cached = folder / jobdir.CACHED
    cached_path = cached if cached.exists() else None
    path = folder / jobdir.ALIAS
    alias = _alias(path, n_rows, [*outputs, cached]) if path.exists() else None
    return Saved(alias, cached_path)


def _alias(path: Path, n_rows: int, outputs: list[Path]) -> np.ndarray:
    """The saved alias of each row (``np.load`` never unpickles here: object arrays are refused)."""
    try:
        alias = np.load(path, allow_pickle=False)
        if alias.shape == (n_rows,) and alias.dtype.kind == "i":
            return alias
        problem = f"holds {alias.dtype} values of shape {alias.shape}, not one position per row ({n_rows})"
    except (OSError, ValueError, EOFError) as exc:
        problem = f"cannot be read ({exc})"
    raise JobFolderError(
        f"{path} {problem}: rows that repeat an earlier row cannot get its answer. "
        f"{answers_hint(outputs)}", path=path)
