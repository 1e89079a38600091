"""The plain functions behind ``df.llama``: plan -> reuse -> check -> submit -> wait -> join.

The accessor only gathers arguments into a :class:`Call` (what to send for
each row) and :class:`Options` (how to run it) and calls these; they are
usable, and tested, without it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from . import classify
from . import job as jobs
from . import submit as submitting
from .backends import Backend, get_backend
from .backends.base import JobStatus
from .call import KEYWORDS, Call, Options
from .display import make_reporter
from .errors import ConfigError, InputError
from .failures import hold_back_sure_failures
from .fit import hold_back
from .join import output_columns
from .models import CHAT, Kind, kind_of_url
from .params import body_params
from .preview import Preview, enforce_limits, make_preview
from .readside import assemble, empty_result, finish_result
from .reporter import JobLabel
from .requests import RequestPlan, build_requests
from .results import parse_bytes
from .reuse import JobPlan, Part, plan_part
from .runfile import RequestsJob
from .structured import Schema, apply_schema, as_schema

__all__ = ["answered", "batch_predict", "plan", "preview", "retry_failed", "submit"]


@dataclass
class Prepared:
    """A call checked and planned against one backend."""

    call: Call
    backend: Backend
    part: Part
    schema: Schema | None

    @property
    def plan(self) -> RequestPlan:
        """Every row's request (rows of no request are skipped in it)."""
        return self.part.plan


def plan(frame: pd.DataFrame, call: Call, backend: Backend) -> tuple[RequestPlan, Schema | None]:
    """The call's request lines for ``frame`` (``schema=`` becomes ``response_format``).

    Raises
    ------
    InputError, ConfigError
        Bad input, body parameters that are unknown, wrong or not supported by
        the backend (see :mod:`pdbatch.params`), or a schema that does not fit the call.
    """
    check_single(call.model)
    if call.classify is not None:
        return classify.plan_requests(frame, call, backend), None
    kind = kind_of_url(call.url)
    params = body_params(call.params, kind, backend, keywords=KEYWORDS)
    schema = as_schema(call.schema) if call.schema is not None else None
    apply_schema(params, schema, kind, backend.schema_support)
    model = backend.model_name(call.model, kind)
    refused = [f"{name}={params[name]!r}: {why}" for name, why in
               backend.unsupported_for_model(model, kind, params).items()]
    if refused:
        raise InputError(f"{model} cannot take {len(refused)} request parameter(s) (nothing was sent): "
                         + "; ".join(refused))
    built = build_requests(frame, call.prompt, messages=call.messages, system=call.system,
                           model=model, url=call.url, custom_id=call.custom_id,
                           on_null=call.on_null, params=params)
    return built, schema


def check_single(model: Any) -> None:
    """Refuse a ``model=`` that is not one name where only one model can run (submit, preview, embed)."""
    if model is not None and not isinstance(model, str):
        raise ConfigError(f"model={model!r}: give one model name here (a pair, or a list or dict of models, "
                          f"runs side by side in batch_predict only)")


def prepare(frame: pd.DataFrame, call: Call, backend: Backend | str | None, options: Options,
            *, check_limits: bool = True) -> Prepared:
    """Validate ``call`` on ``frame`` for a job, plan its request lines and find what can be reused.

    With ``check_limits`` (a call about to run), rows that cannot fit the
    context window are marked failed and not sent (:func:`pdbatch.fit.hold_back`).

    Raises
    ------
    InputError, ConfigError
        Bad input, result columns that would be overwritten, a call past
        ``max_rows`` / ``max_cost``, or one whose every row is over the context window.
    """
    be = get_backend(backend)
    planned, schema = plan(frame, call, be)
    new_columns = result_columns(call, planned.kind)
    clash = [c for c in new_columns if c in frame.columns]
    if clash and not options.overwrite:
        raise ConfigError(
            f"the frame already has column(s) {clash}, which the result would overwrite; rename them "
            f"(df.rename(columns=...)) or pass overwrite=True"
        )
    if check_limits:  # (preview shows these rows instead, with the same reasons)
        planned = hold_back(planned, be)
    prepared = Prepared(call, be, plan_part(planned, be, options.cache), schema)
    if check_limits:
        enforce_limits(JobPlan((prepared.part,)), prepared.backend, options, what="call",
                     fewer="Sample the frame (df.sample(n))", details="df.llama.preview(...)")
    return prepared


