"""A request frame's ``body`` column, as dicts or as JSON text.

A request frame given by the user (``read_requests``, ``to_requests``) holds
each body as a dict. One read from a file to be run
(:func:`pdbatch.builders.requestfile.scan_requests`) holds them as JSON text in one
Arrow column, about the file's size instead of several times it; a job keeps
them so too. The steps that need a body as a dict take them from here, and
a chunk of text bodies is decoded at a time, never the whole column.
:class:`BodiesPlan` is the request plan of such a frame: each row's body is
its request, as written.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
import orjson
import pandas as pd

from .requests import CHUNK_ROWS, RequestPlan

__all__ = ["BodiesPlan", "as_dicts", "bodies_at", "is_text", "iter_bodies", "values_at"]

#: Lines per chunk of request lines written from whole bodies (decoded as dicts while they are written).
BODY_CHUNK = 4096
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


class BodiesPlan(RequestPlan):
    """A request plan whose rows are whole request bodies (a request file), not a template filled per row.

    Each row's payload is its body with the job's model, so the cache keys,
    the preview and the request files see exactly the line as it is sent.
    """

    def payloads(self, positions: np.ndarray) -> Sequence[Any]:
        """The bodies of the rows at ``positions``, ``model`` set to the job's, each decoded as it is read.

        A file's bodies are kept as JSON text: as dicts, a chunk of them would
        take several times the file's size (``benchmarks/request_file_memory.py``).
        """
        return _Bodies(self, positions)

    def ids_at(self, positions: np.ndarray) -> list[str]:
        """The custom_ids at ``positions``, from the frame's column (no Python str per row held meanwhile)."""
        return values_at(self.frame["custom_id"], positions)

    def body(self, payload: Any) -> dict[str, Any]:
        """The payload is the body already (an empty dict for anything else: what the rows share)."""
        return payload if isinstance(payload, dict) else {}

    def _iter_buffers(self, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[bytes, int]]:
        positions = self.positions
        head, mid = b'{"custom_id":', b',"method":"POST","url":' + orjson.dumps(self.url) + b',"body":'
        chunk_rows = min(chunk_rows, BODY_CHUNK)  # whole bodies, not a template's share: smaller chunks
        for start in range(0, len(positions), chunk_rows):
            pos = positions[start : start + chunk_rows]
            parts = [head + orjson.dumps(cid) + mid + orjson.dumps(body) + b"}\n"
                     for cid, body in zip(self.ids_at(pos), self.payloads(pos), strict=True)]
            yield b"".join(parts), len(pos)


class _Bodies(Sequence[Any]):
    """The payloads of some rows of a :class:`BodiesPlan`, decoded one at a time as they are read."""

    def __init__(self, plan: BodiesPlan, positions: np.ndarray) -> None:
        self.plan, self.positions = plan, positions

    def __len__(self) -> int:
        return len(self.positions)

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return list(_Bodies(self.plan, self.positions[i]))
        return next(iter(_Bodies(self.plan, self.positions[[i]])))

    def __iter__(self) -> Iterator[Any]:
        model = self.plan.model
        for _, body in iter_bodies(self.plan.frame, self.positions):
            yield {**body, "model": model}
