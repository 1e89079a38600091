"""Output lines -> per-row columns, joined back to the frame by ``custom_id``.

Output order is not input order, lines may be missing, repeated, truncated by a
crash or malformed, and they come in several shapes (see SPEC.md):

* Vertex style: ``{"custom_id", "request"|"body", "response": <chat.completion
  or embeddings list>, "status": "" | "<error>", "processed_time"}``;
* OpenAI batch style: ``{"id", "custom_id", "response": {"status_code",
  "body": {...}}, "error": null | {"code", "message"}}``;
* rows read from a BigQuery output table, where ``response`` may be JSON text.

Every shape is reduced to the same columns. The join never trusts position in
the output: it maps each line's ``custom_id`` to a frame position, with integer
arithmetic when ids are the default ``row-<n>``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from .models import EMBEDDINGS, Kind
from .requests import POSITIONAL_PREFIX

__all__ = ["CHAT_COLUMNS", "EMBEDDING_COLUMNS", "join_results", "parse_lines", "read_predictions"]

CHAT_COLUMNS = ("response", "finish_reason", "prompt_tokens", "completion_tokens", "error")
EMBEDDING_COLUMNS = ("embedding", "error")
_ID_RE = re.compile(rb'"custom_id"\s*:\s*"((?:[^"\\]|\\.)*)"')
MISSING = "missing: the job returned no output line for this row"


def output_columns(kind: Kind) -> tuple[str, ...]:
    """The columns a result frame gains for a job of ``kind``."""
    return EMBEDDING_COLUMNS if kind == EMBEDDINGS else CHAT_COLUMNS


# ----------------------------------------------------------------- parsing


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
    if isinstance(resp, dict) and "body" in resp and "status_code" in resp:
        return resp  # OpenAI batch envelope; unwrapped by the caller
    return resp


def _extract(obj: dict[str, Any]) -> tuple[Any, ...]:
    """Reduce one output object to (custom_id, text, finish, prompt_t, completion_t, embedding, error)."""
    cid = obj.get("custom_id")
    error = _error_text(obj)
    resp = _response_body(obj)
    if isinstance(resp, dict) and "status_code" in resp and "body" in resp:
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
        elif "choices" in resp:
            try:
                choice = resp["choices"][0]
                text = (choice.get("message") or {}).get("content")
                if text is None:
                    text = choice.get("text")
                finish = choice.get("finish_reason")
            except (IndexError, TypeError, AttributeError):
                error = "malformed response: no choices"
        elif "data" in resp:
            try:
                emb = resp["data"][0]["embedding"]
            except (IndexError, TypeError, KeyError):
                error = "malformed response: no embedding"
        elif "error" in resp:
            detail = resp["error"]
            error = str(detail.get("message") if isinstance(detail, dict) else detail)
        else:
            error = "malformed response: neither choices nor data"
        usage = resp.get("usage") if isinstance(resp, dict) else None
        if isinstance(usage, dict):
            ptok = usage.get("prompt_tokens")
            ctok = usage.get("completion_tokens")
    return (cid, text, finish, ptok, ctok, emb, error)


def parse_lines(lines: Iterable[bytes]) -> pd.DataFrame:
    """Parse output lines of any supported shape into one row per line.

    A line that is not JSON keeps its ``custom_id`` when one can be read from
    the raw bytes, with an ``error`` saying the line was malformed; one without
    a readable id is reported in a warning (it cannot be joined to a row).

    Parameters
    ----------
    lines : iterable of bytes
        JSONL lines, with or without their newline.

    Returns
    -------
    pandas.DataFrame
        Columns ``custom_id``, ``response``, ``finish_reason``,
        ``prompt_tokens``, ``completion_tokens``, ``embedding``, ``error``.
    """
    rows: list[tuple[Any, ...]] = []
    unreadable = 0
    loads = orjson.loads
    for raw in lines:
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
            cid = orjson.loads(b'"' + m.group(1) + b'"')
            rows.append((cid, None, None, None, None, None, f"malformed output line: {raw[:200]!r}"))
            continue
        rows.append(_extract(obj))
    if unreadable:
        warnings.warn(
            f"{unreadable} output line(s) were not JSON and had no readable custom_id; their rows show as missing",
            RuntimeWarning,
            stacklevel=2,
        )
    cols = ["custom_id", "response", "finish_reason", "prompt_tokens", "completion_tokens", "embedding", "error"]
    # object columns throughout: None stays None (pandas would otherwise infer
    # its str dtype and turn a missing error into NaN)
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(cols)
    out = pd.DataFrame({c: pd.Series(list(v), dtype=object) for c, v in zip(cols, columns, strict=True)})
    bad_id = out["custom_id"].map(lambda v: not isinstance(v, str))
    if bad_id.any():
        # An id that is not a str cannot match a request; keep it visible as text.
        out.loc[bad_id, "custom_id"] = out.loc[bad_id, "custom_id"].map(lambda v: None if v is None else str(v))
    return out


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
        :func:`parse_lines`.
    """
    paths: list[Path] = []
    for p in [path] if isinstance(path, (str, os.PathLike)) else list(path):
        p = Path(p)
        paths.extend(sorted(p.rglob("*.jsonl")) if p.is_dir() else [p])
    frames = [parse_lines(iter_file_lines(p)) for p in paths]
    parsed = pd.concat(frames, ignore_index=True) if frames else parse_lines([])
    return dedupe(parsed).set_index("custom_id")


