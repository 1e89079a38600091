"""The plain functions behind ``df.llama``: plan -> reuse -> check -> submit -> wait -> join.

The accessor only gathers arguments into a :class:`Call` (what to send for
each row) and :class:`Options` (how to run it) and calls these; they are
usable, and tested, without it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from . import classify
from . import job as jobs
from . import submit as submitting
from .backends import Backend, get_backend
from .backends.base import OK_STATES
from .call import KEYWORDS, Call, Options
from .errors import ConfigError, JobError, JobTimeoutError, PdbatchError
from .join import join_results, output_columns
from .models import CHAT, Kind, kind_of_url
from .params import body_params
from .preview import Preview, enforce_limits, make_preview
from .requests import RequestPlan, build_requests
from .results import parse_lines
from .reuse import Reuse, plan_reuse
from .runfile import RequestsJob
from .structured import Schema, as_schema

__all__ = ["batch_predict", "compare", "plan", "preview", "retry_failed", "submit"]


@dataclass
class Prepared:
    """A call checked and planned against one backend."""

    call: Call
    backend: Backend
    plan: RequestPlan
    schema: Schema | None
    reused: Reuse


def plan(frame: pd.DataFrame, call: Call, backend: Backend) -> tuple[RequestPlan, Schema | None]:
    """The call's request lines for ``frame`` (``schema=`` becomes ``response_format``).

    Raises
    ------
    InputError, ConfigError
        Bad input, body parameters that are unknown, wrong or not supported by
        the backend (see :mod:`pdbatch.params`), or a schema that does not fit the call.
    """
    if call.classify is not None:
        return classify.plan_requests(frame, call, backend), None
    kind = kind_of_url(call.url)
    params = body_params(call.params, kind, backend, keywords=KEYWORDS)
    schema = as_schema(call.schema) if call.schema is not None else None
    if schema is not None:
        if kind != CHAT:
            raise ConfigError("schema= applies to chat completions, not embeddings")
        if "response_format" in params:
            raise ConfigError("pass schema= or response_format=, not both (schema= sets response_format)")
        params["response_format"] = schema.response_format
    built = build_requests(frame, call.prompt, messages=call.messages, system=call.system,
                           model=backend.model_name(call.model, kind), url=call.url, custom_id=call.custom_id,
                           on_null=call.on_null, params=params)
    return built, schema


def prepare(frame: pd.DataFrame, call: Call, backend: Backend | str | None, options: Options,
            *, check_limits: bool = True) -> Prepared:
    """Validate ``call`` on ``frame`` for a job, plan its request lines and find what can be reused.

    Raises
    ------
    InputError, ConfigError
        Bad input, result columns that would be overwritten, or a call past
        ``max_rows`` / ``max_cost``.
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
    prepared = Prepared(call, be, planned, schema, plan_reuse(planned, be, options.cache))
    if check_limits:
        enforce_limits([(prepared.plan, prepared.reused)], prepared.backend, options, what="call",
                     fewer="Sample the frame (df.sample(n))", details="df.llama.preview(...)")
    return prepared


def submit(frame: pd.DataFrame, call: Call, backend: Backend | str | None, options: Options) -> jobs.BatchJob:
    """Submit the call's job and return its handle (a job with no parts when everything was reused)."""
    p = prepare(frame, call, backend, options)
    if len(p.plan.positions) == 0:
        raise ConfigError("nothing to submit: the frame is empty or every row was skipped "
                          "(batch_predict returns the empty result without a job)")
    return _submit(frame, p, options)


def _submit(frame: pd.DataFrame, p: Prepared, options: Options) -> jobs.BatchJob:
    return submitting.submit(frame, p.plan, p.backend, p.call, options, p.reused)


def batch_predict(frame: pd.DataFrame, call: Call, backend: Backend | str | None, options: Options, *,
                  progress: bool = True, timeout: float | None = None) -> pd.DataFrame:
    """Run the call as one job, wait for it, and return the joined frame."""
    p = prepare(frame, call, backend, options)
    if len(p.plan.positions) == 0:
        return jobs.finish_result(jobs.empty_result(frame, p.plan, options.overwrite), call)
    return _submit(frame, p, options).wait(timeout, progress=progress).result()


