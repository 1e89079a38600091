"""OpenAI batch request files: read as a request frame, checked line by line, split into jobs.

A request file is JSONL with one request per line, as the OpenAI Batch API and
vLLM's ``run-batch`` read it::

    {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "2+2?"}]}}

:func:`read_requests` gives the frame ``df.llama.to_requests`` gives
(``custom_id``, ``method``, ``url``, ``body`` as a dict). Problems come in two
kinds, kept apart as pdbatch keeps failed rows apart from failed jobs:

- **the file**: a line that is not a JSON object, a missing or non-string
  ``custom_id``, a ``custom_id`` used twice. Nothing can be matched back to
  such a file, so it is refused whole (:class:`RequestFileError`), every
  problem named by its line number, before anything is sent;
- **a line**: a ``url`` other than chat completions or embeddings, a method
  other than POST, a body the backend cannot take. :func:`plan_lines` turns
  each into that line's error; the other lines still run.

Files written for services that leave out ``method`` and ``url`` (the body
alone says what it is) run too: a body with ``messages`` is a chat request, one
with ``input`` an embeddings request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from ..errors import ConfigError, InputError
from ..models import CHAT, EMBEDDINGS, URLS, Kind
from .bodies import iter_bodies
from .linecheck import KIND_OF_URL
from .linecheck import body_problem as _body_problem
from .linecheck import line_kind as _line_kind
from .linecheck import missing as _missing
from .linecheck import reader as _reader
from .linecheck import shown as _shown

if TYPE_CHECKING:
    from ..backends.base import Backend

__all__ = ["LineGroup", "PlannedLines", "RequestFileError", "plan_lines", "read_requests", "request_lines",
           "scan_requests", "sniff", "sniff_file"]

COLUMNS = ("custom_id", "method", "url", "body")
#: The start of the error of a line refused before sending.
INVALID_PREFIX = "invalid request: "
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


# ------------------------------------------------------------- one line each
@dataclass
class LineGroup:
    """The lines of one kind: they run as one job, on one model.

    Attributes
    ----------
    kind : {"chat", "embeddings"}
    model : str
        The model as the backend writes it into bodies (``body.model`` is rewritten to it).
    positions : numpy.ndarray
        Rows of the request frame in this group, in file order.
    """

    kind: Kind
    model: str
    positions: np.ndarray
    #: The endpoint the lines name: the kind's own, or one the backend adds (:attr:`Backend.extra_urls`).
    url: str = ""

    def __post_init__(self) -> None:
        self.url = self.url or URLS[self.kind]


@dataclass
class PlannedLines:
    """A request frame checked against a backend: what runs where, and which lines fail alone.

    Attributes
    ----------
    frame : pandas.DataFrame
        From :func:`read_requests` (or ``to_requests``).
    groups : list of LineGroup
        One per kind present among the lines that run (chat first).
    errors : dict of int to str
        Rows that are not sent, each with its error.
    """

    frame: pd.DataFrame
    groups: list[LineGroup]
    errors: dict[int, str] = field(default_factory=dict)

    def bodies(self, group: LineGroup, positions: np.ndarray | None = None) -> Iterator[dict[str, Any]]:
        """The bodies to send for ``group`` (or some of its rows): as written, with the job's model."""
        for _, body in iter_bodies(self.frame, group.positions if positions is None else positions):
            yield {**body, "model": group.model}


