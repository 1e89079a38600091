"""Run an OpenAI batch request file (or the frame ``read_requests`` gives) as a pdbatch job.

:func:`run_requests` is the one entry point, for a path or a request frame,
blocking (the joined frame) or not (the :class:`~pdbatch.jobs.job.BatchJob`).
It is the frame path with another reader: the file's lines become one
request plan per kind of line (chat, embeddings), planned, limited and
submitted as a frame's call is (:func:`pdbatch.jobs.prepare.make_plan`,
:func:`pdbatch.jobs.submit.submit`): one job with a part per kind, held by
one :class:`~pdbatch.jobs.job.BatchJob`, or no job at all when nothing is left
to send (:func:`pdbatch.jobs.prepare.answered_plan`). The writer is
:mod:`pdbatch.jobs.filewriter` (``job.write_output``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Literal, TypeAlias, overload

import pandas as pd

from ..backends import Backend, get_backend
from ..builders.bodies import BodiesPlan, as_dicts, iter_bodies
from ..builders.readrequests import check_frame
from ..builders.requestfile import PlannedLines, plan_lines, scan_requests
from ..builders.requests import RequestPlan
from ..call import CacheMode, Call, Options
from ..display.choose import live_display_available
from ..errors import ConfigError
from ..models import CHAT
from ..results.join import output_columns
from ..store.cache import deterministic
from . import job as jobs
from .filewriter import Answered, PartAnswers
from .prepare import answered_plan, make_plan
from .preview import Preview, make_preview
from .reuse import JobPlan, Reuse, plan_reuse
from .submit import submit

__all__ = ["preview_requests", "run_file", "run_requests"]

Model: TypeAlias = "str | Mapping[str, str] | None"
Requests: TypeAlias = "str | os.PathLike[str] | pd.DataFrame"


def _reuse(plan: RequestPlan, backend: Backend, cache: CacheMode) -> Reuse:
    """Duplicates and cache hits; with ``cache=True`` only among the lines whose answer is reproducible.

    A frame's rows share their parameters, a file's lines do not: each line
    decides for itself (temperature 0, a seed, or embeddings).
    """
    if cache is not True:
        return plan_reuse(plan, backend, cache)
    assert isinstance(plan, BodiesPlan)  # a request file's plan: its rows are whole bodies
    volatile = {p: "sampled" for p, body in iter_bodies(plan.frame, plan.positions)
                if not deterministic(plan.url, body)}
    restricted = replace(plan, skipped={**plan.skipped, **volatile}) if volatile else plan
    return plan_reuse(restricted, backend, "always")


@overload
def run_requests(requests: Requests, *, wait: Literal[True] = ..., model: Model = ...,
                 backend: Backend | str | None = ..., output: str | os.PathLike[str] | None = ...,
                 progress: bool = ..., timeout: float | None = ..., cache: CacheMode = ...,
                 max_rows: int | None = ..., max_cost: float | None = ...,
                 prices: Mapping[str, tuple[float, float]] | None = ..., display_name: str | None = ...,
                 ) -> pd.DataFrame: ...
@overload
def run_requests(requests: Requests, *, wait: Literal[False], model: Model = ...,
                 backend: Backend | str | None = ..., output: str | os.PathLike[str] | None = ...,
                 progress: bool = ..., timeout: float | None = ..., cache: CacheMode = ...,
                 max_rows: int | None = ..., max_cost: float | None = ...,
                 prices: Mapping[str, tuple[float, float]] | None = ..., display_name: str | None = ...,
                 ) -> jobs.BatchJob: ...
def run_requests(requests: Requests, *, wait: bool = True, model: Model = None,
                 backend: Backend | str | None = None, output: str | os.PathLike[str] | None = None,
                 progress: bool = True, timeout: float | None = None, cache: CacheMode = True,
                 max_rows: int | None = None, max_cost: float | None = None,
                 prices: Mapping[str, tuple[float, float]] | None = None,
                 display_name: str | None = None) -> pd.DataFrame | jobs.BatchJob:
    """Run an OpenAI batch request file, or its frame, as it is.

    Parameters
    ----------
    requests : path or pandas.DataFrame
        A JSONL file of request lines (``custom_id``, ``method``, ``url``,
        ``body``), as the OpenAI Batch API and vLLM's ``run-batch`` read them,
        or the frame :func:`~pdbatch.read_requests` / ``df.llama.to_requests`` give.
    wait : bool
        True (default): wait for the job and return the joined frame. False:
        return the :class:`~pdbatch.BatchJob` at once.
    model : str or dict, optional
        The model for every line (``{"chat": ..., "embeddings": ...}`` for a
        file of both kinds). Without it the lines' own ``body.model`` runs
        when they agree, and the call is refused, naming the models, when
        they do not. ``body.model`` is rewritten to the job's model.
    backend : str or Backend, optional
        ``"local"`` (default), ``"vertex"``, or a backend object.
    output : path, optional
        Also write the answers there (with ``wait``): ``.jsonl`` in OpenAI's
        batch output format, ``.parquet`` / ``.csv`` as columns (see
        :meth:`BatchJob.write_output`).
    progress, timeout, cache, max_rows, max_cost, prices, display_name
        As in ``df.llama.batch_predict``; ``max_rows`` and ``max_cost`` count
        every job of the file together.

    Returns
    -------
    pandas.DataFrame or BatchJob
        The frame: ``custom_id``, ``method``, ``url``, ``body``, then
        ``response``, ``finish_reason``, ``prompt_tokens``,
        ``completion_tokens`` (chat lines), ``embedding`` (embeddings lines)
        and ``error``, one row per line in file order.

    Raises
    ------
    RequestFileError
        The file cannot run at all (lines that are not JSON, missing or
        repeated ``custom_id``s): every bad line named, nothing sent.
    ConfigError
        Lines of one kind naming different models, an unknown model, a
        limit exceeded. A line the backend cannot take is not an exception:
        it gets its ``error`` and the others run.
    JobError
        (with ``wait``) a job failed as a whole.
    """
    if wait:
        out, answers = run_file(requests, model=model, backend=backend, progress=progress, timeout=timeout,
                                cache=cache, max_rows=max_rows, max_cost=max_cost, prices=prices,
                                display_name=display_name)
        if output is not None:
            answers.write_output(output)
        return out
    be = get_backend(backend)
    options = Options(cache=cache, max_rows=max_rows, max_cost=max_cost, prices=prices, display_name=display_name)
    frame, job_plan, call = _prepare(requests, be, model, options)
    if job_plan is None:
        raise ConfigError("nothing to submit: the request file has no lines")
    job = submit(frame, job_plan, be, call, options)
    if progress and live_display_available():
        job.display()
    return job


def run_file(requests: Requests, *, model: Model = None, backend: Backend | str | None = None,
             progress: bool = True, timeout: float | None = None, cache: CacheMode = True,
             max_rows: int | None = None, max_cost: float | None = None,
             prices: Mapping[str, tuple[float, float]] | None = None, display_name: str | None = None,
             ) -> tuple[pd.DataFrame, jobs.BatchJob | Answered]:
    """:func:`run_requests` with ``wait``: the joined frame, and what writes its answers (``pdbatch run``).

    As a frame's call, a file with nothing left to send (every line answered
    by the cache or by an identical line, or refused before sending) runs no
    job and makes no job folder: its answers are written from the plan
    (:class:`~pdbatch.jobs.filewriter.Answered`).

    Parameters
    ----------
    requests, model, backend, progress, timeout, cache, max_rows, max_cost, prices, display_name
        As in :func:`run_requests`.

    Returns
    -------
    (pandas.DataFrame, BatchJob or Answered)
        The result, and the job that answered it (or its stand-in when no
        job was needed), whose ``write_output`` / ``output_lines`` write the answers.
    """
    be = get_backend(backend)
    options = Options(cache=cache, max_rows=max_rows, max_cost=max_cost, prices=prices, display_name=display_name)
    frame, job_plan, call = _prepare(requests, be, model, options)
    if job_plan is None:  # an empty file has nothing to answer: an empty output
        out = _empty(as_dicts(frame))
        return out, Answered(out, [], [])
    if all(len(part.send.positions) == 0 for part in job_plan.parts):
        out = answered_plan(frame, job_plan, call, be, options, progress=progress)
        ids = frame["custom_id"].tolist()
        parts = [*job_plan.parts[1:], job_plan.parts[0]]  # the head last, as a job holds them
        return out, Answered(out, ids, [PartAnswers.of_plan(part, ids) for part in parts])
    job = submit(frame, job_plan, be, call, options)
    return job.wait(timeout, progress=progress).result(), job


def _prepare(requests: Requests, backend: Backend, model: Model, options: Options,
             ) -> tuple[pd.DataFrame, JobPlan | None, Call]:
    """The request frame, its plan (None: the file has no lines) and the call a job of it records."""
    planned = _read(requests, backend, model)
    call = Call(custom_id="custom_id", model=model if isinstance(model, str) else None,
                requests={"model": dict(model) if isinstance(model, Mapping) else model})
    if not len(planned.frame):
        return planned.frame, None, call
    # lines over the context window are not sent, as preview_requests lists them (make_plan: pdbatch.jobs.fit)
    job_plan = make_plan(planned.plans(backend, model), backend, options, reuse=lambda p: _reuse(p, backend,
                         options.cache), what="file", fewer="Send fewer lines",
                         details="pdbatch.preview_requests(...)")
    return planned.frame, job_plan, call


def preview_requests(requests: Requests, *, model: Model = None, backend: Backend | str | None = None,
                     cache: CacheMode = True,
                     prices: Mapping[str, tuple[float, float]] | None = None) -> list[Preview]:
    """What :func:`run_requests` would send and may cost, without sending anything.

    Parameters
    ----------
    requests, model, backend, cache, prices
        As in :func:`run_requests`.

    Returns
    -------
    list of Preview
        One per kind of line in the file (chat first): rows, unique requests,
        cache hits, prompt tokens per line, lines over the context window, and
        the estimated cost. Lines of the other kind and invalid lines count as skipped.
    """
    be = get_backend(backend)
    planned = _read(requests, be, model)
    job_plan = make_plan([planned.plan(g) for g in planned.groups], be, Options(cache=cache), check_limits=False,
                         reuse=lambda p: _reuse(p, be, cache))
    return [make_preview(part, be, dict(prices or {})) for part in job_plan.parts]


def _read(requests: Requests, backend: Backend, model: Model) -> PlannedLines:
    """The reader: a request file (or frame) read, checked and its lines grouped by kind against ``backend``."""
    if isinstance(requests, pd.DataFrame):
        return plan_lines(check_frame(requests), backend, model)
    # relative paths in body.model are read against the file's folder
    return plan_lines(scan_requests(requests), backend, model, base=Path(requests).parent)


def _empty(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for c in output_columns(CHAT):
        out[c] = pd.Series([], dtype=object if c in ("response", "finish_reason", "error") else "Int64")
    return out