def preview(frame: pd.DataFrame, call: Call, backend: Backend | str | None, options: Options) -> Preview:
    """What the call would send and cost, without sending anything."""
    p = prepare(frame, call, backend, options, check_limits=False)
    pv = make_preview(p.plan, p.reused, p.backend, dict(options.prices or {}))
    pv.max_tokens_default = (pv.kind == CHAT and call.classify is None
                             and not {"max_tokens", "max_completion_tokens"} & set(call.params))
    return pv


def compare(frame: pd.DataFrame, call: Call, models: Sequence[Any], backend: Backend | str | None,
            options: Options, *, progress: bool = True, timeout: float | None = None) -> pd.DataFrame:
    """Run the same call on several models at once; one ``response:<label>`` column per model.

    Each entry of ``models`` is a model name (run on ``backend``) or a
    ``(backend, model)`` pair, so local and Vertex models can sit side by side.
    A model whose job cannot be submitted or fails as a whole (weights that
    do not load, a retired model) does not take the others down: its rows
    get the reason in ``error:<label>`` (with a warning), and the answers of
    the other models are kept. Mistakes in the call itself (a bad parameter,
    an unknown model) still refuse the whole call before anything runs.
    """
    kind = kind_of_url(call.url)
    runs: list[tuple[Backend, Call, str, bool]] = []
    for m in models:
        be, name = (m if isinstance(m, tuple) else (backend, m))
        be = get_backend(be)
        runs.append((be, replace(call, model=name), be.model_name(name, kind), isinstance(m, tuple)))
    labels = _labels([(be.name, model, pair) for be, _, model, pair in runs])
    if len(set(labels)) != len(labels):
        raise ConfigError(f"model= names the same model twice: {labels}")
    # all jobs are submitted first, so they run at the same time
    prepared = [prepare(frame, c, be, options) for be, c, _, _ in runs]
    submitted: list[jobs.BatchJob | str | None] = []
    for p in prepared:
        try:
            submitted.append(_submit(frame, p, options) if len(p.plan.positions) else None)
        except PdbatchError as exc:
            submitted.append(f"not submitted: {exc}")

    def finish(i: int) -> pd.DataFrame:
        job, p = submitted[i], prepared[i]
        if job is None:
            out = jobs.empty_result(frame, p.plan, options.overwrite)
        elif isinstance(job, str):
            out = join_results(frame, parse_lines([]), kind=p.plan.kind, custom_ids=p.plan.custom_ids,
                               skipped=p.plan.skipped, overwrite=options.overwrite, missing_error=job)
        else:
            job.wait(timeout, progress=progress and i == 0)
            try:
                return job.result()
            except JobTimeoutError:
                raise
            except JobError:
                out = job.result(partial=True)  # the rows it answered, the others with why not
        return p.schema.add_columns(out) if p.schema else out

    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        results = list(pool.map(finish, range(len(runs))))
    out = frame.copy()
    added = [c for c in results[0].columns if c not in frame.columns or options.overwrite]
    for label, res, job in zip(labels, results, submitted, strict=True):
        if isinstance(job, str) or (isinstance(job, jobs.BatchJob) and job.status.state not in OK_STATES):
            reason = job if isinstance(job, str) else f"job {job.id} ended {job.status.state}: {job.status.error}"
            warnings.warn(f"model {label!r} failed as a whole ({reason}); its rows carry the error in "
                          f"'error:{label}', the other models' answers are kept", UserWarning, stacklevel=3)
        for c in added:
            out[f"{c}:{label}"] = res[c].to_numpy() if res[c].dtype == object else res[c].array
    return out


def _labels(runs: list[tuple[str, str, bool]]) -> list[str]:
    """Column labels for side by side runs: the model name, a GGUF file's stem, ``backend:model`` for pairs.

    A stem shared by two different files falls back to their full paths.
    """
    def label(backend: str, model: str, pair: bool, short: bool) -> str:
        name = Path(model).stem if short and model.endswith(".gguf") else model
        return f"{backend}:{name}" if pair else name

    shorts = [label(*r, short=True) for r in runs]
    fulls = [label(*r, short=False) for r in runs]
    return [s if shorts.count(s) == 1 or fulls.count(f) > 1 else f for s, f in zip(shorts, fulls, strict=True)]


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

    Returns
    -------
    pandas.DataFrame
        ``result`` with the retried rows replaced; rows that succeeded are kept as they were.
    """
    job_id = job_id or result.attrs.get("pdbatch_job")
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
