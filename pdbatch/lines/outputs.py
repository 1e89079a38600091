"""What an output line means: one public home for "did this row succeed, and with what answer".

Output lines come in several shapes, in any order, and some are repeated,
truncated or malformed:

* Vertex style: ``{"custom_id", "request"|"body", "response": <chat.completion
  or embeddings list>, "status": "" | "<error>", "processed_time"}``
  (Model Garden writes ``"error": ""`` and an ``"id"`` instead of ``status``);
* OpenAI batch style: ``{"id", "custom_id", "response": {"status_code",
  "body": {...}}, "error": null | {"code", "message"}}``;
* rows read from a BigQuery output table, where ``response`` may be JSON text.

:func:`outcome` takes the answer out of its envelope and hands it to the
reader of the kind it belongs to (:mod:`pdbatch.lines.kinds`: each kind
declares its reader and the keys that mark its answers), reducing any line
to one :class:`Outcome`; it is the
reference that every other reader agrees with: the fast block parser of
:mod:`pdbatch.results.parse` (checked line for line by the parity tests), the
response cache (only successes are kept, :mod:`pdbatch.jobs.reuse`), and the local
worker (which rows are done when it resumes). :func:`output_line` is the one
shape pdbatch itself writes (the local worker, the mock backend).

This module imports nothing heavy (the local worker uses it).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import orjson

from .kinds import KindSpec, Malformed, marks

__all__ = ["Outcome", "answer_body", "iter_file_lines", "loads", "outcome", "output_line", "read_lines", "succeeded"]

#: A custom_id as written in a line that is not JSON, so that its row can still say why it failed.
_ID_RE = re.compile(rb'"custom_id"\s*:\s*"((?:[^"\\]|\\.)*)"')
#: msgspec's errors and bad UTF-8 in a read value are ValueErrors; deep nesting a RecursionError.
DECODE_ERRORS = (ValueError, RecursionError)


class Outcome(NamedTuple):
    """One output line reduced to what decides its row (``None`` where the line has no value)."""

    custom_id: Any
    response: Any  # the answer's text (chat)
    finish_reason: Any
    prompt_tokens: Any
    completion_tokens: Any
    embedding: Any  # a list of numbers (embeddings)
    error: str | None  # None: the row succeeded
    other: dict[str, Any] | None = None  # the values of answer columns other declared kinds add

    @property
    def answer(self) -> Any:
        """What the line answers, hashable, to tell two lines for one row apart (text, embedding, other values)."""
        if self.embedding is not None:
            return orjson.dumps(self.embedding)
        if self.other:
            return orjson.dumps([self.response, self.other], option=orjson.OPT_SORT_KEYS)
        return self.response


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


def _envelope(resp: Any) -> bool:
    """An OpenAI batch envelope (``{"status_code", "request_id", "body"}``) rather than the answer itself."""
    return isinstance(resp, dict) and (resp.get("status_code") is not None or resp.get("body") is not None)


def answer_body(obj: dict[str, Any]) -> Any:
    """The answer object of an output line (a ``chat.completion``, an embeddings list), out of any envelope.

    Parameters
    ----------
    obj : dict
        One output line, decoded.

    Returns
    -------
    Any
        What the backend answered (None when the line has no response); whether
        that is a success is :func:`outcome`'s to say.
    """
    resp = _response_body(obj)
    return resp.get("body") if _envelope(resp) else resp


def outcome(obj: dict[str, Any]) -> Outcome:
    """Reduce one decoded output line, of any shape, to its :class:`Outcome`.

    Parameters
    ----------
    obj : dict
        One output line, decoded.

    Returns
    -------
    Outcome
        ``error`` is None exactly when the row succeeded.
    """
    cid = obj.get("custom_id")
    error = _error_text(obj)
    resp = _response_body(obj)
    if _envelope(resp):  # OpenAI batch envelope: the completion is in body
        body = resp.get("body")
        if resp.get("status_code") != 200 and error is None:
            detail = body.get("error") if isinstance(body, dict) else body
            if isinstance(detail, dict):
                detail = detail.get("message") or detail
            error = f"HTTP {resp.get('status_code')}: {detail}"
        resp = body
    text = finish = ptok = ctok = emb = other = None
    if error is None:
        kind = _kind_of_answer(resp) if isinstance(resp, dict) else None
        if not isinstance(resp, dict):
            error = "no response in the output line"
        elif kind is not None:  # the declared kind's reader (pdbatch.lines.kinds)
            try:
                values = kind.read(resp)
            except Malformed as exc:
                error = str(exc)
            else:
                text, finish, emb = values.get("response"), values.get("finish_reason"), values.get("embedding")
                if values.keys() - _NAMED:
                    other = {k: v for k, v in values.items() if k not in _NAMED}
        elif resp.get("error") is not None:
            detail = resp["error"]
            error = str(detail.get("message") if isinstance(detail, dict) else detail)
        elif isinstance(resp.get("output"), list):  # a Responses API answer (/v1/responses): a chat answer
            text, finish, error = _response_output(resp)
        else:
            error = f"malformed response: {_no_marks()}"
        usage = resp.get("usage") if isinstance(resp, dict) else None
        if isinstance(usage, dict):
            ptok = usage.get("prompt_tokens", usage.get("input_tokens"))
            ctok = usage.get("completion_tokens", usage.get("output_tokens"))
    return Outcome(cid, text, finish, ptok, ctok, emb, error, other)


#: The answer columns :class:`Outcome` names; any other a reader gives goes to ``Outcome.other``.
_NAMED = frozenset(("response", "finish_reason", "embedding"))


def _kind_of_answer(resp: dict[str, Any]) -> KindSpec | None:
    """The first declared kind whose mark (``choices``, ``data``, ...) the answer body sets."""
    for key, kind in marks():
        if resp.get(key) is not None:
            return kind
    return None


def _no_marks() -> str:
    # with the built-in kinds only: "neither choices nor data", as it has always said
    keys = [k for k, _ in marks()]
    return "neither " + " nor ".join(keys) if len(keys) == 2 else "none of " + ", ".join(keys)


#: A Responses answer's ``incomplete_details.reason`` in chat completions' ``finish_reason`` words.
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _response_output(resp: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(text, finish reason, error) of a Responses API object: its ``output_text`` parts, joined."""
    parts = [c.get("text") for item in resp["output"] if isinstance(item, dict) and item.get("type") == "message"
             for c in item.get("content") or [] if isinstance(c, dict) and c.get("type") == "output_text"]
    texts = [t for t in parts if isinstance(t, str)]
    status = resp.get("status")
    if status == "incomplete":
        reason = (resp.get("incomplete_details") or {}).get("reason")
        finish = _INCOMPLETE.get(reason, reason) if isinstance(reason, str) else None
    else:
        finish = "stop" if status == "completed" else status
    if not texts and status not in ("completed", "incomplete"):
        return None, finish, f"malformed response: a {status or 'status-less'} response with no output text"
    return "".join(texts) if texts else None, finish, None


