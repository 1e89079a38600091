"""Run an OpenAI batch request file (or the frame ``read_requests`` gives) as pdbatch jobs.

:func:`run_requests` is the one entry point, for a path or a request frame,
blocking (the joined frame) or not (a :class:`RequestsJob`). Each kind of line
(chat, embeddings) runs as a frame job of its own, with everything a frame job
has (chunking at the backend's limits, the response cache and duplicate
merging, ``max_rows`` / ``max_cost``); the job of the last kind is the head,
whose id the caller sees, and its manifest names the others. Every job keeps
the whole request frame, with the lines it does not run marked as skipped, so
each part's result is in file order and the parts merge by position.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TypeAlias, overload

import numpy as np
import pandas as pd

from ..backends import Backend, get_backend
from ..backends.base import JobStatus
from ..builders.bodies import BodiesPlan, as_dicts, iter_bodies
from ..builders.requestfile import COLUMNS, INVALID_PREFIX, LineGroup, PlannedLines, plan_lines, scan_requests
from ..call import CacheMode, Call, Options
from ..display.choose import live_display_available
from ..errors import ConfigError, InputError
from ..lines.batchoutput import write_output
from ..models import CHAT, EMBEDDINGS, Kind
from ..results.join import output_columns
from ..results.readside import merge_retried
from ..store.cache import deterministic
from . import filewriter
from . import job as jobs
from . import submit as submitting
from .failures import hold_back_sure_failures
from .filewriter import write_table
from .fit import hold_back
from .preview import Preview, enforce_limits, make_preview
from .reuse import JobPlan, Part, Reuse, plan_reuse

__all__ = ["RequestsJob", "preview_requests", "run_requests"]

#: The key of a request file's job in its saved call (``pdbatch.attach`` then returns a :class:`RequestsJob`).
TYPE = "requests"
Model: TypeAlias = "str | Mapping[str, str] | None"
Requests: TypeAlias = "str | os.PathLike[str] | pd.DataFrame"


def _plan(planned: PlannedLines, group: LineGroup) -> BodiesPlan:
    """The plan of one group: the whole frame, the other lines skipped (the invalid ones with their error)."""
    frame = planned.frame
    others = np.ones(len(frame), dtype=bool)
    others[group.positions] = False
    why = f"not in this job: a {_other(group.kind)} line, run by its own job"
    skipped = dict.fromkeys(np.flatnonzero(others).tolist(), why)
    skipped.update(planned.errors)
    caps = [b.get("max_completion_tokens", b.get("max_tokens", b.get("max_output_tokens")))
            for _, b in iter_bodies(frame, group.positions)]
    # what the preview reads from the params: the largest cap, an upper bound of every answer's length
    params = {"max_tokens": max(caps)} if caps and all(isinstance(c, int) for c in caps) else {}
    # the ids are read from the frame's column (BodiesPlan.ids_at); an empty array says they are not positional
    ids = np.empty(0, dtype=object)
    return BodiesPlan(frame, group.kind, group.url, group.model, None, None, None, params, ids, skipped)


def _other(kind: Kind) -> str:
    return EMBEDDINGS if kind == CHAT else CHAT


def _reuse(plan: BodiesPlan, backend: Backend, cache: CacheMode) -> Reuse:
    """Duplicates and cache hits; with ``cache=True`` only among the lines whose answer is reproducible.

    A frame's rows share their parameters, a file's lines do not: each line
    decides for itself (temperature 0, a seed, or embeddings).
    """
    if cache is not True:
        return plan_reuse(plan, backend, cache)
    volatile = {p: "sampled" for p, body in iter_bodies(plan.frame, plan.positions)
                if not deterministic(plan.url, body)}
    restricted = replace(plan, skipped={**plan.skipped, **volatile}) if volatile else plan
    return plan_reuse(restricted, backend, "always")


def _check(frame: pd.DataFrame) -> pd.DataFrame:
    """A request frame given directly: the checks a file gets, by row instead of line."""
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
                 ) -> RequestsJob: ...
def run_requests(requests: Requests, *, wait: bool = True, model: Model = None,
                 backend: Backend | str | None = None, output: str | os.PathLike[str] | None = None,
                 progress: bool = True, timeout: float | None = None, cache: CacheMode = True,
                 max_rows: int | None = None, max_cost: float | None = None,
                 prices: Mapping[str, tuple[float, float]] | None = None,
                 display_name: str | None = None) -> pd.DataFrame | RequestsJob:
    """Run an OpenAI batch request file, or its frame, as it is.

    Parameters
    ----------
    requests : path or pandas.DataFrame
        A JSONL file of request lines (``custom_id``, ``method``, ``url``,
        ``body``), as the OpenAI Batch API and vLLM's ``run-batch`` read them,
        or the frame :func:`~pdbatch.read_requests` / ``df.llama.to_requests`` give.
    wait : bool
        True (default): wait for the job and return the joined frame. False:
        return the :class:`RequestsJob` at once.
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
        :meth:`RequestsJob.write_output`).
    progress, timeout, cache, max_rows, max_cost, prices, display_name
        As in ``df.llama.batch_predict``; ``max_rows`` and ``max_cost`` count
        every job of the file together.

    Returns
    -------
    pandas.DataFrame or RequestsJob
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
    frame = _check(requests) if isinstance(requests, pd.DataFrame) else scan_requests(requests)
    be = get_backend(backend)
    options = Options(cache=cache, max_rows=max_rows, max_cost=max_cost, prices=prices, display_name=display_name)
    planned = plan_lines(frame, be, model, base=_folder(requests))
    if not len(frame):
        if not wait:
            raise ConfigError("nothing to submit: the request file has no lines")
        out = _empty(as_dicts(frame))
        if output is not None:  # an empty file has nothing to answer: an empty output
            write_table(out, output)
        return out
    # lines over the context window are not sent, as preview_requests lists them (pdbatch.jobs.fit)
    plans = [hold_back(_plan(planned, g), be) for g in planned.groups]
    if not plans:  # every line is invalid: one job with nothing to send keeps their errors
        name = model if isinstance(model, str) else (model or {}).get(CHAT)
        empty = LineGroup(CHAT, be.model_name(name, CHAT), np.empty(0, dtype=np.int64))
        plans = [_plan(planned, empty)]
    job_plan = JobPlan(tuple(Part.of(p, _reuse(p, be, cache)) for p in plans))
    enforce_limits(job_plan, be, options, what="file", fewer="Send fewer lines",
                 details="pdbatch.preview_requests(...)")
    siblings: list[str] = []
    job: jobs.BatchJob | None = None
    # the other kind first: the head (the first kind, chat in a mixed file) then names it
    for part in job_plan.parts[1:] + job_plan.parts[:1]:
        call = Call(url=part.plan.url, custom_id="custom_id", model=model if isinstance(model, str) else None,
                    requests={"model": dict(model) if isinstance(model, Mapping) else model,
                              "siblings": list(siblings)})
        job = submitting.submit(frame, part, be, call, options)
        siblings.append(job.id)
    assert job is not None
    head = jobs.attach(job.id, be)  # the head's handle speaks for every kind's job
    assert isinstance(head, RequestsJob)
    if not wait:
        if progress and live_display_available():
            head.display()
        return head
    out = head.wait(timeout, progress=progress).result()
    if output is not None:
        head.write_output(output)
    return out


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
    frame = _check(requests) if isinstance(requests, pd.DataFrame) else scan_requests(requests)
    be = get_backend(backend)
    planned = plan_lines(frame, be, model, base=_folder(requests))
    out = []
    for group in planned.groups:
        plan = _plan(planned, group)
        pv = make_preview(Part.of(plan, _reuse(plan, be, cache)), be, dict(prices or {}))
        out.append(pv)
    return out