def plan_lines(frame: pd.DataFrame, backend: Backend, model: str | Mapping[str, str] | None = None, *,
               base: str | os.PathLike[str] | None = None) -> PlannedLines:
    """Check each request line against ``backend``, and choose the model of each kind.

    Parameters
    ----------
    frame : pandas.DataFrame
        Request lines (``custom_id``, ``method``, ``url``, ``body``).
    backend : Backend
        Its body fields and refusals decide which bodies it can take.
    model : str or dict, optional
        The model for every line (a dict ``{"chat": ..., "embeddings": ...}``
        for a file of both kinds). Without it, the lines' own ``body.model``
        is used when the lines of a kind agree; lines without one take it
        too, and with none at all the backend's default model runs.
    base : path, optional
        The request file's folder: a ``body.model`` naming a file by a
        relative path (``models/tiny.gguf``) is read relative to it, not to
        the current directory, so that a file and its models move together.

    Returns
    -------
    PlannedLines

    Raises
    ------
    ConfigError
        Lines of one kind that name different models (with no ``model=``),
        a ``model=`` string for a file of both kinds, or a model the backend
        does not know.
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"a request frame has the columns {list(COLUMNS)}; this one lacks {missing}")
    errors: dict[int, str] = {}
    extra = dict(backend.extra_urls)
    # one group per endpoint: the kinds' own, then those the backend adds (each fills a kind's columns)
    url_list = [URLS[CHAT], *extra, URLS[EMBEDDINGS]]
    code = {u: i for i, u in enumerate(url_list)}
    kind_of = {**KIND_OF_URL, **extra}
    # one small array per column, not a Python object per line: method and url repeat on every line
    line_url = np.full(len(frame), -1, dtype=np.int8)
    method_at, url_at = _reader(frame["method"]), _reader(frame["url"])
    for p, body in iter_bodies(frame):
        url, problem = _line_url(method_at(p), url_at(p), body, extra)
        if problem is None:
            assert url is not None
            problem = _body_problem(body, kind_of[url], backend) if url in KIND_OF_URL else _input_problem(body)
        if problem is None:
            line_url[p] = code[url]  # type: ignore[index]
        else:
            errors[p] = INVALID_PREFIX + problem
    urls = {u: np.flatnonzero(line_url == code[u]) for u in url_list}
    present = list(dict.fromkeys(kind_of[u] for u, found in urls.items() if len(found)))
    if isinstance(model, str) and len(present) > 1:
        raise ConfigError(
            f"model={model!r} cannot serve both kinds of line in this file (chat and embeddings); give one "
            f"model per kind, model={{'chat': ..., 'embeddings': ...}} (on the command line "
            f"--model chat=NAME --model embeddings=NAME)")
    if isinstance(model, Mapping):
        unknown = sorted(set(model) - {CHAT, EMBEDDINGS})
        if unknown:
            raise ConfigError(f"model=: the keys are 'chat' and 'embeddings', not {unknown}")
    groups = []
    for url, found in urls.items():
        if not len(found):
            continue
        kind = kind_of[url]
        positions = found.astype(np.int64)
        chosen = model.get(kind) if isinstance(model, Mapping) else model
        name = _model_of(frame, positions, kind, base) if chosen is None else chosen
        try:
            resolved = backend.model_name(name, kind)
        except ConfigError as exc:
            if chosen is not None or name is None:
                raise
            raise ConfigError(_not_here(backend, kind, name, exc)) from exc
        groups.append(LineGroup(kind, resolved, positions, url))
    return PlannedLines(frame, groups, errors)


def _line_url(method: Any, url: Any, body: Any, extra: Mapping[str, Kind]) -> tuple[str | None, str | None]:
    """The endpoint a line runs on (its kind's, or one ``extra`` names), or why it cannot run."""
    if isinstance(url, str) and url in extra and isinstance(body, dict) and (_missing(method) or method == "POST"):
        return url, None
    kind, problem = _line_kind(method, url, body)
    if problem is not None and isinstance(url, str) and extra and problem.startswith("url "):
        problem += f" (this backend also runs {', '.join(map(repr, extra))})"
    return (None, problem) if kind is None else (URLS[kind], None)



def _input_problem(body: dict[str, Any]) -> str | None:
    """A body for an endpoint the backend adds (``/v1/responses``) needs its ``input``; the service checks the rest."""
    text = body.get("input")
    if (isinstance(text, str) and text.strip()) or (isinstance(text, list) and text):
        return None
    return f"input must be a non-empty string or list of input items, not {_shown(text)}"



def _not_here(backend: Backend, kind: Kind, name: str, exc: ConfigError) -> str:
    """Why the file's own model cannot run on ``backend``: what it has, and how to choose (never a guess)."""
    models = backend.known_models(kind)
    if models:
        default = backend.model_name(None, kind)
        has = (f"Its {kind} models: " + ", ".join(f"{m} (the default)" if m == default else m for m in models)
               + ".")
    else:
        has = str(exc)
    return (f"the {kind} lines name model {name!r} in body.model, which the {backend.name} backend does not have. "
            f"{has} To run this file here, choose its model: --model NAME on the command line (model='NAME' in "
            f"Python) overrides body.model for every {kind} line; pdbatch does not pick one for you.")



def _model_of(frame: pd.DataFrame, positions: np.ndarray, kind: Kind,
              base: str | os.PathLike[str] | None = None) -> str | None:
    """The one model the lines of a kind name in ``body.model`` (None: none names one), a path made absolute."""
    where: dict[Any, list[int]] = {}  # each name's first lines (for the message) ...
    count: dict[Any, int] = {}  # ... and how many lines name it
    for p, body in iter_bodies(frame, positions):
        name = body.get("model")
        if name is not None:
            if count.setdefault(name, 0) < 3:
                where.setdefault(name, []).append(p)
            count[name] += 1
    if len(where) <= 1:
        name = next(iter(where), None)
        if name is not None and not isinstance(name, str):
            raise ConfigError(f"body.model is {_shown(name)}, not a model name; pass model=... to choose one")
        return _beside(name, base) if name is not None and base is not None else name
    found = "; ".join(f"{_shown(name)} ({_rows(frame, rows, count[name])})" for name, rows in where.items())
    raise ConfigError(
        f"the {kind} lines name {len(where)} different models: {found}. One job runs one model: pass "
        f"model=... (--model) to run every line on one of them, or split the file by model")


def _beside(name: str, base: str | os.PathLike[str]) -> str:
    """``name`` as a path relative to the request file's folder ``base``, when it names a file there.

    A relative path is never read from the current directory: the same file
    run from elsewhere would run another model, or none. A name that is a
    file only from the current directory is refused, saying where it was looked for.
    """
    path = Path(name)
    if path.is_absolute() or name.startswith("~"):
        return name
    beside = Path(base) / path
    if beside.is_file():
        return str(beside.resolve())
    if path.is_file():
        raise ConfigError(
            f"body.model {name!r} is a path relative to the current directory, but paths in a request file "
            f"are read relative to the file's folder, and there is no {beside}. Move the file there, write an "
            f"absolute path, or pass model=... (--model)")
    return name


def _rows(frame: pd.DataFrame, rows: list[int], n: int) -> str:
    ids = frame["custom_id"].iloc[rows[:3]].tolist()
    more = f" and {n - 3} more" if n > 3 else ""
    return f"{n} line(s): " + ", ".join(map(repr, ids)) + more
