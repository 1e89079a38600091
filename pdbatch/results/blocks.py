"""The fast reader of output lines: a block of JSONL decoded at once with msgspec.

msgspec reads only the fields that decide a row, typed as the common shapes
have them, and skips the rest (the echoed request, ids, timestamps) without
building it. A line whose values have other types fails to decode and goes
to the reference, :func:`pdbatch.lines.outputs.read_lines`, as does any line the
reduction below does not decide. A key holding null decodes like a missing
key, as the reference reads it. ``tests/test_scale.py`` holds the two to the
same rows.

Where msgspec accepts what the reference (orjson) rejects: it checks
neither the UTF-8 nor the range of numbers in values it skips. Blocks with
bytes above 127 are checked for UTF-8 first (a file written as Latin-1 is
plausible). A number beyond a double (1e999) in an ignored field is not
looked for: such a line is read here but is malformed to the reference.
No writer of these files produces one, and a scan of every block for it
would cost about a tenth of the parse.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Annotated, Any, cast

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa

from ..lines import outputs
from ..lines.outputs import DECODE_ERRORS
from .rows import Columns, flat, typed_row

__all__ = ["Parser"]

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

    Mirrors :func:`pdbatch.lines.outputs.outcome` for successes (Vertex and OpenAI envelopes, chat
    and embeddings) and for failures carrying a ``status`` text. Answers of other declared kinds
    (:mod:`pdbatch.lines.kinds`) have neither choices nor data here: the reference reads them with
    their kind's reader.
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
                        add(typed_row(o.custom_id, None, None, ptok, ctok, b.data[0].embedding, None))
                        continue
        # not decoded, an error object, no choice nor embedding: the reference words these
        slow.append(len(rows))
        add(None)
    return rows, slow


class Parser:
    """Reads blocks of whole lines into typed columns, in line order."""

    def __init__(self) -> None:
        self.columns = Columns()
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
                rows[slow[k]] = typed_row(*flat(row))
            if len(found) < len(slow):  # blank or unreadable lines give no row
                rows = [row for row in rows if row is not None]
        self.columns.add(cast("list[tuple[Any, ...]]", rows))  # every None was replaced or dropped

    def frame(self) -> pd.DataFrame:
        """The rows parsed so far (``unreadable`` counts the lines that gave none)."""
        return self.columns.frame()
