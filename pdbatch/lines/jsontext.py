"""JSON text from Arrow string arrays, without a Python str per row.

The JSONL writer (:mod:`pdbatch.builders.requests`) builds request lines as Arrow
arrays: these helpers escape strings as JSON requires, byte for byte as
``orjson.dumps(s)[1:-1]`` (``tests/test_scale.py`` holds them to it), and hand
out an array's bytes as one buffer.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["data_buffer", "dumps_mapping", "json_escape", "mask", "scalar"]


def json_escape(values: pa.Array) -> pa.LargeStringArray:
    """JSON-escape each string of ``values`` (without the surrounding quotes).

    The bytes are what ``orjson.dumps(s)[1:-1]`` gives. JSON requires escaping
    only quotes, backslashes and characters below 0x20; everything else
    (non-ASCII, U+2028) is written as UTF-8, as orjson does. Most rows need
    nothing and pass through untouched; the rest have quotes, backslashes,
    newlines, carriage returns and tabs replaced in Arrow, and rows with other
    control characters (rare) are encoded by orjson.

    Parameters
    ----------
    values : pyarrow.Array
        Strings without nulls.

    Returns
    -------
    pyarrow.LargeStringArray
    """
    values = values.cast(pa.large_string()) if values.type != pa.large_string() else values
    idx = _rows_with_bytes(values, _needs_escape)
    if not len(idx):
        return values
    sub = values.take(pa.array(idx))
    # backslash first, so that the backslashes added next are not doubled
    for raw, esc in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        sub = pc.replace_substring(sub, raw, esc)
    rare = _rows_with_bytes(sub, lambda b: b < 0x20)
    if len(rare):
        redo = [orjson.dumps(s)[1:-1].decode() for s in values.take(pa.array(idx[rare])).to_pylist()]
        sub = pc.replace_with_mask(sub, mask(len(sub), rare), pa.array(redo, type=pa.large_string()))
    return pc.replace_with_mask(values, mask(len(values), idx), sub)


def _rows_with_bytes(values: pa.LargeStringArray, test: Any) -> np.ndarray:
    """Rows of ``values`` holding a byte for which ``test`` is true.

    A few numpy compares over the data buffer are several times faster than a
    regex kernel per string; hits map to rows through the offsets.
    """
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64, count=len(values) + 1, offset=8 * values.offset)
    data = values.buffers()[2]
    if data is None or offsets[-1] == offsets[0]:
        return np.empty(0, dtype=np.int64)
    hits = np.flatnonzero(test(np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]))
    return np.unique(np.searchsorted(offsets - offsets[0], hits, side="right") - 1)


def _needs_escape(b: np.ndarray) -> np.ndarray:
    # in place, with one scratch array: this runs over every byte of every prompt
    flag = np.less(b, 0x20)
    tmp = np.equal(b, ord('"'))
    flag |= tmp
    np.equal(b, ord("\\"), out=tmp)
    flag |= tmp
    return flag


def mask(n: int, idx: np.ndarray) -> pa.BooleanArray:
    """A mask of ``n`` booleans, True at ``idx``."""
    m = np.zeros(n, dtype=bool)
    m[idx] = True
    return pa.array(m)


def scalar(b: bytes) -> pa.Scalar:
    """A large_string scalar of UTF-8 bytes, to join with string arrays."""
    return pa.scalar(b.decode(), type=pa.large_string())


def data_buffer(lines: pa.LargeStringArray) -> pa.Buffer:
    """The concatenated bytes of a null-free string array: a zero-copy slice of its data buffer."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64, count=len(lines) + 1, offset=8 * lines.offset)
    start, stop = int(offsets[0]), int(offsets[-1])
    return lines.buffers()[2].slice(start, stop - start)


def dumps_mapping(mapping: Mapping[str, Any] | Iterable[tuple[str, Any]], chunk: int = 8192) -> bytearray:
    """``orjson.dumps(dict(mapping))`` for a large object, written a chunk of items at a time into one buffer.

    orjson grows its output buffer as it writes and the bytes it returns keep
    that capacity: a 14 MB object of 170,000 keys took 71 MB. Small pieces
    appended to one buffer take about the output's size
    (``benchmarks/request_file_memory.py``).
    """
    items = iter(mapping.items() if isinstance(mapping, Mapping) else mapping)
    out = bytearray(b"{")
    for piece in iter(lambda: list(itertools.islice(items, chunk)), []):
        if len(out) > 1:
            out += b","
        out += memoryview(orjson.dumps(dict(piece)))[1:-1]
    out += b"}"
    return out
