"""A call made ready to run: checked, planned into request lines, its reuse found (:class:`Prepared`).

What ``submit``, ``batch_predict``, ``preview`` and side-by-side runs share
before anything is sent; and the two ends that need no job: submitting a
prepared call, and the result of one answered wholly from the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..backends import Backend, get_backend
from ..backends.base import JobStatus
from ..builders.bodies import as_dicts
from ..builders.requests import RequestPlan, build_requests, custom_ids
from ..call import KEYWORDS, Call, Options
from ..display.choose import make_reporter
from ..display.reporter import JobLabel
from ..errors import ConfigError, InputError
from ..lines.params import body_params
from ..lines.structured import Schema, apply_schema, as_schema
from ..models import Kind, kind_of_url
from ..results import classify
from ..results.join import output_columns
from ..results.parse import parse_bytes
from ..results.readside import assemble
from . import job as jobs
from . import submit as submitting
from .fit import hold_back
from .jobparts import merge_parts, total_counts
from .preview import enforce_limits
from .reuse import JobPlan, Part, Reuse, plan_part
from .rowmodel import refuse_rows

__all__ = ["Prepared", "answered", "answered_plan", "check_single", "make_plan", "plan", "prepare", "result_columns",
           "submit_prepared"]


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
        the backend (see :mod:`pdbatch.lines.params`), or a schema that does not fit the call.
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

    Rows whose own messages the model cannot take are marked failed and not
    sent (:func:`pdbatch.jobs.rowmodel.refuse_rows`; a preview counts them as
    skipped). With ``check_limits`` (a call about to run), so are rows that
    cannot fit the context window (:func:`pdbatch.jobs.fit.hold_back`).

    Raises
    ------
    InputError, ConfigError
        Bad input, result columns that would be overwritten, a call past
        ``max_rows`` / ``max_cost``, or one whose every row is over the context
        window or has messages the model cannot take.
    """
    be = get_backend(backend)
    planned, schema = plan(frame, call, be)
    planned = refuse_rows(planned, be, run=check_limits)
    new_columns = result_columns(call, planned.kind)
    clash = [c for c in new_columns if c in frame.columns]
    if clash and not options.overwrite:
        raise ConfigError(
            f"the frame already has column(s) {clash}, which the result would overwrite; rename them "
            f"(df.rename(columns=...)) or pass overwrite=True"
        )
    (part,) = make_plan([planned], be, options, check_limits=check_limits, what="call",
                        fewer="Sample the frame (df.sample(n))", details="df.llama.preview(...)").parts
    return Prepared(call, be, part, schema)


def make_plan(plans: Sequence[RequestPlan], backend: Backend, options: Options, *, check_limits: bool = True,
              reuse: Callable[[RequestPlan], Reuse] | None = None, what: str = "call", fewer: str = "",
              details: str = "") -> JobPlan:
    """The :class:`JobPlan` of a call's request plans (one per part): reuse found, the limits checked.

    The one way from request plans to a job's plan, for a frame and a request file alike.

    Parameters
    ----------
    plans : sequence of RequestPlan
        One per kind and model, each over the whole frame.
    backend : Backend
    options : Options
        ``cache``, ``max_rows`` and ``max_cost`` are read.
    check_limits : bool
        For a call about to run: rows that cannot fit the context window are
        marked failed and not sent (:func:`pdbatch.jobs.fit.hold_back`; a
        preview shows them instead), and ``max_rows`` / ``max_cost`` are
        enforced over every part together.
    reuse : callable, optional
        A part's :class:`Reuse` from its plan (a request file decides per line
        what may be reused); :func:`pdbatch.jobs.reuse.plan_part` with ``options.cache`` by default.
    what, fewer, details
        The words of a limit's error (:func:`pdbatch.jobs.preview.enforce_limits`).

    Raises
    ------
    ConfigError
        A call past ``max_rows`` / ``max_cost``, or one whose every row is over the context window.
    """
    if check_limits:
        plans = [hold_back(p, backend) for p in plans]
    job_plan = JobPlan(tuple(plan_part(p, backend, options.cache) if reuse is None else Part.of(p, reuse(p))
                             for p in plans))
    if check_limits:
        enforce_limits(job_plan, backend, options, what=what, fewer=fewer, details=details)
    return job_plan


