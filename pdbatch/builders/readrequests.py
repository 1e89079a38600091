"""OpenAI batch request files read into a request frame: the whole file checked, a line at a time.

A request file is JSONL with one request per line, as the OpenAI Batch API and
vLLM's ``run-batch`` read it::

    {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "2+2?"}]}}

:func:`read_requests` gives the frame ``df.llama.to_requests`` gives
(``custom_id``, ``method``, ``url``, ``body`` as a dict); :func:`scan_requests`
the same with each body kept as its JSON text, to run the file. What is
checked here is what makes **the file** unusable: a line that is not a JSON
object, a missing or non-string ``custom_id``, a ``custom_id`` used twice.
Nothing can be matched back to such a file, so it is refused whole
(:class:`RequestFileError`), every problem named by its line number, before
anything is sent. A line's own problems (its url, its body) are
:mod:`pdbatch.builders.requestfile`'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from ..errors import ConfigError, InputError
from .linecheck import shown as _shown

__all__ = ["COLUMNS", "RequestFileError", "check_frame", "read_requests", "request_lines", "scan_requests",
           "sniff", "sniff_file"]

COLUMNS = ("custom_id", "method", "url", "body")
#: Problems listed in one message; the count says how many more there are.
SHOWN = 10

#: A file's lines as :func:`request_lines` reads them: (line number from 1, the object or None, the raw bytes).
Line = tuple[int, Any, bytes]



class RequestFileError(InputError):
    """A request file that cannot run at all; nothing was sent.

    Attributes
    ----------
    path : str
    problems : list of (int, str)
        Each bad line's number (from 1) and what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike[str], problems: list[tuple[int, str]]) -> None:
        self.path = str(path)
        self.problems = problems
        shown = [f"line {n}: {text}" for n, text in problems[:SHOWN]]
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        if len(problems) == 1:
            message = f"{path}, {shown[0]} (nothing was sent)"
        else:
            message = f"{path}: {len(problems)} bad lines (nothing was sent):" + "".join(
                f"\n  - {s}" for s in shown) + more
        super().__init__(message)


# ------------------------------------------------------------------ reading
def request_lines(path: str | os.PathLike[str]) -> list[Line]:
    """Every non-blank line of ``path``, decoded where it is JSON.

    A UTF-8 byte order mark at the start is dropped (editors on Windows
    write one); blank lines carry nothing and are skipped.

    Raises
    ------
    ConfigError
        The file does not exist or cannot be read.
    """
    return list(iter_lines(path))


