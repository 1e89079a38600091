"""OpenAI batch request files: read as a request frame, checked line by line, one request plan per kind.

A request file is JSONL with one request per line, as the OpenAI Batch API and
vLLM's ``run-batch`` read it::

    {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "2+2?"}]}}

:func:`read_requests` gives the frame ``df.llama.to_requests`` gives
(``custom_id``, ``method``, ``url``, ``body`` as a dict); the reading is
:mod:`pdbatch.builders.readrequests`, the lines checked against a backend and
grouped into one plan per kind of line (:func:`plan_lines`,
:meth:`PlannedLines.plans`) this module. Problems come in two kinds, kept
apart as pdbatch keeps failed rows apart from failed jobs:

- **the file**: a line that is not a JSON object, a missing or non-string
  ``custom_id``, a ``custom_id`` used twice. Nothing can be matched back to
  such a file, so it is refused whole (:class:`RequestFileError`), every
  problem named by its line number, before anything is sent;
- **a line**: a ``url`` other than chat completions or embeddings, a method
  other than POST, a body the backend or the job's model cannot take (every
  question asked of the backend about a line is in :mod:`.linecheck`).
  :func:`plan_lines` turns each into that line's error; the other lines still run.

Files written for services that leave out ``method`` and ``url`` (the body
alone says what it is) run too: a body with ``messages`` is a chat request, one
with ``input`` an embeddings request.
"""


from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, InputError
from ..models import CHAT, EMBEDDINGS, URLS, Kind
from .bodies import BodiesPlan, iter_bodies
from .linecheck import KIND_OF_URL
from .linecheck import body_problem as _body_problem
from .linecheck import line_kind as _line_kind
from .linecheck import missing as _missing
from .linecheck import model_problem as _model_problem
from .linecheck import reader as _reader
from .linecheck import shown as _shown
from .readrequests import (  # the reading of a file, here for the callers that know it by this module
    COLUMNS,
    RequestFileError,
    read_requests,
    request_lines,
    scan_requests,
    sniff,
    sniff_file,
)

if TYPE_CHECKING:
    from ..backends.base import Backend

__all__ = ["COLUMNS", "INVALID_PREFIX", "OTHER_PART", "LineGroup", "PlannedLines", "RequestFileError", "plan_lines",
           "read_requests", "request_lines", "scan_requests", "sniff", "sniff_file"]

#: The start of the error of a line refused before sending.
INVALID_PREFIX = "invalid request: "
#: The start of the reason a kind's plan gives for the lines of the other kind (run by another part of the job).
OTHER_PART = "not in this job: "


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

    def plans(self, backend: Backend, model: str | Mapping[str, str] | None = None) -> list[BodiesPlan]:
        """One request plan per group, each over the whole frame with the other lines skipped.

        The other groups' lines are skipped as :data:`OTHER_PART`, the invalid
        ones with their error, so that every part's result is in file order.
        When every line is invalid, one chat plan with nothing to send keeps their errors.
        """
        groups = self.groups
        if not groups:
            name = model if isinstance(model, str) else (model or {}).get(CHAT)
            groups = [LineGroup(CHAT, backend.model_name(name, CHAT), np.empty(0, dtype=np.int64))]
        return [self.plan(g) for g in groups]

    def plan(self, group: LineGroup) -> BodiesPlan:
        """``group``'s request plan: the whole frame, the other lines skipped (the invalid ones with their error)."""
        frame = self.frame
        others = np.ones(len(frame), dtype=bool)
        others[group.positions] = False
        other = EMBEDDINGS if group.kind == CHAT else CHAT
        skipped = dict.fromkeys(np.flatnonzero(others).tolist(), f"{OTHER_PART}a {other} line, run by its own job")
        skipped.update(self.errors)
        caps = [b.get("max_completion_tokens", b.get("max_tokens", b.get("max_output_tokens")))
                for _, b in iter_bodies(frame, group.positions)]
        # what the preview reads from the params: the largest cap, an upper bound of every answer's length
        params = {"max_tokens": max(caps)} if caps and all(isinstance(c, int) for c in caps) else {}
        # the ids are read from the frame's column (BodiesPlan.ids_at); an empty array says they are not positional
        ids = np.empty(0, dtype=object)
        return BodiesPlan(frame, group.kind, group.url, group.model, None, None, None, params, ids, skipped)


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
        if not backend.serves(kind):  # each such line is its own error; the file's other lines run
            why = (f"{INVALID_PREFIX}the {backend.name} backend runs no {kind} requests; run these lines on a "
                   f"backend that does (--backend NAME on the command line, backend= in Python)")
            errors.update(dict.fromkeys(positions.tolist(), why))
            continue
        chosen = model.get(kind) if isinstance(model, Mapping) else model
        name = _model_of(frame, positions, kind, base) if chosen is None else chosen
        try:
            resolved = backend.model_name(name, kind)
        except ConfigError as exc:
            if chosen is not None or name is None:
                raise
            raise ConfigError(_not_here(backend, kind, name, exc)) from exc
        if url in KIND_OF_URL:  # an endpoint a backend adds has its own body; the service checks the rest
            positions = _model_checked(frame, positions, kind, resolved, backend, errors)
        if len(positions):
            groups.append(LineGroup(kind, resolved, positions, url))
    return PlannedLines(frame, groups, errors)


def _model_checked(frame: pd.DataFrame, positions: np.ndarray, kind: Kind, model: str, backend: Backend,
                   errors: dict[int, str]) -> np.ndarray:
    """``positions`` without the lines ``model`` cannot take, each of those given its error in ``errors``.

    Asked once the lines of a kind have their model (it may come from the
    lines themselves): each line's body is its own, so what one line carries
    fails that line, where a frame's shared parameters refuse the call.
    """
    refused = []
    for p, body in iter_bodies(frame, positions):
        problem = _model_problem(body, kind, model, backend)
        if problem is not None:
            errors[p] = INVALID_PREFIX + problem
            refused.append(p)
    return np.setdiff1d(positions, refused, assume_unique=True) if refused else positions


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
