"""Output files -> one typed row per output line, read a block at a time.

There are two readers with one meaning, that of :func:`pdbatch.outputs.outcome`:
:func:`parse_lines` reads one line at a time with it (the reference), and
:func:`parse_bytes` / :func:`parse_files` decode blocks of lines with msgspec
into a typed schema of only the fields that decide a row (the echoed
request, most of a line, is skipped unread), handing back to the reference
only the lines they cannot decide (malformed, failed with an error object,
unusual shapes). ``tests/test_scale.py`` holds the two to the same rows.
Joining the rows to the frame is :mod:`pdbatch.join`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, cast

import msgspec
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from . import outputs
from .outputs import DECODE_ERRORS, Outcome

__all__ = ["INT", "PARSED_COLUMNS", "STRING", "dedupe", "iter_file_lines", "parse_bytes", "parse_files",
           "parse_lines", "read_predictions", "typed"]

PARSED_COLUMNS = Outcome._fields

#: Bytes decoded at once: small enough to stay in cache and to bound the
#: per-line reading a bad line costs its block, large enough that the
#: per-block work does not show.
BLOCK_BYTES = 256 << 10

STRING = pd.StringDtype("pyarrow")  # what the "string" alias means with pyarrow installed
INT = pd.Int64Dtype()


def _warn_unreadable(unreadable: int) -> None:
    if unreadable:
        warnings.warn(
            f"{unreadable} output line(s) were not JSON and had no readable custom_id; their rows show as missing",
            RuntimeWarning,
            stacklevel=3,
        )


def parse_lines(lines: Iterable[bytes]) -> pd.DataFrame:
    """Parse output lines of any supported shape into one row per line, one line at a time.

    The simple reference parser; :func:`parse_bytes` gives the same rows with
    typed columns and is the one to use for large outputs. A line that is not
    JSON keeps its ``custom_id`` when one can be read from the raw bytes, with
    an ``error`` saying the line was malformed; one without a readable id is
    reported in a warning (it cannot be joined to a row).

    Parameters
    ----------
    lines : iterable of bytes
        JSONL lines, with or without their newline.

    Returns
    -------
    pandas.DataFrame
        Object columns ``custom_id``, ``response``, ``finish_reason``,
        ``prompt_tokens``, ``completion_tokens``, ``embedding``, ``error``,
        with ``None`` where a line has no value.
    """
    rows, _, unreadable = outputs.read_lines(lines)
    _warn_unreadable(unreadable)
    # object columns throughout: None stays None (pandas would otherwise infer
    # its str dtype and turn a missing error into NaN)
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(PARSED_COLUMNS)
    out = pd.DataFrame({c: pd.Series(list(v), dtype=object) for c, v in zip(PARSED_COLUMNS, columns, strict=True)})
    bad_id = out["custom_id"].map(lambda v: not isinstance(v, str))
    if bad_id.any():
        # An id that is not a str cannot match a request; keep it visible as text.
        out.loc[bad_id, "custom_id"] = out.loc[bad_id, "custom_id"].map(lambda v: None if v is None else str(v))
    return out


# ------------------------------------------------------------ typed columns


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


def _typed_row(cid: Any, text: Any, finish: Any, ptok: Any, ctok: Any, emb: Any, error: Any) -> tuple[Any, ...]:
    """An :class:`~pdbatch.outputs.Outcome` with the values of the typed columns (str, int, float32 array or None)."""
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


class _Columns:
    """Typed rows gathered a block at a time, kept as Arrow arrays.

    A block's rows become Arrow arrays at once: long Python lists of strings
    would make every full garbage collection visit each string.
    """

    def __init__(self) -> None:
        self.chunks: list[pa.StructArray] = []

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        """Append typed rows (see :func:`_typed_row`)."""
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
    """``parsed`` with typed columns, whichever parser made it."""
    if isinstance(parsed["custom_id"].dtype, pd.StringDtype):
        return parsed
    columns = _Columns()
    columns.add([_typed_row(*r) for r in zip(*(parsed[c].tolist() for c in PARSED_COLUMNS), strict=True)])
    return columns.frame().set_axis(parsed.index)


# ------------------------------------------------------- blocks via msgspec
# msgspec reads only the fields that decide a row, typed as the common shapes
# have them, and skips the rest (the echoed request, ids, timestamps) without
# building it. A line whose values have other types fails to decode and goes
# to the reference, as does any line the reduction below does not decide. A
# key holding null decodes like a missing key, as the reference reads it.
#
# Where msgspec accepts what the reference (orjson) rejects: it checks
# neither the UTF-8 nor the range of numbers in values it skips. Blocks with
# bytes above 127 are checked for UTF-8 first (a file written as Latin-1 is
# plausible). A number beyond a double (1e999) in an ignored field is not
# looked for: such a line is read here but is malformed to the reference.
# No writer of these files produces one, and a scan of every block for it
# would cost about a tenth of the parse.

_I64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]  # beyond: _int gives None, the reference decides


class _Message(msgspec.Struct, gc=False):
    content: str | None = None


class _Choice(msgspec.Struct, gc=False):
    message: _Message | None = None
    text: str | None = None
    finish_reason: str | None = None


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: _I64 | None = None
    completion_tokens: _I64 | None = None


class _Datum(msgspec.Struct, gc=False):
    # ints stay ints, as the reference decodes them, so the float32 values are the same
    embedding: list[_I64 | float] | None = None


class _Body(msgspec.Struct, gc=False):
    choices: list[_Choice] | None = None
    data: list[_Datum] | None = None
    usage: _Usage | None = None


class _Response(_Body, gc=False):
    status_code: int | None = None  # OpenAI batch envelope: the completion is in body
    body: _Body | None = None


class _Line(msgspec.Struct, gc=False):
    custom_id: str | None = None
    status: str | None = None
    error: Any = None  # only whether it is set matters: such lines go to the reference
    response: _Response | str | None = None  # text: JSON from a BigQuery table, for the reference


_DECODER = msgspec.json.Decoder(_Line)


def _valid_utf8(data: memoryview, codes: np.ndarray) -> bool:
    """Whether ``data`` (whose bytes ``codes`` views) is UTF-8; ASCII is answered at numpy speed."""
    if not len(codes) or codes.max() < 128:
        return True
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    try:  # Arrow's validation is several times faster than bytes.decode
        pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(data)]).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _decode_line(line: bytes) -> _Line | None:
    if not _valid_utf8(memoryview(line), np.frombuffer(line, dtype=np.uint8)):
        return None
    try:
        return _DECODER.decode(line)
    except DECODE_ERRORS:
        return None


def _reduce(objs: Sequence[_Line | None]) -> tuple[list[tuple[Any, ...] | None], list[int]]:
    """Typed rows of decoded lines with a common shape, and the positions left to the reference (None there).

    Mirrors :func:`pdbatch.outputs.outcome` for successes (Vertex and OpenAI envelopes, chat
    and embeddings) and for failures carrying a ``status`` text.
    """
    rows: list[tuple[Any, ...] | None] = []
    add = rows.append
    slow: list[int] = []
    for o in objs:
        if o is not None:
            status = o.status
            if status and (status := status.strip()):  # a status text is the error, whatever else the line holds
                add((o.custom_id, None, None, None, None, None, status))
                continue
            r = o.response
            if not o.error and type(r) is _Response:
                b: _Body | None = r
                if r.status_code is not None or r.body is not None:  # OpenAI envelope
                    b = r.body if r.status_code == 200 else None
                if b is not None:
                    choices = b.choices
                    u = b.usage
                    if choices:
                        c = choices[0]
                        m = c.message
                        text = None if m is None else m.content
                        if text is None:
                            text = c.text
                        if u is None:
                            add((o.custom_id, text, c.finish_reason, None, None, None, None))
                        else:
                            add((o.custom_id, text, c.finish_reason, u.prompt_tokens, u.completion_tokens, None, None))
                        continue
                    if choices is None and b.data and b.data[0].embedding is not None:
                        ptok, ctok = (None, None) if u is None else (u.prompt_tokens, u.completion_tokens)
                        add(_typed_row(o.custom_id, None, None, ptok, ctok, b.data[0].embedding, None))
                        continue
        # not decoded, an error object, no choice nor embedding: the reference words these
        slow.append(len(rows))
        add(None)
    return rows, slow


class _Parser:
    """Reads blocks of whole lines into typed columns, in line order."""

    def __init__(self) -> None:
        self.columns = _Columns()
        self.unreadable = 0

    def add(self, data: memoryview) -> None:
        """Parse one block of whole lines (the last may lack its newline)."""
        codes = np.frombuffer(data, dtype=np.uint8)  # numpy scans bytes several times faster than bytes methods
        n_lines = int(np.count_nonzero(codes == 10)) + bool(len(codes) and codes[-1] != 10)
        objs: Sequence[_Line | None] | None = None
        if _valid_utf8(data, codes):
            with contextlib.suppress(*DECODE_ERRORS):
                objs = _DECODER.decode_lines(data)
        lines: list[bytes] | None = None
        # decode_lines skips blank lines and reads two values on one line or
        # one value over two lines: one object per line keeps objs aligned
        # with the lines (unless both of the last two happen in one block,
        # which takes two lines corrupted in complementary ways)
        if objs is None or len(objs) != n_lines:
            lines = bytes(data).split(b"\n")[:n_lines]
            objs = [_decode_line(line) for line in lines]
        rows, slow = _reduce(objs)
        if slow:
            lines = lines or bytes(data).split(b"\n")
            found, where, unreadable = outputs.read_lines([lines[i] for i in slow])
            self.unreadable += unreadable
            for k, row in zip(where, found, strict=True):
                rows[slow[k]] = _typed_row(*row)
            if len(found) < len(slow):  # blank or unreadable lines give no row
                rows = [row for row in rows if row is not None]
        self.columns.add(cast("list[tuple[Any, ...]]", rows))  # every None was replaced or dropped

    def frame(self) -> pd.DataFrame:
        _warn_unreadable(self.unreadable)
        return self.columns.frame()


def _blocks(data: memoryview, size: int) -> Iterator[memoryview]:
    """Slices of about ``size`` bytes, each ending after a newline (the last may not)."""
    start, n = 0, len(data)
    while start < n:
        stop = min(start + size, n)
        while stop < n:  # extend to the end of the line that straddles the cut
            window = data[stop : stop + (64 << 10)].tobytes()
            i = window.find(b"\n")
            if i >= 0:
                stop += i + 1
                break
            stop += len(window)
        yield data[start:stop]
        start = stop


def _frame_of(blocks: Iterable[memoryview]) -> pd.DataFrame:
    parser = _Parser()
    for block in blocks:
        parser.add(block)
    return parser.frame()


def parse_bytes(data: bytes | bytearray | memoryview) -> pd.DataFrame:
    """Parse a buffer of output JSONL into one row per line, a block at a time.

    Gives the rows of :func:`parse_lines` (a malformed line keeps a readable
    ``custom_id`` with an error; one without is reported in a warning), in
    line order, but decodes only the fields that decide a row, with a typed
    schema, and keeps typed columns.

    Parameters
    ----------
    data : bytes-like
        JSONL; a last line without newline is parsed too (and is likely
        malformed if a writer died mid-line).

    Returns
    -------
    pandas.DataFrame
        ``custom_id``, ``response``, ``finish_reason`` and ``error`` as
        ``"string"``, ``prompt_tokens`` and ``completion_tokens`` as
        ``"Int64"``, ``embedding`` as objects (float32 arrays or None).
    """
    view = memoryview(data).cast("B")
    return _frame_of(_blocks(view, BLOCK_BYTES))


def _file_blocks(path: Path, complete_only: bool) -> Iterator[memoryview]:
    """Blocks of whole lines, read into one reused buffer: each is parsed before the next is read."""
    buf = bytearray(BLOCK_BYTES)
    kept = 0  # bytes of an unfinished line at the front of buf
    with open(path, "rb", buffering=0) as fh:
        while True:
            if kept == len(buf):  # a line longer than the buffer: a new one, as a view may be alive
                buf = buf + bytearray(len(buf))
            with memoryview(buf) as view:
                got = fh.readinto(view[kept:])
                end = kept + got
                cut = buf.rfind(b"\n", kept, end) + 1 if got else 0
                if cut:
                    yield view[:cut]
                elif not got:  # end of file
                    if kept and not complete_only:  # a half-written last line is not data for a live job
                        yield view[:kept]
                    return
            if cut:
                buf[: end - cut] = buf[cut:end]
                kept = end - cut
            else:
                kept = end


def parse_files(paths: Iterable[str | os.PathLike[str]], *, complete_only: bool = False) -> pd.DataFrame:
    """Parse output JSONL files, streaming, into one frame (the rows of :func:`parse_bytes`).

    Parameters
    ----------
    paths : iterable of path
        JSONL files, read in order, a block at a time.
    complete_only : bool
        Drop a last line without newline: for files a worker may still be
        writing or may have died writing.

    Returns
    -------
    pandas.DataFrame
        See :func:`parse_bytes`.
    """
    return _frame_of(b for p in paths for b in _file_blocks(Path(p), complete_only))


def iter_file_lines(path: str | os.PathLike[str], *, complete_only: bool = False) -> Iterable[bytes]:
    """Lines of a JSONL file; with ``complete_only``, a last line without newline is dropped.

    ``complete_only`` is for files a worker may still be writing or may have
    died writing: a half-written last line is not data.
    """
    data = Path(path).read_bytes()
    if complete_only and data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    return data.splitlines()


def read_predictions(path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Read output JSONL (a file, a folder of ``*.jsonl``, or several files) into a frame keyed by ``custom_id``.

    Parameters
    ----------
    path : path or list of paths
        A JSONL file, a folder whose ``*.jsonl`` files are all read, or a list of files.

    Returns
    -------
    pandas.DataFrame
        One row per ``custom_id`` (a success wins over a failure when an id
        appears twice), indexed by ``custom_id``, with the columns of
        :func:`parse_bytes`.
    """
    paths: list[Path] = []
    for p in [path] if isinstance(path, (str, os.PathLike)) else list(path):
        p = Path(p)
        paths.extend(sorted(p.rglob("*.jsonl")) if p.is_dir() else [p])
    return dedupe(parse_files(paths)).set_index("custom_id")


def dedupe(parsed: pd.DataFrame) -> pd.DataFrame:
    """One line per custom_id: a success beats a failure, later beats earlier."""
    if not parsed["custom_id"].duplicated().any():
        return parsed
    order = np.lexsort((np.arange(len(parsed)), parsed["error"].isna().to_numpy()))
    return parsed.iloc[order].drop_duplicates("custom_id", keep="last").sort_index()