def iter_lines(path: str | os.PathLike[str]) -> Iterator[Line]:
    """The lines :func:`request_lines` gives, one at a time: the file is never held whole."""
    try:
        fh = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - closed below, errors are the caller's words
    except FileNotFoundError:
        raise ConfigError(f"request file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the request file {str(path)!r}: {exc.strerror or exc}") from None
    with fh:
        try:
            for n, line in enumerate(fh, 1):
                raw = line.removesuffix(b"\n")
                if n == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                if not raw.strip():
                    continue
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    obj = NotJson(str(exc))
                yield n, obj, raw
        except OSError as exc:
            raise ConfigError(f"cannot read the request file {str(path)!r}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class NotJson:
    """A line that is not JSON, with the decoder's reason."""

    why: str


def sniff(lines: Iterable[Line]) -> Literal["requests", "rows", "both"]:
    """Whether a JSONL file's lines are request lines (every line has ``custom_id`` and ``body``).

    Lines that are not JSON do not count either way (reading the file as
    requests names them). ``"both"``: some lines are request lines and
    some are not, which is most likely a damaged request file.
    """
    return _sniff(lines)[0]


def sniff_file(path: str | os.PathLike[str]) -> tuple[Literal["requests", "rows", "both"], bool]:
    """:func:`sniff` of a file's lines, read one at a time, and whether any line is a JSON object."""
    return _sniff(iter_lines(path))


def _sniff(lines: Iterable[Line]) -> tuple[Literal["requests", "rows", "both"], bool]:
    found: set[bool] = set()
    objects = False
    for _, obj, _ in lines:
        if isinstance(obj, NotJson):
            continue
        objects = objects or isinstance(obj, dict)
        found.add(_is_request(obj))
        if len(found) == 2:
            break  # nothing further changes the answer
    if found == {True}:
        return "requests", objects
    return ("both" if found == {True, False} else "rows"), objects


def _is_request(obj: Any) -> bool:
    return isinstance(obj, dict) and "custom_id" in obj and "body" in obj


def read_requests(path: str | os.PathLike[str], lines: list[Line] | None = None) -> pd.DataFrame:
    """Read an OpenAI batch request file into the frame ``df.llama.to_requests`` gives.

    Parameters
    ----------
    path : path
        A JSONL file of request lines (``custom_id``, ``method``, ``url``, ``body``).
    lines : list, optional
        The file as :func:`request_lines` read it already.

    Returns
    -------
    pandas.DataFrame
        ``custom_id``, ``method``, ``url`` and ``body`` (a dict), one row per
        line in file order. ``method`` and ``url`` are missing where a line has none.

    Raises
    ------
    RequestFileError
        (an :class:`~pdbatch.errors.InputError`) Naming every line that is
        not a JSON object, has no ``custom_id`` or a non-string one, or
        repeats an earlier line's ``custom_id``.
    """
    rows: list[Any] = []
    for obj in _checked_lines(path, iter_lines(path) if lines is None else lines):
        rows.append(obj)
    return pd.DataFrame({
        "custom_id": [r["custom_id"] for r in rows],
        "method": [r.get("method") for r in rows],
        "url": [r.get("url") for r in rows],
        "body": [r.get("body") for r in rows],
    })


#: Lines a scanned body column holds per Arrow chunk.
_SCAN_CHUNK = 65_536


def scan_requests(path: str | os.PathLike[str]) -> pd.DataFrame:
    """:func:`read_requests` for running a file: each ``body`` kept as its JSON text, in Arrow.

    A body held as Python dicts takes several times its size in the file; as
    one Arrow string column it takes about its size, and the steps that need
    a body as a dict decode it there, a chunk of lines at a time
    (:func:`pdbatch.builders.bodies.iter_bodies`). The file is read a line at a time.
    Same checks and errors as :func:`read_requests`.
    """
    ids: list[str] = []
    methods: list[Any] = []
    urls: list[Any] = []
    chunks: list[pa.Array] = []
    # The bodies' text goes straight into one buffer per chunk: a bytes object
    # per body from orjson keeps its writer's spare capacity (kilobytes each).
    data, ends = bytearray(), [0]
    same: dict[Any, Any] = {}  # one str object for each method and url: they repeat on every line
    for obj in _checked_lines(path, iter_lines(path)):
        ids.append(obj["custom_id"])
        method, url = obj.get("method"), obj.get("url")
        methods.append(same.setdefault(method, method) if isinstance(method, str) else method)
        urls.append(same.setdefault(url, url) if isinstance(url, str) else url)
        data += orjson.dumps(obj.get("body"))
        ends.append(len(data))
        if len(ends) > _SCAN_CHUNK:
            chunks.append(_text_array(data, ends))
            data, ends = bytearray(), [0]
    chunks.append(_text_array(data, ends))
    body = pd.arrays.ArrowExtensionArray(pa.chunked_array(chunks, type=pa.large_string()))
    return pd.DataFrame({"custom_id": ids, "method": methods, "url": urls, "body": pd.Series(body, copy=False)})


def _text_array(data: bytearray, ends: list[int]) -> pa.Array:
    offsets = pa.py_buffer(np.asarray(ends, dtype=np.int64))
    return pa.LargeStringArray.from_buffers(len(ends) - 1, offsets, pa.py_buffer(data))  # no copy


def _checked_lines(path: str | os.PathLike[str], lines: Iterable[Line]) -> Iterator[Any]:
    """The request objects of a file's lines, in order; :class:`RequestFileError` at the end if any is bad."""
    problems: list[tuple[int, str]] = []
    first: dict[str, int] = {}
    for n, obj, raw in lines:
        problem = _whole_file_problem(obj, raw)
        if problem is None:
            cid = obj["custom_id"]
            if cid in first:
                problem = (f"custom_id {_shown(cid)} is also on line {first[cid]}; each request needs its own "
                           f"id, so that its answer finds it")
            else:
                first[cid] = n
        if problem is not None:
            problems.append((n, problem))
        elif not problems:  # past the first problem, only problems are of interest
            yield obj
    if problems:
        raise RequestFileError(path, problems)


def _whole_file_problem(obj: Any, raw: bytes) -> str | None:
    if isinstance(obj, NotJson):
        # the decoder counts lines within the one line it was given: keep only the column
        why = re.sub(r"line 1 column (\d+) \(char \d+\)", r"column \1", obj.why)
        return f"not JSON ({why}): {_excerpt(raw)}"
    if not isinstance(obj, dict):
        return f"a JSON {_json_type(obj)}, not a request object: {_excerpt(raw)}"
    if "custom_id" not in obj:
        return ("no custom_id; every request line needs a unique string custom_id, which its answer carries "
                f"back: {_excerpt(raw)}")
    cid = obj["custom_id"]
    if not isinstance(cid, str):
        hint = f'; write it as a string, "custom_id": "{cid}"' if isinstance(cid, int | float) and \
            not isinstance(cid, bool) else ""
        return f"custom_id is {_shown(cid)} (a JSON {_json_type(cid)}), not a string{hint}"
    return None


def _json_type(obj: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(obj), "number")


def _excerpt(raw: bytes) -> str:
    text = raw.strip().decode("utf-8", "replace")
    return text if len(text) <= 80 else text[:77] + "..."



def check_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A request frame given directly (not read from a file): the checks a file gets, by row instead of line.

    Raises
    ------
    InputError
        Missing columns, ids that are not strings, or ids used more than once.
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"a request frame has the columns {list(COLUMNS)} (as read_requests or to_requests "
                         f"give them); this one lacks {missing}")
    ids = frame["custom_id"]
    bad = [repr(v) for v in ids if not isinstance(v, str)]
    if bad:
        raise InputError(f"column 'custom_id': {len(bad)} id(s) are not strings ({', '.join(bad[:3])}); "
                         f"convert them (df['custom_id'].astype(str))")
    dup = ids[ids.duplicated()].unique().tolist()
    if dup:
        raise InputError(f"column 'custom_id': ids used more than once: {dup[:5]}; each request needs its own id")
    return frame