def _folder(requests: Requests) -> Path | None:
    """The request file's folder, against which relative paths in ``body.model`` are read (None: a frame)."""
    return None if isinstance(requests, pd.DataFrame) else Path(requests).parent


def _empty(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for c in output_columns(CHAT):
        out[c] = pd.Series([], dtype=object if c in ("response", "finish_reason", "error") else "Int64")
    return out


class RequestsJob(jobs.BatchJob):
    """The job(s) running a request file: one per kind of line, seen as one.

    Returned by ``run_requests(..., wait=False)`` and by ``pdbatch.attach``
    for the id it printed. ``wait``, ``cancel``, ``refresh`` and ``result``
    act on every part; :meth:`write_output` writes the answers as a batch
    output file.
    """

    def __init__(self, record: Any, folder: Path, backend: Backend, *, allow_pickle: bool = False) -> None:
        super().__init__(record, folder, backend, allow_pickle=allow_pickle)
        siblings = (record.call.get(TYPE) or {}).get("siblings", [])
        parts = [jobs.attach(s, backend, allow_pickle=allow_pickle) for s in siblings]
        # the head's own part, as a plain job: its methods here speak for the whole file
        self.members: list[jobs.BatchJob] = [*parts, jobs.BatchJob(record, folder, backend,
                                                                     allow_pickle=allow_pickle)]

    @property
    def ids(self) -> list[str]:
        return [i for m in self.members for i in m.ids]

    def refresh(self) -> JobStatus:
        self._status = jobs.combine([m.refresh() for m in self.members]) if len(self.members) > 1 \
            else self.members[0].refresh()
        return self._status

    def poll_once(self) -> JobStatus:
        statuses = [m.poll_once() for m in self.members]
        self._status = jobs.combine(statuses) if len(statuses) > 1 else statuses[0]
        return self._status

    def cancel(self) -> None:
        for m in self.members:
            m.cancel()
        self.refresh()

    def resume(self) -> bool:
        return any([m.resume() for m in self.members])

    def result(self, partial: bool = False) -> pd.DataFrame:
        """The request frame with each line's answer (see :func:`run_requests`), in file order.

        Parameters
        ----------
        partial : bool
            Also when a part failed, was cancelled or is still running: lines
            without an answer get an ``error`` saying why.
        """
        results = [m.result(partial) for m in self.members]
        if len(results) == 1:
            out = results[0]
        else:
            out = results[-1].copy()
            for m, res in zip(self.members, results, strict=True):
                mine = _owned(m, len(out))
                for c in output_columns(m.kind):  # type: ignore[arg-type]
                    if c not in out.columns:  # before "error", which every kind has
                        blank = pd.array([None] * len(out), dtype=res[c].dtype)
                        out.insert(len(out.columns) - 1, c, pd.Series(blank, index=out.index))
                    col = out[c].copy()
                    col.iloc[mine] = res[c].iloc[mine].to_numpy()
                    out[c] = col
        out = as_dicts(out)  # a job keeps the bodies as JSON text: the user reads dicts
        out.attrs["pdbatch_job"] = self.id
        return out

    def retry_failed(self, result: pd.DataFrame, *, backend: Backend | str | None = None, progress: bool = True,
                     timeout: float | None = None, **overrides: Any) -> pd.DataFrame:
        """Send the lines of ``result`` that failed again, as they were (``df.llama.retry_failed`` calls this).

        Lines refused before sending (``invalid request: ...``) would fail the
        same way and are kept as they are; so are, unless ``backend`` or
        ``overrides`` change the request, lines whose error is sure to come
        back (:func:`pdbatch.jobs.failures.sure_to_fail`), with a warning. ``overrides`` change body fields
        of the lines sent again (``max_tokens=512``); the model and the cache
        mode are the first run's.
        """
        failed = result["error"].notna().to_numpy() & ~result["error"].fillna("").str.startswith(
            INVALID_PREFIX).to_numpy()
        if backend is None and not overrides:  # the same lines again: a deterministic failure comes back
            failed = hold_back_sure_failures(result["error"].to_numpy(dtype=object),
                                             result["custom_id"].astype(str).tolist(), failed)
        if not failed.any():
            return result
        subset = result.loc[failed, list(COLUMNS)].copy()
        subset["body"] = [{**b, **overrides} for b in subset["body"]]
        be = get_backend(backend) if backend is not None else self.backend
        # every original option (cache, max_rows, max_cost, prices, display_name) holds for the retry
        opts = self.options
        again = run_requests(subset, model=(self.call.requests or {}).get("model"), backend=be, cache=opts.cache,
                             progress=progress, timeout=timeout, max_rows=opts.max_rows, max_cost=opts.max_cost,
                             prices=opts.prices, display_name=opts.display_name)
        answered = [c for c in again.columns.difference(COLUMNS, sort=False) if c in result.columns]
        return merge_retried(result, again, failed, answered, self.id)

    def output_lines(self, partial: bool = False) -> Iterator[dict[str, Any]]:
        """Each line's answer as an OpenAI batch output object, in file order (see :mod:`pdbatch.lines.batchoutput`)."""
        out = self.result(partial)
        owner = np.full(len(out), len(self.members) - 1)
        for i, m in enumerate(self.members):
            owner[_owned(m, len(out))] = i
        return filewriter.output_lines(self.id, out, self.members, owner)

    def write_output(self, path: str | os.PathLike[str], partial: bool = False) -> int:
        """Write every line's answer to ``path``; returns the number of lines.

        ``.jsonl`` (or ``.ndjson``): OpenAI's batch output format, one
        ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``
        object per request line. ``.parquet`` / ``.csv``: the columns
        ``custom_id``, ``response``, ``error`` and the token columns
        (``finish_reason``, ``prompt_tokens``, ``completion_tokens``;
        ``embedding`` for embeddings lines).
        """
        if Path(path).suffix.lower() in (".jsonl", ".ndjson"):
            return write_output(path, self.output_lines(partial))
        out = self.result(partial)
        write_table(out, path)
        return len(out)


def _owned(member: jobs.BatchJob, n: int) -> np.ndarray:
    """Positions a part runs (sent, or answered by the cache or an identical line)."""
    mine = np.ones(n, dtype=bool)
    mine[list(member.skipped)] = False
    return mine


jobs.JOB_TYPES[TYPE] = RequestsJob
