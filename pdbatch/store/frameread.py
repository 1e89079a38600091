"""Reading the job's copy of the user's frame (written by :mod:`pdbatch.store.frames`, which says what is kept).

The file's format is decoded here, without anything of the writer's checks:
the metadata markers, how each kind of missing value comes back, and how
object columns and index levels were encoded. :mod:`pdbatch.store.frames`
writes with the same markers and re-exports :func:`read` and :func:`from_table`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

__all__ = ["CODES", "LABELS", "META", "NULLS", "VERSION", "decode_objects", "from_table", "read", "with_freq"]

#: The schema metadata keys of the frame (and of its column labels), and the format's version.
META = b"pdbatch.frame"
LABELS = b"pdbatch.labels"
VERSION = 1
# How each kind of missing value is written back; codes for columns that mix them.
NULLS: dict[str, Any] = {"none": None, "nan": float("nan"), "na": pd.NA, "nat": pd.NaT}
CODES = {"none": 1, "nan": 2, "na": 3, "nat": 4}


def with_freq(index: pd.Index, freq: str | None) -> pd.Index:
    """``index`` with its saved ``freq`` (a DatetimeIndex's or TimedeltaIndex's), when its values still fit it."""
    # checked against the values by pandas: the freq comes back, or the index as it is
    if not freq or not isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
        return index
    try:
        return type(index)(index, freq=freq)
    except ValueError:
        return index


def read(path: Path) -> pd.DataFrame:
    """Read a frame written by :func:`write`.

    Raises
    ------
    pyarrow.ArrowException, ValueError, KeyError
        The file is not a complete frame file (the caller names the file).
    """
    with pa.memory_map(str(path)) as source:
        return from_table(pa.ipc.open_file(source).read_all())


def from_table(table: pa.Table) -> pd.DataFrame:
    """The frame :func:`to_table` was given."""
    meta = orjson.loads(table.schema.metadata[META])
    if meta.get("version") != VERSION:
        raise ValueError(f"frame file version {meta.get('version')!r}; this pdbatch reads version {VERSION}")
    n = meta["rows"] if table.num_columns == 0 else table.num_rows  # a file of no column keeps no row count
    columns = _read_columns(table, meta["specs"])
    index = _index(meta["index"], columns, n)
    labels_table = pa.ipc.open_stream(table.schema.metadata[LABELS]).read_all()
    labels_meta = orjson.loads(labels_table.schema.metadata[META])
    labels = _index(labels_meta["index"], _read_columns(labels_table, labels_meta["specs"]), len(meta["columns"]))
    frame = pd.DataFrame({i: columns[name] for i, name in enumerate(meta["columns"])}, index=pd.RangeIndex(n))
    frame.columns = labels
    frame.index = index
    if meta.get("attrs"):
        frame.attrs.update(meta["attrs"])
    return frame


def _read_columns(table: pa.Table, specs: dict[str, dict[str, Any]]) -> dict[str, pd.Series]:
    plain_names = [name for name, spec in specs.items() if "object" not in spec]
    plain = table.select(plain_names).to_pandas() if plain_names else None
    out = {}
    for name, spec in specs.items():
        if "object" in spec:
            codes = table.column(f"{name}:nulls").to_numpy() if spec.get("nulls") == "mixed" else None
            out[name] = pd.Series(decode_objects(table.column(name), spec, codes), dtype=object, copy=False)
            continue
        assert plain is not None
        s = plain[name]
        if "string" in spec and s.dtype != (want := _string_dtype(*spec["string"])):
            s = s.astype(want)
        out[name] = s
    return out


def _string_dtype(storage: str, na: str) -> pd.StringDtype:
    if na == "nan":  # pandas >= 2.3 (the `str` dtype of pandas 3)
        return pd.StringDtype(storage, na_value=np.nan)  # type: ignore[call-arg]
    return pd.StringDtype(storage)


def decode_objects(array: pa.ChunkedArray, spec: dict[str, Any], codes: np.ndarray | None) -> np.ndarray:
    """An object column's values back from its Arrow ``array``, as its ``spec`` says it was encoded.

    ``codes`` tells, for a column that mixes kinds of missing values, which one each null was.
    """
    how = spec["object"]
    n = len(array)
    out = np.empty(n, dtype=object)
    if how == "text":
        out[:] = array.to_numpy(zero_copy_only=False)
    elif how == "json":
        for i, raw in enumerate(array.to_pylist()):
            out[i] = None if raw is None else orjson.loads(raw)
    elif how == "arrow":
        out[:] = array.to_pandas().to_numpy(dtype=object)
    elif how == "pylist":
        for i, v in enumerate(array.to_pylist()):
            out[i] = v
    else:
        raise ValueError(f"unknown object column encoding {how!r}")
    nulls = spec.get("nulls")
    if nulls is not None:
        mask = array.is_null().to_numpy(zero_copy_only=False)
        if nulls == "mixed":
            assert codes is not None
            for kind, code in CODES.items():
                out[mask & (codes == code)] = NULLS[kind]
        else:
            out[mask] = NULLS[nulls]
    return out


def _index(spec: dict[str, Any], columns: dict[str, pd.Series], n: int) -> pd.Index:
    names = spec["names"]
    if "range" in spec:
        start, stop, step = spec["range"]
        if len(range(start, stop, step)) != n:  # the first rows only (to_table's check of the dtypes)
            stop = start + step * n
        return pd.RangeIndex(start, stop, step, name=names[0])
    levels = [columns[name] for name in spec["levels"]]
    if spec["multi"]:
        index = pd.MultiIndex.from_arrays(levels, names=names)
        for k, level in enumerate(levels):  # from_arrays infers each level's dtype anew, without a freq
            values = index.levels[k].astype(level.dtype) if index.levels[k].dtype != level.dtype else index.levels[k]
            values = with_freq(values, spec["freq"][k])
            if values is not index.levels[k]:
                index = index.set_levels(values, level=k)
        return index
    s = levels[0]
    return with_freq(pd.Index(s.array, dtype=s.dtype, name=names[0], copy=False), spec["freq"])