def submit(frame: pd.DataFrame, call: Call, backend: Backend | str | None, options: Options) -> jobs.BatchJob:
    """Submit the call's job and return its handle (a job with no parts when everything was reused)."""
    p = prepare(frame, call, backend, options)
    if len(p.plan.positions) == 0:
        raise ConfigError("nothing to submit: the frame is empty or every row was skipped "
                          "(batch_predict returns the empty result without a job)")
    return submit_prepared(frame, p, options)


def submit_prepared(frame: pd.DataFrame, p: Prepared, options: Options) -> jobs.BatchJob:
    """Submit a call :func:`prepare` checked and planned (its reuse found): only what is left to send is sent."""
    return submitting.submit(frame, p.part, p.backend, p.call, options)


def batch_predict(frame: pd.DataFrame, call: Call, backend: Backend | str | None, options: Options, *,
                  progress: bool = True, timeout: float | None = None) -> pd.DataFrame:
    """Run the call as one job, wait for it, and return the joined frame."""
    p = prepare(frame, call, backend, options)
    if len(p.plan.positions) == 0:
        return finish_result(empty_result(frame, p.plan, options.overwrite), call)
    if len(p.part.send.positions) == 0:
        return answered(frame, p, options, progress=progress)
    return submit_prepared(frame, p, options).wait(timeout, progress=progress).result()


def answered(frame: pd.DataFrame, p: Prepared, options: Options, *, progress: bool = False) -> pd.DataFrame:
    """The result of a call whose every row is answered already (cache, duplicates): no job, no job folder.

    Nothing is sent, so there is nothing to wait for, attach to or retry: a
    job folder for it would only pile up (``submit`` still makes one, as it
    returns a handle).

    Parameters
    ----------
    frame : pandas.DataFrame
        The frame ``p`` was planned from.
    p : Prepared
        A call whose part leaves nothing to send (:attr:`pdbatch.reuse.Part.send`).
    options : Options
        How it runs (``overwrite``).
    progress : bool
        Say in one line (or panel) how the rows were answered.

    Returns
    -------
    pandas.DataFrame
        The joined frame; ``attrs["pdbatch_rows"]`` says how its rows were answered.
    """
    counts = p.part.counts
    if progress:
        label = JobLabel(id="", backend=p.backend.name, model=p.plan.model, rows=counts)
        make_reporter(label, True, blocking=False).close(JobStatus(state="JOB_STATE_SUCCEEDED", total=0))
    out = assemble(frame, parse_bytes(b"".join(line + b"\n" for line in p.part.reuse.cached.values())), p.call,
                   kind=p.plan.kind, custom_ids=p.plan.custom_ids, skipped=p.plan.skipped,
                   overwrite=options.overwrite, alias=p.part.reuse.alias)
    out.attrs["pdbatch_rows"] = counts.record()
    return out


def preview(frame: pd.DataFrame, call: Call, backend: Backend | str | None, options: Options) -> Preview:
    """What the call would send and cost, without sending anything."""
    p = prepare(frame, call, backend, options, check_limits=False)
    pv = make_preview(p.part, p.backend, dict(options.prices or {}))
    pv.max_tokens_default = (pv.kind == CHAT and call.classify is None
                             and not {"max_tokens", "max_completion_tokens"} & set(call.params))
    return pv


def result_columns(call: Call, kind: Kind) -> list[str]:
    """The columns a call's result adds to the frame (which a clash check and a retry look at)."""
    if call.classify is not None:
        spec = classify.LabelSpec.from_record(call.classify)
        return list(dict.fromkeys([*output_columns(kind), *spec.columns]))
    schema = as_schema(call.schema) if call.schema is not None else None
    return list(output_columns(kind)) + (schema.columns if schema else [])


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
    an invalid request: :func:`pdbatch.failures.sure_to_fail`) is not sent
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
    merged = result.copy()
    pos = failed.nonzero()[0]
    for c in added:
        col = merged[c].copy()
        col.iloc[pos] = again[c].to_numpy()
        merged[c] = col
    merged.attrs["pdbatch_job"] = again.attrs.get("pdbatch_job", job_id)
    merged.attrs["pdbatch_retried_from"] = job_id
    return merged

