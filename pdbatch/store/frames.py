"""The job's copy of the user's frame, in Arrow IPC: data, never code.

A job keeps the frame it was submitted with, so that ``attach`` in a new
kernel joins the answers to the same rows. Job folders get copied, shared and
synced, so the copy is a data format (an Arrow IPC file, what Feather v2 is)
that is read without running anything; a pickle would run whatever it holds.

Kept exactly: the values; the index (names, MultiIndex, RangeIndex, a
DatetimeIndex's freq); the column labels (any type, MultiIndex, duplicates);
every dtype pyarrow converts both ways (numbers, bool, datetimes with time
zones, timedeltas, categoricals, nullable Int/Float/boolean, strings of either
storage, periods, intervals, pyarrow dtypes); ``attrs`` when JSON can hold them.

Object columns and index levels follow one rule: their values come back
exactly as given, or the frame is refused at submit with an error naming the
column, the row and the fix. Kept: text and bytes (a ``numpy.str_`` comes
back as ``str``); what Arrow stores and gives back unchanged (ints, bools,
dates, Decimals of one scale, 1-D numpy arrays such as an ``embedding``
column); anything else JSON gives back unchanged, stored as JSON text (lists
and dicts such as a ``messages`` column, mixes of str, int, float and bool).
Missing values come back as the kind they were: None, NaN, ``pd.NA`` or
``NaT``. Refused: tuples, sets, custom objects, NaN inside a list, ints past
64 bits, and anything else that would not come back as it is.

Reading the file back is :mod:`pdbatch.store.frameread` (re-exported here as
:func:`read` and :func:`from_table`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from ..atomic import atomic_path
from ..errors import InputError, PdbatchWarning
from .frameread import CODES, LABELS, META, VERSION, decode_objects, from_table, read

__all__ = ["from_table", "read", "to_table", "write"]

_ARROW_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError, UnicodeError)


class _Refused(Exception):
    """An object column's values that cannot be kept exactly: why, and at which position."""

    def __init__(self, reason: str, position: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.position = position


# ------------------------------------------------------------------ writing
def to_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as an Arrow table that :func:`from_table` turns back into the same frame.

    Parameters
    ----------
    frame : pandas.DataFrame

    Returns
    -------
    pyarrow.Table

    Raises
    ------
    InputError
        A column, index level or column label holds values that cannot be
        kept exactly; the message names it, the row, and how to fix it.
    """
    rows = _Columns(len(frame))
    meta: dict[str, Any] = {"version": VERSION, "rows": len(frame),
                            "index": rows.add_index(frame.index, "i", "index level")}
    meta["columns"] = []
    for i in range(frame.shape[1]):
        name = f"c{i}"
        rows.add(frame.iloc[:, i], name, _where_column(frame.columns[i]),
                 lambda p: f"row {_scalar(frame.index[p])!r}")
        meta["columns"].append(name)
    attrs = _attrs(frame.attrs)
    if attrs is not None:
        meta["attrs"] = attrs
    labels = _Columns(frame.shape[1])
    labels_meta = labels.add_index(frame.columns, "l", "column labels")
    table = rows.table({META: orjson.dumps({**meta, "specs": rows.specs}),
                        LABELS: _ipc_bytes(labels.table({META: orjson.dumps(
                            {"version": VERSION, "index": labels_meta, "specs": labels.specs})}))})
    _check_dtypes(frame, from_table(table.slice(0, 0)))
    return table


def write(table: pa.Table, path: Path) -> None:
    """Write a table from :func:`to_table` to ``path`` (replaced whole, private to the user)."""
    options = pa.ipc.IpcWriteOptions(compression="zstd" if pa.Codec.is_available("zstd") else None)
    with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, \
            pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)


def _where_column(label: Any) -> str:
    return f"column {_scalar(label)!r}"


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value  # 10, not np.int64(10), in messages


def _attrs(attrs: dict[str, Any]) -> Any:
    if not attrs:
        return None
    try:
        if _same(orjson.loads(orjson.dumps(attrs)), attrs):
            return attrs
    except (TypeError, orjson.JSONDecodeError):
        pass
    warnings.warn(f"frame.attrs ({sorted(map(str, attrs))}) cannot be kept as JSON in the job's copy of the "
                  f"frame; results of this job come back without them", PdbatchWarning, stacklevel=4)
    return None


class _Columns:
    """The columns of one Arrow table, each with how to turn it back into what it was."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.plain: dict[str, pd.Series] = {}  # through pandas' own Arrow conversion
        self.arrays: dict[str, pa.Array] = {}  # object columns, encoded here
        self.specs: dict[str, dict[str, Any]] = {}
        self.where: dict[str, str] = {}

    def add(self, s: pd.Series, name: str, where: str, row: Callable[[int], str]) -> None:
        """Add column ``name``; ``where`` and ``row`` name the column and a row in errors."""
        spec: dict[str, Any] = {"dtype": str(s.dtype)}
        self.where[name] = where
        if s.dtype == object:
            values = s.to_numpy()
            try:
                array, codes, extra = _encode_objects(values)
            except _Refused as exc:
                at = "" if exc.position is None else f" ({row(exc.position)}: {_show(values[exc.position])})"
                raise InputError(
                    f"{where} holds {exc.reason}{at}, which pdbatch cannot keep exactly in the job's copy of the "
                    f"frame (an Arrow file, never a pickle, so that opening a job folder runs no code). "
                    f"{_fix(where)}"
                ) from None
            self.arrays[name] = array
            if codes is not None:
                self.arrays[f"{name}:nulls"] = codes
            spec.update(extra)
        else:
            if isinstance(s.dtype, pd.StringDtype):  # str(dtype) does not tell the storage
                spec["string"] = [s.dtype.storage, "nan" if _is_nan(s.dtype.na_value) else "na"]
            self.plain[name] = s.reset_index(drop=True)
        self.specs[name] = spec

    def add_index(self, index: pd.Index, prefix: str, where: str) -> dict[str, Any]:
        names = _names(index, where)
        if isinstance(index, pd.RangeIndex):
            return {"range": [index.start, index.stop, index.step], "names": names}
        levels = []
        for k in range(index.nlevels):
            level = index.get_level_values(k)
            name = f"{prefix}{k}"
            label = where if index.nlevels == 1 and where == "column labels" else (
                f"{where} {index.names[k]!r}" if index.names[k] is not None else f"{where} {k}")
            # not Index.to_series: pandas 3 would make an object level of text a `str` one
            self.add(pd.Series(level.array, index=pd.RangeIndex(len(level)), dtype=level.dtype, copy=False),
                     name, label, lambda p: f"position {p}")
            levels.append(name)
        if isinstance(index, pd.MultiIndex):
            return {"levels": levels, "names": names, "multi": True, "freq": [_freq(lv) for lv in index.levels]}
        return {"levels": levels, "names": names, "multi": False, "freq": _freq(index)}

    def table(self, metadata: dict[bytes, bytes]) -> pa.Table:
        plain = pd.DataFrame(self.plain) if self.plain else None
        try:
            table = pa.Table.from_pandas(plain, preserve_index=False) if plain is not None else None
        except _ARROW_ERRORS:
            for name, s in self.plain.items():  # find the column to name it
                try:
                    pa.Table.from_pandas(s.to_frame(name), preserve_index=False)
                except _ARROW_ERRORS as exc:
                    raise InputError(f"{self.where[name]} (dtype {s.dtype}) cannot be stored in the job's copy of "
                                     f"the frame ({exc}). {_fix(self.where[name])}") from None
            raise
        if table is None:  # keeps the row count even with no column at all
            table = pa.table({"": pa.nulls(self.n)}).drop_columns([""])
        for name, array in self.arrays.items():
            table = table.append_column(name, array)
        return table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})