def submit_prepared(frame: pd.DataFrame, p: Prepared, options: Options) -> jobs.BatchJob:
    """Submit a call :func:`prepare` checked and planned (its reuse found): only what is left to send is sent."""
    return submitting.submit(frame, p.part, p.backend, p.call, options)


def answered(frame: pd.DataFrame, p: Prepared, options: Options, *, progress: bool = False) -> pd.DataFrame:
    """The result of a call whose every row is answered already (cache, duplicates): no job, no job folder.

    Nothing is sent, so there is nothing to wait for, attach to or retry: a
    job folder for it would only pile up (``submit`` still makes one, as it
    returns a handle). :func:`answered_plan` for a plan of several parts.

    Parameters
    ----------
    frame : pandas.DataFrame
        The frame ``p`` was planned from.
    p : Prepared
        A call whose part leaves nothing to send (:attr:`pdbatch.jobs.reuse.Part.send`).
    options : Options
        How it runs (``overwrite``).
    progress : bool
        Say in one line (or panel) how the rows were answered.

    Returns
    -------
    pandas.DataFrame
        The joined frame; ``attrs["pdbatch_rows"]`` says how its rows were answered.
    """
    return answered_plan(frame, JobPlan((p.part,)), p.call, p.backend, options, progress=progress)


def answered_plan(frame: pd.DataFrame, plan: JobPlan, call: Call, backend: Backend, options: Options, *,
                  progress: bool = False) -> pd.DataFrame:
    """:func:`answered` for a plan of one or more parts (a request file's kinds), merged as a job's parts are.

    Parameters
    ----------
    frame : pandas.DataFrame
        The frame the plan was built from.
    plan : JobPlan
        Parts that leave nothing to send; the first is the head.
    call : Call
        What the plan was built from (a request file's bodies come back as dicts).
    backend : Backend
    options : Options
        How it runs (``overwrite``).
    progress : bool
        Say in one line (or panel) how the rows were answered.

    Returns
    -------
    pandas.DataFrame
        The joined frame; ``attrs["pdbatch_rows"]`` says how its rows were answered.
    """
    head = plan.parts[0]
    counts = total_counts([part.counts for part in plan.parts])
    assert counts is not None  # every planned part has its counts
    if progress:
        label = JobLabel(id="", backend=backend.name, model=head.plan.model, rows=counts)
        make_reporter(label, True, blocking=False).close(JobStatus(state="JOB_STATE_SUCCEEDED", total=0))
    parts = [*plan.parts[1:], head]  # in the order a job holds them: the head last
    # a frame's ids are its plan's; a request file's, its custom_id column (as its job reads them back)
    ids = custom_ids(frame, call.custom_id) if call.requests is not None else head.plan.custom_ids
    results = [assemble(frame, parse_bytes(b"".join(line + b"\n" for line in part.reuse.cached.values())), call,
                        kind=part.plan.kind, custom_ids=ids, skipped=part.plan.skipped,
                        overwrite=options.overwrite, alias=part.reuse.alias) for part in parts]
    out = merge_parts([(part.plan.kind, part.plan.skipped) for part in parts], results)
    if call.requests is not None:
        out = as_dicts(out)  # the user reads a request file's bodies as dicts
    out.attrs["pdbatch_rows"] = counts.record()
    return out


def result_columns(call: Call, kind: Kind) -> list[str]:
    """The columns a call's result adds to the frame (which a clash check and a retry look at)."""
    if call.classify is not None:
        spec = classify.LabelSpec.from_record(call.classify)
        return list(dict.fromkeys([*output_columns(kind), *spec.columns]))
    schema = as_schema(call.schema) if call.schema is not None else None
    return list(output_columns(kind)) + (schema.columns if schema else [])
