"""Output lines -> per-row columns, joined back to the frame by ``custom_id``.

Output order is not input order, lines may be missing, repeated, truncated by a
crash or malformed, and they come in several shapes (see SPEC.md):

* Vertex style: ``{"custom_id", "request"|"body", "response": <chat.completion
  or embeddings list>, "status": "" | "<error>", "processed_time"}``;
* OpenAI batch style: ``{"id", "custom_id", "response": {"status_code",
  "body": {...}}, "error": null | {"code", "message"}}``;
* rows read from a BigQuery output table, where ``response`` may be JSON text.

Every shape is reduced to the same columns. There are two parsers with one
meaning: :func:`_extract` reads one decoded line (the reference), and
:func:`parse_bytes` reads whole blocks with Arrow's JSON reader and reduces
them with array operations, handing back to :func:`_extract` only the lines
it cannot decide (malformed, failed with an error object, unusual shapes).
The join never trusts position in the output: it maps each line's
``custom_id`` to a frame position, with integer arithmetic when ids are the
default ``row-<n>``, and moves whole columns with Arrow ``take``.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from .models import EMBEDDINGS, Kind
from .requests import POSITIONAL_PREFIX

__all__ = [
    "CHAT_COLUMNS",
    "EMBEDDING_COLUMNS",
    "join_results",
    "parse_bytes",
    "parse_files",
    "parse_lines",
    "read_predictions",
]

CHAT_COLUMNS = ("response", "finish_reason", "prompt_tokens", "completion_tokens", "error")
EMBEDDING_COLUMNS = ("embedding", "error")
PARSED_COLUMNS = ("custom_id", "response", "finish_reason", "prompt_tokens", "completion_tokens", "embedding", "error")
_ID_RE = re.compile(rb'"custom_id"\s*:\s*"((?:[^"\\]|\\.)*)"')
MISSING = "missing: the job returned no output line for this row"

#: Bytes handed to Arrow's reader at once; a block it rejects is retried in
#: sub-blocks, so one bad line costs at most a sub-block of per-line parsing.
BLOCK_BYTES = 32 << 20
SUB_BLOCK_BYTES = 1 << 20

_STR = pd.StringDtype("pyarrow")  # what the "string" alias means with pyarrow installed
_INT = pd.Int64Dtype()


def output_columns(kind: Kind) -> tuple[str, ...]:
    """The columns a result frame gains for a job of ``kind``."""
    return EMBEDDING_COLUMNS if kind == EMBEDDINGS else CHAT_COLUMNS


# ------------------------------------------------------- one line (reference)
# A key holding null means the same as a missing key throughout, because that
# is all the columnar path can see.


def _error_text(obj: dict[str, Any]) -> str | None:
    """The row's error, from whichever field its shape uses; None on success."""
    status = obj.get("status")
    if isinstance(status, str) and status.strip():
        return status.strip()
    if isinstance(status, dict):  # some services send a google.rpc.Status
        return str(status.get("message") or status)
    err = obj.get("error")
    if err:
        if isinstance(err, dict):
            code = err.get("code")
            msg = err.get("message") or orjson.dumps(err).decode()
            return f"{code}: {msg}" if code else str(msg)
        return str(err)
    return None


def _response_body(obj: dict[str, Any]) -> Any:
    resp = obj.get("response")
    if isinstance(resp, (str, bytes)) and resp:
        try:
            resp = orjson.loads(resp)
        except orjson.JSONDecodeError:
            return None
    return resp