def dedupe(parsed: pd.DataFrame) -> pd.DataFrame:
    """One line per custom_id: a success beats a failure, later beats earlier."""
    if not parsed["custom_id"].duplicated().any():
        return parsed
    order = np.lexsort((np.arange(len(parsed)), parsed["error"].isna().to_numpy()))
    return parsed.iloc[order].drop_duplicates("custom_id", keep="last").sort_index()


# ------------------------------------------------------------------- joining


def positions_of(ids: pd.Series, custom_ids: np.ndarray | None, n_rows: int) -> np.ndarray:
    """Frame position for each output id (-1 where it matches no row)."""
    if custom_ids is None:
        s = ids.astype("string")
        digits = s.str.slice(len(POSITIONAL_PREFIX))
        ok = s.str.startswith(POSITIONAL_PREFIX).fillna(False) & digits.str.fullmatch(r"\d{1,18}").fillna(False)
        pos = np.full(len(ids), -1, dtype=np.int64)
        okv = ok.to_numpy(dtype=bool)
        pos[okv] = digits[okv].astype("int64").to_numpy()
        pos[(pos >= n_rows)] = -1
        return pos
    return pd.Index(custom_ids).get_indexer(ids.astype(object))


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
        Output of :func:`parse_lines` (several lines per id are fine).
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
        A new frame: the user's columns, then the result columns.
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
    parsed = dedupe(parsed)
    pos = positions_of(parsed["custom_id"], custom_ids, n)
    unknown = int((pos < 0).sum())
    if unknown:
        warnings.warn(
            f"{unknown} output line(s) have a custom_id that matches no row (e.g. "
            f"{parsed['custom_id'][pos < 0].iloc[0]!r}); they were ignored",
            RuntimeWarning,
            stacklevel=2,
        )
    keep = pos >= 0
    pos = pos[keep]
    parsed = parsed[keep]

    error = np.full(n, None, dtype=object)
    if sent is None:
        sent = np.ones(n, dtype=bool)
        if skipped:
            sent[list(skipped)] = False
    answered = np.zeros(n, dtype=bool)
    answered[pos] = True
    error[sent & ~answered] = missing_error
    for p, msg in (skipped or {}).items():
        error[p] = msg
    error[pos] = parsed["error"].to_numpy(dtype=object)

    out = frame.drop(columns=clash) if clash else frame.copy()
    new: dict[str, Any] = {}
    if kind == EMBEDDINGS:
        emb = np.full(n, None, dtype=object)
        emb[pos] = [None if v is None else np.asarray(v, dtype=np.float32) for v in parsed["embedding"].tolist()]
        new["embedding"] = emb
    else:
        new["response"] = _scatter(n, pos, parsed["response"], "string")
        new["finish_reason"] = _scatter(n, pos, parsed["finish_reason"], "string")
        new["prompt_tokens"] = _scatter(n, pos, parsed["prompt_tokens"], "Int64")
        new["completion_tokens"] = _scatter(n, pos, parsed["completion_tokens"], "Int64")
    new["error"] = pd.array(error, dtype="string")
    for name, values in new.items():
        out[name] = values if not isinstance(values, np.ndarray) else list(values) if values.dtype == object else values
    return out


def _scatter(n: int, pos: np.ndarray, values: pd.Series, dtype: str) -> Any:
    full = np.full(n, None, dtype=object)
    full[pos] = values.to_numpy(dtype=object)
    return pd.array(full, dtype=dtype)