def _freq(index: pd.Index) -> str | None:
    return index.freqstr if isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)) else None


def _fix(where: str) -> str:
    if where.startswith("column labels"):
        return "Rename the columns (e.g. df.columns = df.columns.astype(str))."
    if where.startswith("index"):
        return "Convert the index (e.g. df.index = df.index.astype(str)) or drop it (df.reset_index(drop=True))."
    name = where.removeprefix("column ")
    return (f"Convert the column (e.g. df[{name}] = df[{name}].astype(str)) or drop it before submitting "
            f"(df.drop(columns=[{name}])) and join it back on the index afterwards.")


def _show(value: Any) -> str:
    text = repr(_scalar(value))
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def _names(index: pd.Index, where: str) -> list[Any]:
    names = list(index.names)
    try:
        if _same(orjson.loads(orjson.dumps(names)), names):
            return names
    except (TypeError, orjson.JSONDecodeError):
        pass
    raise InputError(f"the names of the {where.split()[0]} ({names}) cannot be kept in the job's copy of the frame; "
                     f"use strings, numbers or None (e.g. df.index.names = [str(n) for n in df.index.names])")


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _null_kind(value: Any) -> str | None:
    if value is None:
        return "none"
    if value is pd.NA:
        return "na"
    if value is pd.NaT:
        return "nat"
    if _is_nan(value):
        return "nan"
    return None


