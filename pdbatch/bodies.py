"""A request frame's ``body`` column, as dicts or as JSON text.

A request frame given by the user (``read_requests``, ``to_requests``) holds
each body as a dict. One read from a file to be run
(:func:`pdbatch.requestfile.scan_requests`) holds them as JSON text in one
Arrow column, about the file's size instead of several times it; a job keeps
them so too. The steps that need a body as a dict take them from here, and
a chunk of text bodies is decoded at a time, never the whole column.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd

__all__ = ["as_dicts", "bodies_at", "is_text", "iter_bodies", "values_at"]

#: Bodies decoded per chunk: a chunk of text is held as Python strs while it is read.
CHUNK = 8192


def is_text(frame: pd.DataFrame) -> bool:
    """Whether ``frame``'s bodies are JSON text (a scanned file) rather than dicts."""
    return frame["body"].dtype != object


def iter_bodies(frame: pd.DataFrame, positions: np.ndarray | None = None) -> Iterator[tuple[int, Any]]:
    """``(position, body)`` for the rows at ``positions`` (every row by default), a text body decoded.

    Parameters
    ----------
    frame : pandas.DataFrame
        A request frame.
    positions : numpy.ndarray, optional
        Row positions, in the order wanted.

    Yields
    ------
    (int, Any)
        The position and its body (a dict, or whatever the line holds there).
    """
    column = frame["body"]
    if positions is None:
        positions = np.arange(len(column))
    if not is_text(frame):
        values = column.to_numpy(dtype=object)
        for p in positions.tolist():
            yield p, values[p]
        return
    loads = orjson.loads
    for start in range(0, len(positions), CHUNK):
        pos = positions[start : start + CHUNK]
        for p, text in zip(pos.tolist(), values_at(column, pos), strict=True):
            yield p, None if text is None or text is pd.NA else loads(text)


def values_at(column: pd.Series, positions: np.ndarray) -> list[Any]:
    """``column.iloc[positions].tolist()``, taking a run of rows as a slice.

    A slice of an Arrow column copies nothing; a take copies the rows, and
    Arrow's allocator keeps what it once took (a request file's chunks
    added up to the file's size again).
    """
    run = len(positions) > 0 and positions[-1] - positions[0] + 1 == len(positions) and \
        bool((np.diff(positions) == 1).all())
    return (column.iloc[positions[0] : positions[-1] + 1] if run else column.iloc[positions]).tolist()


def bodies_at(frame: pd.DataFrame, positions: np.ndarray) -> list[Any]:
    """The bodies of the rows at ``positions``, as :func:`iter_bodies` gives them."""
    return [body for _, body in iter_bodies(frame, positions)]


def as_dicts(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its bodies as dicts, as the user reads a result (the frame itself when they are)."""
    if "body" not in frame.columns or not is_text(frame):
        return frame
    out = frame.copy(deep=False)
    out["body"] = pd.Series(bodies_at(frame, np.arange(len(frame))), index=frame.index, dtype=object)
    return out