def _extract(obj: dict[str, Any]) -> tuple[Any, ...]:
    """Reduce one output object to (custom_id, text, finish, prompt_t, completion_t, embedding, error)."""
    cid = obj.get("custom_id")
    error = _error_text(obj)
    resp = _response_body(obj)
    if isinstance(resp, dict) and (resp.get("status_code") is not None or resp.get("body") is not None):
        # OpenAI batch envelope: the completion is in body
        body = resp.get("body")
        if resp.get("status_code") != 200 and error is None:
            detail = body.get("error") if isinstance(body, dict) else body
            if isinstance(detail, dict):
                detail = detail.get("message") or detail
            error = f"HTTP {resp.get('status_code')}: {detail}"
        resp = body
    text = finish = ptok = ctok = emb = None
    if error is None:
        if not isinstance(resp, dict):
            error = "no response in the output line"
        elif resp.get("choices") is not None:
            try:
                choice = resp["choices"][0]
                text = (choice.get("message") or {}).get("content")
                if text is None:
                    text = choice.get("text")
                finish = choice.get("finish_reason")
            except (IndexError, TypeError, AttributeError, KeyError):
                error = "malformed response: no choices"
        elif resp.get("data") is not None:
            try:
                emb = resp["data"][0]["embedding"]
            except (IndexError, TypeError, KeyError):
                error = "malformed response: no embedding"
            if emb is None and error is None:
                error = "malformed response: no embedding"
        elif resp.get("error") is not None:
            detail = resp["error"]
            error = str(detail.get("message") if isinstance(detail, dict) else detail)
        else:
            error = "malformed response: neither choices nor data"
        usage = resp.get("usage") if isinstance(resp, dict) else None
        if isinstance(usage, dict):
            ptok = usage.get("prompt_tokens")
            ctok = usage.get("completion_tokens")
    return (cid, text, finish, ptok, ctok, emb, error)


def _parse_raw_lines(lines: Iterable[bytes]) -> tuple[list[tuple[Any, ...]], list[int], int]:
    """Per-line parsing: the rows, the ordinal of the line each came from, and the unreadable count.

    A line that is not a JSON object keeps its ``custom_id`` when one can be
    read from the raw bytes, with an error saying the line was malformed.
    """
    rows: list[tuple[Any, ...]] = []
    where: list[int] = []
    unreadable = 0
    loads = orjson.loads
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            obj = loads(raw)
            if not isinstance(obj, dict):
                raise TypeError
        except (orjson.JSONDecodeError, TypeError):
            m = _ID_RE.search(raw)
            if m is None:
                unreadable += 1
                continue
            try:
                cid = orjson.loads(b'"' + m.group(1) + b'"')
            except orjson.JSONDecodeError:
                unreadable += 1
                continue
            rows.append((cid, None, None, None, None, None, f"malformed output line: {bytes(raw[:200])!r}"))
            where.append(i)
            continue
        rows.append(_extract(obj))
        where.append(i)
    return rows, where, unreadable


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
    rows, _, unreadable = _parse_raw_lines(lines)
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