def _encode_objects(values: np.ndarray) -> tuple[pa.Array, pa.Array | None, dict[str, Any]]:
    """An object column as (array, null codes or None, spec); raises :class:`_Refused`."""
    mask = np.asarray(pd.isna(values), dtype=bool)
    kinds: dict[str, int] = {}
    for p in np.flatnonzero(mask):
        kind = _null_kind(values[p])
        if kind is None:
            raise _Refused("a missing-value marker other than None, NaN, pd.NA or NaT", int(p))
        kinds.setdefault(kind, int(p))
    codes = None
    if len(kinds) > 1:
        code = np.zeros(len(values), dtype=np.int8)
        code[mask] = [CODES[_null_kind(v) or "none"] for v in values[mask]]
        codes = pa.array(code)
    spec: dict[str, Any] = {"nulls": next(iter(kinds)) if len(kinds) == 1 else ("mixed" if kinds else None)}
    clean = values.copy()
    clean[mask] = None
    present = clean[~mask]
    inferred = pd.api.types.infer_dtype(present, skipna=False) if len(present) else "empty"
    if inferred in ("string", "bytes", "empty"):
        arrow_type = {"string": pa.large_string(), "bytes": pa.large_binary(), "empty": pa.null()}[inferred]
        try:
            return pa.array(clean, type=arrow_type), codes, {**spec, "object": "text"}
        except _ARROW_ERRORS as exc:
            raise _Refused(f"text Arrow cannot encode ({exc})") from None
    try:  # what Arrow holds natively: ndarrays (an embedding column), Decimals, dates, ints with None, ...
        array = pa.array(clean)
    except _ARROW_ERRORS:
        pass
    else:
        for how in ("arrow", "pylist"):
            try:
                return array, codes, _checked(values, mask, array, {**spec, "object": how})
            except _Refused:
                continue
    # JSON text: lists and dicts (a messages column) and mixes of str, int, float, bool
    encoded: list[bytes | None] = [None] * len(values)
    for p in np.flatnonzero(~mask):
        try:
            encoded[p] = orjson.dumps(values[p])
        except TypeError:
            raise _Refused("values that would not come back as they are", int(p)) from None
    array = pa.array(encoded, type=pa.large_binary())
    return array, codes, _checked(values, mask, array, {**spec, "object": "json"})


def _checked(values: np.ndarray, mask: np.ndarray, array: pa.Array, spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` if decoding ``array`` gives ``values`` back exactly; raises :class:`_Refused` at the first change."""
    back = decode_objects(pa.chunked_array([array]), spec, None)
    for p in np.flatnonzero(~mask):
        if not _same(values[p], back[p]):
            raise _Refused("values that would not come back as they are", int(p))
    return spec


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types, all the way down (``1 != 1.0``, ``(1,) != [1]``, ``nan == nan``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(
            np.array_equal(a, b, equal_nan=a.dtype.kind in "fcmM"))
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (str, bytes, int)):
        return bool(a == b)
    return repr(a) == repr(b)  # floats (-0.0, nan), Decimals' scale, datetimes with their zone


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _check_dtypes(frame: pd.DataFrame, back: pd.DataFrame) -> None:
    """Refuse, at submit, any column whose dtype would not come back as it is."""
    for i in range(frame.shape[1]):
        if back.dtypes.iloc[i] != frame.dtypes.iloc[i]:
            where = _where_column(frame.columns[i])
            raise InputError(f"{where} (dtype {frame.dtypes.iloc[i]}) would come back as "
                             f"{back.dtypes.iloc[i]} from the job's copy of the frame. {_fix(where)}")
    for name, a, b in (("index", frame.index, back.index), ("column labels", frame.columns, back.columns)):
        same = type(a) is type(b) and list(a.names) == list(b.names) and all(
            a.get_level_values(k).dtype == b.get_level_values(k).dtype for k in range(a.nlevels))
        if name == "column labels":
            same = same and a.equals(b)
        if not same:
            dtypes = [str(a.get_level_values(k).dtype) for k in range(a.nlevels)]
            raise InputError(f"the {name} ({type(a).__name__}, dtypes {dtypes}) would not come back as it is "
                             f"from the job's copy of the frame. {_fix(name)}")
