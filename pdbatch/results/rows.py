"""Parsed output rows as typed columns: the one shape both output readers hand on.

One :class:`~pdbatch.lines.outputs.Outcome` per line becomes a row of typed
columns, each of the dtype its kind declares (:mod:`pdbatch.lines.kinds`:
``"string"``, ``"Int64"``, ``"boolean"``, ``"Float64"``, a float32 array or None per embedding);
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

from ..lines.kinds import Column, parsed_columns
from ..lines.outputs import Outcome

__all__ = ["DTYPES", "INT", "PARSED_COLUMNS", "STRING", "Columns", "flat", "parsed_names", "typed", "typed_row"]

#: The parsed columns with the built-in kinds only (:func:`parsed_names` adds declared kinds' columns).
PARSED_COLUMNS = Outcome._fields[:-1]

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


def _bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _array(v: Any) -> np.ndarray | None:
    if v is None:
        return None
    arr = np.asarray(v, dtype=np.float32)
    if arr.ndim != 1:
        raise ValueError
    return arr


#: A declared dtype (pdbatch.lines.kinds.DTYPES) -> (Arrow type, pandas dtype or None for objects, converter).
DTYPES: dict[str, tuple[pa.DataType, Any, Any]] = {
    "string": (pa.large_string(), STRING, _text),
    "Int64": (pa.int64(), INT, _int),
    "boolean": (pa.bool_(), pd.BooleanDtype(), _bool),
    "Float64": (pa.float64(), pd.Float64Dtype(), _float),
    "embedding": (pa.list_(pa.float32()), None, _array),
}


def typed_row(cid: Any, text: Any, finish: Any, ptok: Any, ctok: Any, emb: Any, *rest: Any) -> tuple[Any, ...]:
    """A flat row (:func:`flat`) with the values of the typed columns (str, int, float32 array, None).

    Parameters
    ----------
    cid, text, finish, ptok, ctok, emb : Any
        The first fields of an :class:`~pdbatch.lines.outputs.Outcome`, in its order.
    *rest : Any
        The values of the columns declared kinds add (:func:`parsed_names`), then the error.

    Returns
    -------
    tuple
        The same fields, each a str, an int, a bool, a float, a float32 array or None.
    """
    error = rest[-1]
    if emb is not None:
        try:
            emb = _array(emb)
        except (TypeError, ValueError):
            emb = None
            error = error or "malformed response: the embedding is not a list of numbers"
    cid = None if cid is None or cid != cid else str(cid)  # (a NaN id is a None pandas stored in an object column)
    if len(rest) == 1:
        return (cid, _text(text), _text(finish), _int(ptok), _int(ctok), emb, error)
    extra = []
    for column, value in zip(parsed_columns()[len(PARSED_COLUMNS) - 1 : -1], rest[:-1], strict=True):
        try:
            extra.append(DTYPES[column.dtype][2](value))
        except (TypeError, ValueError):
            extra.append(None)
            error = error or f"malformed response: {column.name} is not a {column.dtype} value"
    return (cid, _text(text), _text(finish), _int(ptok), _int(ctok), emb, *extra, error)


def parsed_names() -> tuple[str, ...]:
    """The parsed columns' names: :data:`PARSED_COLUMNS`, with declared kinds' columns before ``error``."""
    return tuple(c.name for c in parsed_columns())


def flat(outcome: Outcome) -> tuple[Any, ...]:
    """An :class:`~pdbatch.lines.outputs.Outcome` as one value per parsed column (:func:`parsed_names`)."""
    declared = parsed_columns()
    if len(declared) == len(PARSED_COLUMNS):
        return outcome[:-1]
    other = outcome.other or {}
    return (*outcome[:-2], *(other.get(c.name) for c in declared[len(PARSED_COLUMNS) - 1 : -1]), outcome.error)


def _struct(columns: tuple[Column, ...]) -> pa.StructType:
    """A typed row as Arrow converts it: one pass over the tuples fills every column."""
    return pa.struct([(c.name, DTYPES[c.dtype][0]) for c in columns])


class Columns:
    """Typed rows gathered a block at a time, kept as Arrow arrays.

    A block's rows become Arrow arrays at once: long Python lists of strings
    would make every full garbage collection visit each string. The columns
    are those of the kinds declared when it is made (:func:`parsed_names`).
    """

    def __init__(self) -> None:
        self.chunks: list[pa.StructArray] = []
        self.declared = parsed_columns()
        self.row = _struct(self.declared)
        # the fast parser's rows have the built-in columns only: declared kinds' columns are None there
        self.pad = (None,) * (len(self.declared) - len(PARSED_COLUMNS))

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        """Append typed rows (see :func:`typed_row`)."""
        if self.pad:
            width, cut = len(self.declared), len(PARSED_COLUMNS) - 1
            rows = [r if len(r) == width else (*r[:cut], *self.pad, r[cut]) for r in rows]
        self.chunks.append(pa.array(rows, type=self.row))

    def frame(self) -> pd.DataFrame:
        """The parsed frame: "string", "Int64", declared dtypes, and float32 arrays (or None) for embeddings."""
        out: dict[str, Any] = {}
        for column, col in zip(self.declared, pa.chunked_array(self.chunks, type=self.row).flatten(), strict=True):
            dtype = DTYPES[column.dtype][1]
            out[column.name] = (pd.Series(_embedding_objects(col), dtype=object) if dtype is None
                                else dtype.__from_arrow__(col))
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
    names = [c.name for c in columns.declared]
    columns.add([typed_row(*r) for r in zip(*(parsed[c].tolist() for c in names), strict=True)])
    return columns.frame().set_axis(parsed.index)
