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
from .call import Call, Options
from .errors import ConfigError
from .jobs import job as jobs
from .jobs.failures import hold_back_sure_failures
from .jobs.prepare import answered, plan, prepare, result_columns, submit_prepared
from .jobs.preview import Preview, make_preview
from .jobs.runfile import RequestsJob
from .models import CHAT
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
    pv.max_tokens_default = (pv.kind == CHAT and call.classify is None
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

    Without ``backend`` or ``overrides`` the rows are sent as they were, so
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
    if isinstance(job, RequestsJob):  # a request file's lines: sent again as they are
        return job.retry_failed(result, backend=backend, progress=progress, timeout=timeout, **overrides)
    if not job.call.saved:
        raise ConfigError(f"job {job_id} has no saved call to repeat (submitted by an older pdbatch)")
    call = replace(job.call, params={**job.call.params, **overrides})
    if "error" not in result.columns:
        raise ConfigError("the frame has no 'error' column: is it a pdbatch result?")
    failed = result["error"].notna().to_numpy()
    if call.on_null == "skip":
        failed &= ~result["error"].fillna("").str.startswith("skipped: null").to_numpy()
    if backend is None and not overrides:  # the same request again: a deterministic failure comes back
        failed = hold_back_sure_failures(result["error"].to_numpy(dtype=object),
                                         [f"index {i!r}" for i in result.index], failed)
    if not failed.any():
        return result
    # a classify result has dropped the raw answer columns: only what the frame has is replaced
    added = [c for c in result_columns(call, job.kind) if c in result.columns]
    user_cols = [c for c in result.columns if c not in added]
    subset = result.loc[failed, user_cols]
    be = get_backend(backend) if backend is not None else job.backend
    # every original option (cache, passthrough, max_cost, prices, display_name, ...) holds for the retry
    again = batch_predict(subset, call, be, job.options, progress=progress, timeout=timeout)
    return merge_retried(result, again, failed, added, job_id)

