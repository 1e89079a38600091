"""Parsed output rows as typed columns: the one shape both output readers hand on.

One :class:`~pdbatch.lines.outputs.Outcome` per line becomes a row of ``"string"``
and ``"Int64"`` columns and a float32 array (or None) per embedding;
:class:`Columns` gathers them a block at a time as Arrow arrays.
:mod:`pdbatch.results.parse` and :mod:`pdbatch.results.blocks` fill it, :mod:`pdbatch.results.join`
reads it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from ..lines.outputs import Outcome

__all__ = ["INT", "PARSED_COLUMNS", "STRING", "Columns", "typed", "typed_row"]

PARSED_COLUMNS = Outcome._fields

STRING = pd.StringDtype("pyarrow")  # what the "string" alias means with pyarrow installed
INT = pd.Int64Dtype()


def _text(v: Any) -> str | None:
    # a content list (multimodal) or a number is kept as its JSON text
    if v is None or isinstance(v, str):
        return v
    return orjson.dumps(v, default=str).decode()


def _int(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float):
        if not v.is_integer():
            return None
        v = int(v)
    return v if -(2**63) <= v < 2**63 else None


def typed_row(cid: Any, text: Any, finish: Any, ptok: Any, ctok: Any, emb: Any, error: Any) -> tuple[Any, ...]:
    """An :class:`~pdbatch.lines.outputs.Outcome` with the values of the typed columns (str, int, float32 array, None).

    Parameters
    ----------
    cid, text, finish, ptok, ctok, emb, error : Any
        The fields of an :class:`~pdbatch.lines.outputs.Outcome`, in its order.

    Returns
    -------
    tuple
        The same fields, each a str, an int, a float32 array or None.
    """
    if emb is not None:
        try:
            emb = np.asarray(emb, dtype=np.float32)
            if emb.ndim != 1:
                raise ValueError
        except (TypeError, ValueError):
            emb = None
            error = error or "malformed response: the embedding is not a list of numbers"
    cid = None if cid is None or cid != cid else str(cid)  # (a NaN id is a None pandas stored in an object column)
    return (cid, _text(text), _text(finish), _int(ptok), _int(ctok), emb, error)


#: A typed row as Arrow converts it: one pass over the tuples fills every column.
_ROW = pa.struct(
    [
        ("custom_id", pa.large_string()),
        ("response", pa.large_string()),
        ("finish_reason", pa.large_string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("embedding", pa.list_(pa.float32())),
        ("error", pa.large_string()),
    ]
)


class Columns:
    """Typed rows gathered a block at a time, kept as Arrow arrays.

    A block's rows become Arrow arrays at once: long Python lists of strings
    would make every full garbage collection visit each string.
    """

    def __init__(self) -> None:
        self.chunks: list[pa.StructArray] = []

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        """Append typed rows (see :func:`typed_row`)."""
        self.chunks.append(pa.array(rows, type=_ROW))

    def frame(self) -> pd.DataFrame:
        """The parsed frame: "string", "Int64", and float32 arrays (or None) for embeddings."""
        out: dict[str, Any] = {}
        for field, col in zip(_ROW, pa.chunked_array(self.chunks, type=_ROW).flatten(), strict=True):
            if field.name == "embedding":
                out[field.name] = pd.Series(_embedding_objects(col), dtype=object)
            else:
                out[field.name] = (INT if pa.types.is_integer(field.type) else STRING).__from_arrow__(col)
        return pd.DataFrame(out)


def _embedding_objects(col: pa.ChunkedArray) -> np.ndarray:
    """One float32 array (a view into one buffer) or None per row."""
    out = np.full(len(col), None, dtype=object)
    if col.null_count == len(col):
        return out
    arr = col.combine_chunks()
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False)
    valid = np.flatnonzero(arr.is_valid().to_numpy(zero_copy_only=False))
    out[valid] = [values[offsets[i] : offsets[i + 1]] for i in valid.tolist()]
    return out


def typed(parsed: pd.DataFrame) -> pd.DataFrame:
    """``parsed`` with typed columns, whichever parser made it.

    Parameters
    ----------
    parsed : pandas.DataFrame
        Rows of :func:`pdbatch.results.parse.parse_lines` (object columns) or of
        :func:`pdbatch.results.parse.parse_bytes` (already typed: returned as is).

    Returns
    -------
    pandas.DataFrame
        ``"string"``, ``"Int64"`` and float32-array (or None) columns, on ``parsed``'s index.
    """
    if isinstance(parsed["custom_id"].dtype, pd.StringDtype):
        return parsed
    columns = Columns()
    columns.add([typed_row(*r) for r in zip(*(parsed[c].tolist() for c in PARSED_COLUMNS), strict=True)])
    return columns.frame().set_axis(parsed.index)
