"""The plain functions behind ``df.llama``: plan -> reuse -> check -> submit -> wait -> join.

The accessor only gathers arguments into a :class:`Call` (what to send for
each row) and :class:`Options` (how to run it) and calls these; they are
usable, and tested, without it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd

from .backends import Backend, get_backend
from .builders.requestfile import COLUMNS, INVALID_PREFIX
from .call import Call, Options
from .errors import ConfigError
from .jobs import job as jobs
from .jobs.failures import hold_back_sure_failures
from .jobs.prepare import answered, plan, prepare, result_columns, submit_prepared
from .jobs.preview import Preview, make_preview
from .jobs.runfile import run_requests
from .lines.kinds import spec
from .results.readside import empty_result, finish_result, merge_retried

__all__ = ["answered", "batch_predict", "plan", "preview", "retry_failed", "submit"]


def submit(frame: pd.DataFrame, call: Call, backend: Backend | str | None, options: Options) -> jobs.BatchJob:
    """Submit the call's job and return its handle (a job with no parts when everything was reused)."""
    p = prepare(frame, call, backend, options)
    if len(p.plan.positions) == 0:
        raise ConfigError("nothing to submit: the frame is empty or every row was skipped "
                          "(batch_predict returns the empty result without a job)")
    return submit_prepared(frame, p, options)


def batch_predict(frame: pd.DataFrame, call: Call, backend: Backend | str | None, options: Options, *,
                  progress: bool = True, timeout: float | None = None) -> pd.DataFrame:
    """Run the call as one job, wait for it, and return the joined frame."""
    p = prepare(frame, call, backend, options)
    if len(p.plan.positions) == 0:
        return finish_result(empty_result(frame, p.plan, options.overwrite), call)
    if len(p.part.send.positions) == 0:
        return answered(frame, p, options, progress=progress)
    return submit_prepared(frame, p, options).wait(timeout, progress=progress).result()


def preview(frame: pd.DataFrame, call: Call, backend: Backend | str | None, options: Options) -> Preview:
    """What the call would send and cost, without sending anything."""
    p = prepare(frame, call, backend, options, check_limits=False)
    pv = make_preview(p.part, p.backend, dict(options.prices or {}))
    # the note that a max_tokens default was added, for kinds that take one (pdbatch.lines.kinds)
    pv.max_tokens_default = ("max_tokens" in spec(pv.kind).fields and call.classify is None
                             and not {"max_tokens", "max_completion_tokens"} & set(call.params))
    return pv


def retry_failed(result: pd.DataFrame, *, job_id: str | None = None, backend: Backend | str | None = None,
                 progress: bool = True, timeout: float | None = None, **overrides: Any) -> pd.DataFrame:
    """Send again only the rows whose ``error`` is set; return the frame with their new answers.

    Parameters
    ----------
    result : pandas.DataFrame
        A result frame (from ``batch_predict`` or ``job.result``).
    job_id : str, optional
        The job that produced it; default ``result.attrs["pdbatch_job"]``.
    backend : Backend or str, optional
        Where to send the rows again; default the job's backend.
    **overrides
        Changes to the original call's body parameters (e.g. ``max_tokens=512``).

    A request file's job (``pdbatch.run_requests``) sends its failed lines
    again as they are (``overrides`` change their bodies' fields), except the
    lines refused before sending, which would be refused again; a frame's job
    renders its failed rows again with the call (``overrides`` change its
    parameters). Without ``backend`` or ``overrides`` the rows are sent as they were, so
    a row whose error is sure to come back (a prompt over the context window,
    an invalid request: :func:`pdbatch.jobs.failures.sure_to_fail`) is not sent
    again; a warning says which, why, and what would change that.

    Returns
    -------
    pandas.DataFrame
        ``result`` with the retried rows replaced; rows that succeeded are kept as they were.
    """
    job_id = job_id or result.attrs.get("pdbatch_job")
    if not job_id and result.attrs.get("pdbatch_rows", {}).get("sent") == 0:
        return result  # answered without a job (cache, duplicates): nothing was sent, nothing failed to resend
    if not job_id:
        raise ConfigError("retry_failed needs the job this frame came from: pass job_id=..., or use a frame "
                          "returned by batch_predict / job.result (it remembers its job)")
    job = jobs.attach(job_id)
    lines = job.call.requests is not None  # a request file's: its lines are sent again as they are
    if not lines and not job.call.saved:
        raise ConfigError(f"job {job_id} has no saved call to repeat (submitted by an older pdbatch)")
    if "error" not in result.columns:
        raise ConfigError("the frame has no 'error' column: is it a pdbatch result?")
    errors = result["error"]
    failed = errors.notna().to_numpy()
    # rows that fail the same way whatever is sent: refused before sending, or skipped for a null by choice
    final = INVALID_PREFIX if lines else "skipped: null" if job.call.on_null == "skip" else None
    if final is not None:
        failed = failed & ~errors.fillna("").str.startswith(final).to_numpy()
    if backend is None and not overrides:  # the same request again: a deterministic failure comes back
        labels = result["custom_id"].astype(str).tolist() if lines else [f"index {i!r}" for i in result.index]
        failed = hold_back_sure_failures(errors.to_numpy(dtype=object), labels, failed)
    if not failed.any():
        return result
    be = get_backend(backend) if backend is not None else job.backend
    # every original option (cache, passthrough, max_rows, max_cost, prices, display_name, ...) holds for the retry
    opts = job.options
    if lines:  # the lines as they were, ``overrides`` changing their bodies' fields; the first run's model
        subset = result.loc[failed, list(COLUMNS)].copy()
        subset["body"] = [{**b, **overrides} for b in subset["body"]]
        again = run_requests(subset, model=(job.call.requests or {}).get("model"), backend=be, cache=opts.cache,
                             progress=progress, timeout=timeout, max_rows=opts.max_rows, max_cost=opts.max_cost,
                             prices=opts.prices, display_name=opts.display_name)
        added = [c for c in again.columns.difference(COLUMNS, sort=False) if c in result.columns]
    else:  # the rows rendered again by the call, ``overrides`` changing its parameters
        call = replace(job.call, params={**job.call.params, **overrides})
        # a classify result has dropped the raw answer columns: only what the frame has is replaced
        added = [c for c in result_columns(call, job.kind) if c in result.columns]
        subset = result.loc[failed, [c for c in result.columns if c not in added]]
        again = batch_predict(subset, call, be, opts, progress=progress, timeout=timeout)
    return merge_retried(result, again, failed, added, job_id)