_EMB = pa.list_(pa.float32())
_TABLE = pa.schema(
    [
        ("custom_id", pa.large_string()),
        ("response", pa.large_string()),
        ("finish_reason", pa.large_string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("embedding", _EMB),
        ("error", pa.large_string()),
    ]
)


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


def _rows_table(rows: Iterable[tuple[Any, ...]]) -> pa.Table:
    """Rows from :func:`_extract` (or a :func:`parse_lines` frame) as a typed table."""
    cols: list[list[Any]] = [[] for _ in PARSED_COLUMNS]
    for cid, text, finish, ptok, ctok, emb, error in rows:
        if emb is not None:
            try:
                emb = np.asarray(emb, dtype=np.float32)
                if emb.ndim != 1:
                    raise ValueError
            except (TypeError, ValueError):
                emb = None
                error = error or "malformed response: the embedding is not a list of numbers"
        for col, v in zip(
            cols,
            # (a NaN id is a None that pandas stored in an object column)
            (None if cid is None or cid != cid else str(cid), _text(text), _text(finish), _int(ptok), _int(ctok), emb, error),
            strict=True,
        ):
            col.append(v)
    return pa.table([pa.array(c, type=f.type) for c, f in zip(cols, _TABLE, strict=True)], schema=_TABLE)


def _table_frame(tb: pa.Table) -> pd.DataFrame:
    """A typed table as the parsed frame: "string", "Int64", and float32 arrays for embeddings."""
    out = {}
    for name in PARSED_COLUMNS:
        col = tb.column(name)
        if name == "embedding":
            out[name] = pd.Series(_embedding_objects(col), dtype=object)
        else:
            out[name] = (_INT if pa.types.is_integer(col.type) else _STR).__from_arrow__(col)
    return pd.DataFrame(out)


def _embedding_objects(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """One float32 array (a view into one buffer) or None per row."""
    out = np.full(len(col), None, dtype=object)
    if col.null_count == len(col):
        return out
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False)
    valid = np.flatnonzero(arr.is_valid().to_numpy(zero_copy_only=False))
    out[valid] = [values[offsets[i] : offsets[i + 1]] for i in valid.tolist()]
    return out


def _typed(parsed: pd.DataFrame) -> pd.DataFrame:
    """``parsed`` with typed columns, whichever parser made it."""
    if isinstance(parsed["custom_id"].dtype, pd.StringDtype):
        return parsed
    rows = zip(*(parsed[c].tolist() for c in PARSED_COLUMNS), strict=True)
    return _table_frame(_rows_table(rows)).set_axis(parsed.index)


# --------------------------------------------------------- blocks via Arrow

_CHOICE = pa.struct(
    [("message", pa.struct([("content", pa.string())])), ("text", pa.string()), ("finish_reason", pa.string())]
)
_BODY = [
    ("choices", pa.list_(_CHOICE)),
    ("data", pa.list_(pa.struct([("embedding", pa.list_(pa.float64()))]))),
    ("usage", pa.struct([("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64())])),
]
_RESPONSE = [*_BODY, ("status_code", pa.int64()), ("body", pa.struct(_BODY))]
#: What Arrow reads of a line; everything else (the echoed request, ids,
#: timestamps) is skipped. A line whose values have other types makes the
#: reader fail, and its block goes the per-line way. ``error`` is an empty
#: struct: only whether it is there matters (rows with one go per line).
_FULL = pa.schema(
    [("custom_id", pa.string()), ("status", pa.string()), ("error", pa.struct([])), ("response", pa.struct(_RESPONSE))]
)
#: The same for Vertex chat output, the common case, a fifth cheaper to
#: convert: no embeddings, and of an OpenAI envelope only whether it is there.
#: A block where that leaves many rows undecided is read again with _FULL.
_LEAN = pa.schema(
    [
        *list(_FULL)[:3],
        ("response", pa.struct([_BODY[0], _BODY[2], ("status_code", pa.int64()), ("body", pa.struct([]))])),
    ]
)
_PARSE = {
    full: pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    for full, schema in ((True, _FULL), (False, _LEAN))
}
_READ = pj.ReadOptions(use_threads=True, block_size=4 << 20)
_REREAD_SHARE = 0.01  # undecided rows in a lean block beyond which the full read is cheaper


def _first(lists: pa.Array) -> pa.Array:
    """The first item of each list; null where the list is null or empty."""
    if lists.null_count == len(lists):
        return pa.nulls(len(lists), lists.type.value_type)
    offsets = lists.offsets.to_numpy()
    ok = lists.is_valid().to_numpy(zero_copy_only=False) & (offsets[1:] > offsets[:-1])
    return lists.values.take(pa.array(offsets[:-1], mask=~ok))


def _completion(r: pa.Array) -> dict[str, pa.Array]:
    """Columns of a struct array of chat.completion / embeddings objects."""
    f = pc.struct_field
    choices = f(r, "choices")
    choice = _first(choices)
    out = {
        "chat": pc.and_kleene(choices.is_valid(), choice.is_valid()).fill_null(False),
        "text": pc.coalesce(f(f(choice, "message"), "content"), f(choice, "text")),
        "finish": f(choice, "finish_reason"),
        "ptok": f(f(r, "usage"), "prompt_tokens"),
        "ctok": f(f(r, "usage"), "completion_tokens"),
    }
    if r.type.get_field_index("data") < 0:  # a lean read: embeddings rows stay undecided
        out["emb"] = pa.array(np.zeros(len(r), dtype=bool))
        out["embedding"] = pa.nulls(len(r), _EMB)
        return out
    data = _first(f(r, "data"))
    emb = f(data, "embedding")
    out["emb"] = pc.and_(pc.and_(choices.is_null(), f(r, "data").is_valid()), emb.is_valid())
    out["embedding"] = emb.cast(_EMB)
    return out


def _reduce(tb: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Arrow's rows -> typed rows, and a mask of rows only :func:`_extract` can decide.

    Mirrors :func:`_extract` for the shapes that matter at scale: successes
    (Vertex and OpenAI envelopes, chat and embeddings) and Vertex failures
    carrying a ``status`` text.
    """
    tb = tb.combine_chunks()
    n = tb.num_rows
    resp = tb.column("response").chunk(0) if n else pa.nulls(0, tb.schema.field("response").type)
    status = tb.column("status").chunk(0) if n else pa.nulls(0, pa.string())
    sc, body = pc.struct_field(resp, "status_code"), pc.struct_field(resp, "body")
    envelope = pc.or_(sc.is_valid(), body.is_valid())
    top = _completion(resp)
    if not body.type.num_fields:  # a lean read: envelopes stay undecided
        envelope_ok = pc.invert(envelope)
        pick = top
    elif pc.any(envelope).as_py():  # OpenAI envelopes: the completion is in body
        envelope_ok = pa.array(np.ones(n, dtype=bool))
        inner = _completion(body)
        pick = {k: pc.if_else(envelope, inner[k], top[k]) for k in top}
    else:
        envelope_ok = pa.array(np.ones(n, dtype=bool))
        pick = top

    no_status = pc.or_kleene(status.is_null(), pc.equal(status, ""))
    ok_envelope = pc.or_(pc.invert(envelope), pc.equal(sc, 200).fill_null(False))
    success = pc.and_(
        pc.and_(no_status, tb.column("error").chunk(0).is_null() if n else pa.array([], pa.bool_())),
        pc.and_(pc.and_(resp.is_valid(), pc.and_(ok_envelope, envelope_ok)), pc.or_(pick["chat"], pick["emb"])),
    )
    success_np = success.to_numpy(zero_copy_only=False)

    # Vertex failures: a status text is the error, whatever else the line holds.
    failed_np = ~no_status.to_numpy(zero_copy_only=False)
    err = np.full(n, None, dtype=object)
    if failed_np.any():
        stripped = [s.strip() for s in status.filter(pa.array(failed_np)).to_pylist()]
        idx = np.flatnonzero(failed_np)
        keep = np.array([bool(s) for s in stripped], dtype=bool)
        err[idx[keep]] = [s for s in stripped if s]
        failed_np[idx[~keep]] = False  # whitespace-only status: not an error by itself
    slow = ~(success_np | failed_np)

    ok = pa.array(success_np)
    emb_ok = pc.and_(ok, pick["emb"])
    cols = [
        tb.column("custom_id").cast(pa.large_string()),
        _where(ok, pick["text"].cast(pa.large_string())),
        _where(ok, pick["finish"].cast(pa.large_string())),
        _where(ok, pick["ptok"]),
        _where(ok, pick["ctok"]),
        _where(emb_ok, pick["embedding"]),
        pa.array(err, type=pa.large_string()),
    ]
    # text/finish of an embeddings row, and the embedding of a chat row, stay null
    cols[1] = _where(pc.invert(emb_ok), cols[1])
    cols[2] = _where(pc.invert(emb_ok), cols[2])
    return pa.table(cols, schema=_TABLE), slow


def _where(mask: pa.Array, values: pa.Array) -> pa.Array:
    return pc.if_else(mask, values, pa.nulls(len(values), values.type))


class _BlockParser:
    """Parses blocks of complete lines; reads lean until a block needs the full schema, then full."""

    def __init__(self) -> None:
        self.full = False
        self.unreadable = 0

    def _read(self, block: memoryview) -> tuple[pa.Table, np.ndarray]:
        tb = pj.read_json(pa.BufferReader(pa.py_buffer(block)), read_options=_READ, parse_options=_PARSE[self.full])
        fast, slow = _reduce(tb)
        if not self.full and slow.sum() > _REREAD_SHARE * len(slow):
            self.full = True  # OpenAI envelopes or embeddings: read this block and the next ones in full
            return self._read(block)
        return fast, slow

    def parse(self, block: memoryview, *, split: bool = True) -> pa.Table:
        """One block -> typed table in line order."""
        try:
            fast, slow = self._read(block)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if split and len(block) > SUB_BLOCK_BYTES:
                return pa.concat_tables([self.parse(b, split=False) for b in _blocks(block, SUB_BLOCK_BYTES)])
            return self._per_line(bytes(block).split(b"\n"))
        if not slow.any():
            return fast
        lines = [line for line in bytes(block).split(b"\n") if line.strip(b" \t\r")]
        if len(lines) != fast.num_rows:  # Arrow saw the lines differently: trust per-line parsing
            return self._per_line(lines)
        idx = np.flatnonzero(slow)
        rows, where, unreadable = _parse_raw_lines([lines[i] for i in idx.tolist()])
        self.unreadable += unreadable
        # put the per-line rows back where their lines were
        merged = pa.concat_tables([fast.filter(pa.array(~slow)), _rows_table(rows)])
        order = np.concatenate([np.flatnonzero(~slow), idx[np.asarray(where, dtype=np.int64)]])
        return merged.take(pa.array(np.argsort(order, kind="stable")))

    def _per_line(self, lines: list[bytes]) -> pa.Table:
        rows, _, unreadable = _parse_raw_lines(lines)
        self.unreadable += unreadable
        return _rows_table(rows)


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
    parser = _BlockParser()
    tables = [parser.parse(block) for block in blocks]
    _warn_unreadable(parser.unreadable)
    return _table_frame(pa.concat_tables(tables) if tables else _TABLE.empty_table())


def parse_bytes(data: bytes | bytearray | memoryview) -> pd.DataFrame:
    """Parse a buffer of output JSONL into one row per line, column-wise.

    Gives the rows of :func:`parse_lines` (a malformed line keeps a readable
    ``custom_id`` with an error; one without is reported in a warning), in
    line order, but reads blocks with Arrow and moves whole columns.

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
    # Read straight into a fresh buffer per block (Arrow copies what it keeps)
    # and carry the unfinished last line over: no block-sized concatenation.
    with open(path, "rb", buffering=0) as fh:
        carry = b""
        while True:
            buf = bytearray(max(BLOCK_BYTES, 2 * len(carry)))  # a longer line grows the block
            buf[: len(carry)] = carry
            end = len(carry) + _fill(fh, memoryview(buf)[len(carry) :])
            if end == len(carry):  # end of file
                if carry and not complete_only:  # a half-written last line is not data for a live job
                    yield memoryview(carry)
                return
            cut = buf.rfind(b"\n", 0, end) + 1
            carry = bytes(buf[cut:end])
            if cut:
                yield memoryview(buf)[:cut]


def _fill(fh: io.RawIOBase, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = fh.readinto(view[got:])
        if not n:
            break
        got += n
    return got


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


# ------------------------------------------------------------------- joining


def positions_of(ids: pd.Series, custom_ids: np.ndarray | None, n_rows: int) -> np.ndarray:
    """Frame position for each output id (-1 where it matches no row).

    Default ids are ``row-<n>`` exactly as written (no sign, no leading
    zero): the position is the number, parsed as a column. Other ids are
    looked up in a hash table of the frame's ids.
    """
    arr = _arrow(ids)
    if custom_ids is not None:
        found = pc.index_in(arr, value_set=pa.array(custom_ids, type=pa.large_string()))
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    starts = pc.starts_with(arr, POSITIONAL_PREFIX).fill_null(False)
    digits = pc.if_else(starts, pc.utf8_slice_codeunits(arr, len(POSITIONAL_PREFIX)), "-1")
    try:
        num = pc.cast(digits, pa.int64())
    except pa.ArrowInvalid:  # something after the prefix is not a number: keep those out, one by one
        return np.array([_position(v, n_rows) for v in arr.to_pylist()], dtype=np.int64)
    canonical = pc.and_(starts, pc.equal(pc.cast(num, pa.large_string()), digits))
    pos = np.where(canonical.to_numpy(zero_copy_only=False), num.to_numpy(), -1)
    pos[pos >= n_rows] = -1
    return pos


def _position(cid: str | None, n_rows: int) -> int:
    if cid is None or not cid.startswith(POSITIONAL_PREFIX):
        return -1
    digits = cid[len(POSITIONAL_PREFIX) :]
    if not digits.isascii() or not digits.isdigit() or str(int(digits)) != digits:
        return -1
    return int(digits) if int(digits) < n_rows else -1


def _arrow(values: pd.Series) -> pa.Array:
    """A column as one Arrow array (zero-copy for Arrow-backed and masked columns)."""
    arr = pa.array(values.array) if not values.dtype == object else pa.array(values.to_numpy(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_string(arr.type) or pa.types.is_null(arr.type):
        arr = arr.cast(pa.large_string())
    return arr


def _winners(pos: np.ndarray, success: np.ndarray, n_rows: int) -> np.ndarray:
    """For each frame row, the output line that answers it (-1: none).

    Several lines for one row: a success beats a failure, a later line beats
    an earlier one.
    """
    src = np.full(n_rows, -1, dtype=np.int64)
    lines = np.flatnonzero(pos >= 0)
    if np.bincount(pos[lines], minlength=n_rows).max(initial=0) > 1:
        order = np.lexsort((lines, success[lines], pos[lines]))
        lines = lines[order]
        last = np.ones(len(lines), dtype=bool)
        last[:-1] = pos[lines][1:] != pos[lines][:-1]
        lines = lines[last]
    src[pos[lines]] = lines
    return src


def join_results(
    frame: pd.DataFrame,
    parsed: pd.DataFrame,
    *,
    kind: Kind,
    custom_ids: np.ndarray | None = None,
    skipped: dict[int, str] | None = None,
    sent: np.ndarray | None = None,
    overwrite: bool = False,
    missing_error: str = MISSING,
) -> pd.DataFrame:
    """Join parsed output lines to ``frame`` by custom_id.

    Parameters
    ----------
    frame : pandas.DataFrame
        The user's frame; its columns, index and order are kept.
    parsed : pandas.DataFrame
        Output of :func:`parse_bytes` or :func:`parse_lines` (several lines
        per id are fine: a success beats a failure, later beats earlier).
    kind : {"chat", "embeddings"}
        Which result columns to add.
    custom_ids : numpy.ndarray, optional
        The id of each frame row; ``None`` for the positional ``row-<n>`` ids.
    skipped : dict of int to str, optional
        Frame positions that were never sent, with their error.
    sent : numpy.ndarray of bool, optional
        Which rows were sent (default: all rows not in ``skipped``); a sent row
        with no output line gets ``missing_error``.
    overwrite : bool
        Replace result columns the frame already has.
    missing_error : str
        The error for sent rows that have no output line.

    Returns
    -------
    pandas.DataFrame
        A new frame: the user's columns, then the result columns
        (``"string"`` text, ``"Int64"`` token counts, float32 arrays for
        embeddings).
    """
    n = len(frame)
    cols = output_columns(kind)
    clash = [c for c in cols if c in frame.columns]
    if clash and not overwrite:
        from .errors import InputError

        raise InputError(
            f"the frame already has column(s) {clash}, which the result would overwrite; "
            f"rename them or pass overwrite=True"
        )
    parsed = _typed(parsed)
    pos = positions_of(parsed["custom_id"], custom_ids, n)
    if (pos < 0).any():
        stray = parsed["custom_id"][pos < 0]
        warnings.warn(
            f"{len(pd.unique(stray.to_numpy(dtype=object, na_value=None)))} output line(s) have a custom_id "
            f"that matches no row (e.g. {stray.iloc[0] if pd.notna(stray.iloc[0]) else None!r}); they were ignored",
            RuntimeWarning,
            stacklevel=2,
        )
    src = _winners(pos, parsed["error"].isna().to_numpy(), n)
    answered = src >= 0
    take = pa.array(src, mask=~answered)

    error = _arrow(parsed["error"]).take(take)
    if not answered.all():
        if sent is None:
            sent = np.ones(n, dtype=bool)
            if skipped:
                sent[list(skipped)] = False
        fill = np.full(n, None, dtype=object)
        fill[sent & ~answered] = missing_error
        for p, msg in (skipped or {}).items():
            fill[p] = msg
        error = pc.if_else(pa.array(answered), error, pa.array(fill, type=pa.large_string()))

    out = frame.drop(columns=clash) if clash else frame.copy()
    if kind == EMBEDDINGS:
        emb = np.full(n, None, dtype=object)
        emb[answered] = parsed["embedding"].to_numpy(dtype=object)[src[answered]]
        out["embedding"] = list(emb)
    else:
        out["response"] = _STR.__from_arrow__(_arrow(parsed["response"]).take(take))
        out["finish_reason"] = _STR.__from_arrow__(_arrow(parsed["finish_reason"]).take(take))
        out["prompt_tokens"] = _INT.__from_arrow__(_arrow(parsed["prompt_tokens"]).take(take))
        out["completion_tokens"] = _INT.__from_arrow__(_arrow(parsed["completion_tokens"]).take(take))
    out["error"] = _STR.__from_arrow__(error)
    return out