def succeeded(obj: Any) -> bool:
    """True when a decoded output line answers its row (see :func:`outcome`)."""
    return isinstance(obj, dict) and outcome(obj).error is None


def loads(raw: bytes) -> Any:
    """orjson's reading of one line, but as deep as the interpreter allows.

    orjson stops at 1024 levels of nesting; msgspec, which reads the blocks,
    goes as deep as Python's recursion limit (which IPython's completer raises
    to 3000 on import). A line only orjson finds too deep is read by msgspec
    here too, so that a row never depends on which path read it.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        if not str(err).startswith("depth limit exceeded"):
            raise
        try:
            return msgspec.json.decode(raw)
        except DECODE_ERRORS:
            raise err from None


def read_lines(lines: Iterable[bytes]) -> tuple[list[Outcome], list[int], int]:
    """The reference reading of raw lines: their outcomes, the ordinal of the line of each, and the unreadable count.

    A line that is not a JSON object keeps its ``custom_id`` when one can be
    read from the raw bytes, with an error saying the line was malformed; a
    blank line gives nothing; any other line is counted as unreadable.
    """
    rows: list[Outcome] = []
    where: list[int] = []
    unreadable = 0
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
            rows.append(Outcome(cid, None, None, None, None, None, f"malformed output line: {bytes(raw[:200])!r}"))
            where.append(i)
            continue
        rows.append(outcome(obj))
        where.append(i)
    return rows, where, unreadable


def output_line(custom_id: str, response: dict[str, Any] | None, error: str | None, *,
                request: dict[str, Any] | None = None) -> bytes:
    """One output line as pdbatch writes it (Vertex's shape), with its newline.

    Parameters
    ----------
    custom_id : str
    response : dict or None
        The OpenAI ``chat.completion`` or embeddings ``list`` object.
    error : str or None
        Why the row failed; ``status`` is empty on success.
    request : dict, optional
        The request body, echoed as Vertex does.

    Returns
    -------
    bytes
    """
    line: dict[str, Any] = {"custom_id": custom_id}
    if request is not None:
        line["request"] = request
    line["status"] = error or ""
    line["processed_time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if response is not None and not error:
        line["response"] = response
    return orjson.dumps(line) + b"\n"


def iter_file_lines(path: str | os.PathLike[str], *, complete_only: bool = False) -> Iterable[bytes]:
    """Lines of a JSONL file; with ``complete_only``, a last line without newline is dropped.

    ``complete_only`` is for files a worker may still be writing or may have
    died writing: a half-written last line is not data.
    """
    data = Path(path).read_bytes()
    if complete_only and data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
    return data.splitlines()
