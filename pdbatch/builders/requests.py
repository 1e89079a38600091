"""Rows -> OpenAI batch request lines (``custom_id``, ``method``, ``url``, ``body``).

Two outputs of the same plan: :meth:`RequestPlan.to_frame` gives a DataFrame of
dict bodies (to look at), :meth:`RequestPlan.iter_jsonl` gives JSONL bytes in
bounded chunks (to send). The JSONL path never builds a dict, or even a Python
str, per row: the parts that are the same on every line (method, url, model,
system message, params) are serialised once, and each chunk of rows is
rendered, JSON-escaped and concatenated as Arrow arrays, so a chunk's bytes are
one Arrow buffer. Rows given as message lists are encoded per row with orjson.
The rows' own checks (ids, message lists) are :mod:`.rowchecks`; writing the
lines to files, split at a backend's limits, is :mod:`.linefiles`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from ..lines.jsontext import data_buffer, json_escape, scalar
from ..lines.kinds import spec
from ..models import CHAT, URLS, Kind, kind_of_url
from .cells import check_text
from .linefiles import write_all, write_split
from .rowchecks import check_messages, check_unique, custom_ids, json_ok
from .template import CellError, Template

__all__ = ["POSITIONAL_PREFIX", "RequestPlan", "build_requests", "custom_ids"]

#: Default ids are ``row-<position>``: unique, stable for a given frame, and they
#: let the join compute positions with array arithmetic instead of a hash join.
POSITIONAL_PREFIX = "row-"
CHUNK_ROWS = 32_768
_ON_NULL = ("raise", "skip")


@dataclass
class RequestPlan:
    """Everything needed to turn a frame into request lines, validated.

    Attributes
    ----------
    kind : {"chat", "embeddings"}
    url : str
    model : str
        The model name written into each body.
    custom_ids : numpy.ndarray or None
        One str per row of the frame, or ``None`` for the positional default
        ``row-<position>``.
    skipped : dict of int to str
        Frame positions that are not sent, with the error each row will show.
    """

    frame: pd.DataFrame
    kind: Kind
    url: str
    model: str
    template: Template | None
    messages: str | None
    system: str | None
    params: dict[str, Any]
    custom_ids: np.ndarray | None
    skipped: dict[int, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ queries
    @property
    def n_rows(self) -> int:
        """Rows in the frame, sent or not."""
        return len(self.frame)

    @property
    def positions(self) -> np.ndarray:
        """Frame positions of the rows that are sent, in frame order."""
        if not self.skipped:
            return np.arange(self.n_rows)
        keep = np.ones(self.n_rows, dtype=bool)
        keep[list(self.skipped)] = False
        return np.flatnonzero(keep)

    def ids_at(self, positions: np.ndarray) -> list[str]:
        """The custom_ids of the rows at ``positions``."""
        if self.custom_ids is None:
            return [f"{POSITIONAL_PREFIX}{p}" for p in positions.tolist()]
        return self.custom_ids[positions].tolist()

    # --------------------------------------------------------------- building
    def payloads(self, positions: np.ndarray) -> Sequence[Any]:
        """Each row's payload, the one part of its body that is its own: prompt text, or its message list.

        :meth:`body` makes the row's request body of it; the JSONL writer
        writes the same bytes without building either (``tests/test_scale.py``).

        Parameters
        ----------
        positions : numpy.ndarray
            Frame positions (from :attr:`positions`).

        Returns
        -------
        list
            One str (template plans) or list of message dicts per position.
        """
        chunk = self.frame.iloc[positions]
        if self.template is not None:
            with self._naming_rows(positions):
                return self.template.render(chunk)
        assert self.messages is not None
        rows = zip(chunk[self.messages].tolist(), self.ids_at(positions), strict=True)
        return [check_messages(m, cid, self.messages) for m, cid in rows]

    @contextmanager
    def _naming_rows(self, positions: np.ndarray) -> Iterator[None]:
        # the template knows a bad cell's position in the chunk; the user knows the row's custom_id
        try:
            yield
        except CellError as exc:
            cid = self.ids_at(positions[[exc.position]])[0]
            raise InputError(f"column {exc.column!r}, row {cid!r}: {exc.problem}") from exc

    def body(self, payload: Any) -> dict[str, Any]:
        """The request body for one row's payload (see :meth:`payloads`): the simple, dict-building path."""
        if not spec(self.kind).messages:  # the text goes into the field the kind declares (embeddings: input)
            return {"model": self.model, spec(self.kind).payload: payload, **self.params}
        messages = list(payload) if self.messages else [{"role": "user", "content": payload}]
        if self.system is not None:
            messages.insert(0, {"role": "system", "content": self.system})
        return {"model": self.model, "messages": messages, **self.params}

    def to_frame(self) -> pd.DataFrame:
        """Request lines as a DataFrame (``custom_id``, ``method``, ``url``, ``body``).

        Rows skipped for nulls are left out; the index is the frame's.
        """
        pos = self.positions
        payloads = self.payloads(pos)
        return pd.DataFrame(
            {
                "custom_id": self.ids_at(pos),
                "method": "POST",
                "url": self.url,
                "body": [self.body(p) for p in payloads],
            },
            index=self.frame.index[pos],
        )

    def _line_parts(self) -> tuple[bytes, bytes, bytes]:
        """The constant bytes around a row's custom_id and payload."""
        head = b'{"custom_id":'
        mid = b',"method":"POST","url":' + orjson.dumps(self.url) + b',"body":{"model":' + orjson.dumps(self.model)
        if not spec(self.kind).messages:
            mid += b"," + orjson.dumps(spec(self.kind).payload) + b":"
        else:
            mid += b',"messages":['
            if self.system is not None:
                mid += orjson.dumps({"role": "system", "content": self.system})
                mid += b"," if not self.messages else b""
            if not self.messages:
                mid += b'{"role":"user","content":'
        tail = b"" if not spec(self.kind).messages or self.messages else b"}"  # closes the user message
        if spec(self.kind).messages:
            tail += b"]"
        params = orjson.dumps(self.params)
        tail += (b"," + params[1:-1] if len(params) > 2 else b"") + b"}}\n"
        return head, mid, tail

    def iter_jsonl(self, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[bytes, int]]:
        """Yield JSONL bytes, ``chunk_rows`` rows at a time, with the row count of each chunk.

        Parameters
        ----------
        chunk_rows : int
            Rows per chunk; memory use is bounded by a few chunks' bytes.

        Yields
        ------
        (bytes, int)
            Complete lines (each ending in a newline) and how many.
        """
        for chunk, rows in self._iter_buffers(chunk_rows):
            yield (chunk if isinstance(chunk, bytes) else chunk.to_pybytes()), rows

    def _iter_buffers(self, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[bytes | pa.Buffer, int]]:
        # Like iter_jsonl, but the Arrow path hands out its buffer uncopied,
        # for writers that take any bytes-like object.
        if self.messages:
            yield from self._iter_jsonl_messages(chunk_rows)
            return
        head, mid, tail = self._line_parts()
        # The quotes around the id and the payload go into the constant parts,
        # so that each row contributes only its escaped characters.
        prefix = POSITIONAL_PREFIX.encode() if self.custom_ids is None else b""
        consts = [scalar(b) for b in (head + b'"' + prefix, b'"' + mid + b'"', b'"' + tail)]
        for pos, payload in self._escaped_parts(chunk_rows):
            if self.custom_ids is None:
                ids = pc.cast(pa.array(pos, type=pa.int64()), pa.large_string())
            else:
                ids = json_escape(pa.array(self.custom_ids[pos], type=pa.large_string()))
            # the whole line joined at once
            lines = pc.binary_join_element_wise(consts[0], ids, consts[1], *payload, consts[2], scalar(b""))
            yield data_buffer(lines), len(pos)

    def payload_texts(self, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[np.ndarray, pa.LargeStringArray]]:
        """Template plans: the :meth:`payloads` (each row's prompt) as Arrow arrays, a chunk of rows at a time.

        The same strings as :meth:`payloads`, without a Python str per row:
        what the response cache keys rows by (:class:`pdbatch.store.cache.RowKeys`).

        Yields
        ------
        (numpy.ndarray, pyarrow.LargeStringArray)
            The chunk's frame positions and one prompt per position.
        """
        assert self.template is not None
        for pos, chunk in self._chunks(chunk_rows):
            with self._naming_rows(pos):
                yield pos, self.template.render_arrow(chunk)

    def _escaped_parts(self, chunk_rows: int) -> Iterator[tuple[np.ndarray, list[pa.Scalar | pa.LargeStringArray]]]:
        """For each chunk of rows, the template's literals and columns, JSON-escaped, in order."""
        assert self.template is not None
        for pos, chunk in self._chunks(chunk_rows):
            with self._naming_rows(pos):
                parts = self.template.arrow_parts(chunk)
            yield pos, [scalar(orjson.dumps(p)[1:-1]) if isinstance(p, str) else json_escape(p) for p in parts]

    def _chunks(self, chunk_rows: int) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
        """The sent rows' positions and the template's columns, ``chunk_rows`` rows at a time."""
        assert self.template is not None
        positions = self.positions
        frame = self.frame[_unique([self._lookup[c] for c in self.template.columns])]
        contiguous = not self.skipped  # then a chunk is a zero-copy slice, not a take
        for start in range(0, len(positions), chunk_rows):
            pos = positions[start : start + chunk_rows]
            yield pos, frame.iloc[start : start + len(pos)] if contiguous else frame.iloc[pos]

    @property
    def _lookup(self) -> dict[str, Any]:
        return {str(c): c for c in self.frame.columns}

    def _iter_jsonl_messages(self, chunk_rows: int) -> Iterator[tuple[bytes, int]]:
        # Message lists are nested Python objects already: orjson per row.
        head, mid, tail = self._line_parts()
        dumps = orjson.dumps
        positions = self.positions
        join_messages = self.system is not None
        for start in range(0, len(positions), chunk_rows):
            pos = positions[start : start + chunk_rows]
            ids = self.ids_at(pos)
            # a message list: its items go inside the [...] already opened
            enc = [dumps(p)[1:-1] for p in self.payloads(pos)]
            if join_messages:
                enc = [b"," + e if e else e for e in enc]
            parts: list[bytes] = []
            append = parts.append
            for cid, payload in zip(ids, enc, strict=True):
                append(head)
                append(dumps(cid))
                append(mid)
                append(payload)
                append(tail)
            yield b"".join(parts), len(pos)

    def write_jsonl(self, path: str | os.PathLike[str]) -> int:
        """Write every request line to ``path``; returns the number of lines."""
        return write_all(self._iter_buffers(), path)

    def write_jsonl_parts(
        self,
        folder: str | os.PathLike[str],
        *,
        max_requests: int | None = None,
        max_bytes: int | None = None,
        stem: str = "requests",
    ) -> list[tuple[Path, int]]:
        """Write the request lines into as many files as the limits need, in one pass.

        Parameters
        ----------
        folder : path
            Where to write ``<stem>-00000.jsonl``, ``<stem>-00001.jsonl``, ...
        max_requests, max_bytes : int, optional
            Most lines, and most bytes, per file.

        Returns
        -------
        list of (Path, int)
            Each file with its number of lines.
        """
        return write_split(self._iter_buffers(), folder, max_requests=max_requests, max_bytes=max_bytes, stem=stem)


def _unique(items: list[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def build_requests(
    frame: pd.DataFrame,
    prompt: str | None = None,
    *,
    messages: str | None = None,
    system: str | None = None,
    model: str,
    url: str = URLS[CHAT],
    custom_id: str | None = None,
    on_null: str = "raise",
    params: dict[str, Any] | None = None,
) -> RequestPlan:
    """Validate a frame and the call's arguments and plan its request lines.

    Parameters
    ----------
    frame : pandas.DataFrame
        One request per row.
    prompt : str, optional
        A template such as ``"Classify: {review}"``; fields are column names.
    messages : str, optional
        Instead of ``prompt``: a column holding each row's list of chat messages.
    system : str, optional
        A system message put first in every chat request.
    model : str
        The model name to write into each body.
    url : str
        ``"/v1/chat/completions"`` or ``"/v1/embeddings"``.
    custom_id : str, optional
        A column of unique ids; by default ``row-<position>``.
    on_null : {"raise", "skip"}
        What to do with a row whose template field is null: refuse the call
        naming the rows, or keep the row with ``error="skipped: null ..."``.
    params : dict, optional
        Extra body fields (``max_tokens``, ``temperature``, ``seed``, ...).

    Returns
    -------
    RequestPlan
    """
    kind = kind_of_url(url)
    params = dict(params or {})
    if on_null not in _ON_NULL:
        raise InputError(f"on_null={on_null!r}: use 'raise' (the default) or 'skip'")
    if not spec(kind).messages and "system" in params:
        raise InputError("system= does not apply to embeddings: the model embeds the text alone. Put any "
                         "instruction into the template itself, e.g. 'query: {text}'")
    for key in ("model", "messages", "input", "system"):
        if key in params:
            raise InputError(f"{key}= cannot go into the body as a parameter: pass it as the {key} argument")
    try:
        orjson.dumps(params)
    except TypeError as exc:
        wrong = [name for name in params if not json_ok(params[name])]  # name only the fields at fault
        raise InputError(f"parameter(s) {wrong or sorted(params)} must be JSON-serialisable: {exc}") from exc
    if (prompt is None) == (messages is None):
        raise InputError(
            "pass either prompt='... {column} ...' or messages='<column of message lists>', not both or neither"
        )
    if not spec(kind).messages and (messages is not None or system is not None):
        raise InputError("embeddings take a prompt template only (no messages= or system=)")
    if system is not None:
        if not isinstance(system, str):
            raise InputError(f"system= must be a str, got {type(system).__name__}")
        check_text(system, "system=")
    columns = list(frame.columns)
    template = None
    used: list[Any]
    if prompt is not None:
        template = Template.parse(prompt, columns)
        lookup = {str(c): c for c in columns}
        used = [lookup[c] for c in template.columns]
    else:
        if messages not in frame.columns:
            raise InputError(f"messages={messages!r} is not a column of the frame. Columns: {columns}")
        check_unique(frame, messages, "messages")
        used = [messages]

    ids = custom_ids(frame, custom_id)

    skipped: dict[int, str] = {}
    if used and len(frame):
        nulls = frame[used].isna().to_numpy()
        bad = np.flatnonzero(nulls.any(axis=1))
        if len(bad):
            label = (lambda p: f"{POSITIONAL_PREFIX}{p}") if ids is None else (lambda p: str(ids[p]))
            if on_null == "raise":
                cols = [str(c) for c, hit in zip(used, nulls[bad].any(axis=0), strict=True) if hit]
                shown = ", ".join(label(p) for p in bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
                raise InputError(
                    f"{len(bad)} row(s) have a null in column(s) {cols} used by the prompt: {shown}. "
                    f"Fill them (df.fillna), drop them, or pass on_null='skip' to keep those rows with an error."
                )
            for p, row in zip(bad.tolist(), nulls[bad], strict=True):
                cols = [str(c) for c, hit in zip(used, row, strict=True) if hit]
                skipped[p] = f"skipped: null in column(s) {', '.join(map(repr, cols))}"

    return RequestPlan(frame, kind, url, model, template, messages, system, params, ids, skipped)
