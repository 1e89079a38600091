"""Side by side: the same call on several models, one ``response:<label>`` column (``error:<label>``, ...) each.

``model=`` is a name, a ``(backend, model)`` pair, a list of those, or a
dict ``{label: name or pair}`` naming the columns; :func:`parse_models`
refuses anything else before anything runs. Jobs of backends that take the
whole machine (:attr:`~pdbatch.backends.Backend.exclusive_machine`, the
local engine) are queued one after another; the others are submitted at once.
"""

from __future__ import annotations

import itertools
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..backends import Backend, get_backend, registered
from ..backends.base import OK_STATES
from ..call import Call, Options
from ..errors import ConfigError, JobError, JobTimeoutError, PdbatchError
from ..models import kind_of_url
from ..results.join import join_results
from ..results.parse import parse_lines
from ..results.readside import empty_result
from . import job as jobs
from . import prepare as prep

__all__ = ["Entry", "compare", "parse_models"]

SHAPES = ("a model name, a (backend, model) pair, a list of those, or a dict {label: name or pair} "
          "(side by side, one column per label)")


@dataclass(frozen=True)
class Entry:
    """One model of a side-by-side call: its label (None: derived from the model), backend and name."""

    label: str | None
    backend: Backend | str | None
    model: str
    pair: bool


def _is_pair(value: Any) -> bool:
    return (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str)
            and (isinstance(value[0], Backend) or (isinstance(value[0], str) and value[0] in registered())))


def _entry(value: Any, label: str | None, backend: Backend | str | None, where: str) -> Entry:
    if isinstance(value, str):
        return Entry(label, backend, value, False)
    if _is_pair(value):
        return Entry(label, value[0], value[1], True)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        raise ConfigError(f"model={where}{value!r}: {value[0]!r} is not a backend (registered: {registered()}); "
                          f"a pair is (backend, model)")
    raise ConfigError(f"model={where}{value!r} is not {SHAPES}")


def parse_models(model: Any, backend: Backend | str | None) -> tuple[Backend | str | None, str | None] | list[Entry]:
    """What ``model=`` asks for: one ``(backend, name)``, or a list of :class:`Entry` (side by side).

    Parameters
    ----------
    model : any
        What the user passed as ``model=``.
    backend : Backend, str or None
        ``backend=``: where a bare model name runs.

    Returns
    -------
    tuple or list of Entry
        ``(backend, name)`` for one model (``name`` None: the backend's
        default), a list of entries for side by side.

    Raises
    ------
    ConfigError
        Anything that is not a name, a pair, a list of those or a dict of
        those (a dict used to run as if no model were given), an empty list or
        dict, or a label that is not a non-empty string.
    """
    if model is None:
        return backend, None
    if isinstance(model, str):
        return backend, model
    if _is_pair(model):
        return model[0], model[1]
    if isinstance(model, Mapping):
        if not model:
            raise ConfigError("model={}: name at least one model, e.g. model={'small': 'smollm2-135m-instruct'}")
        bad = [k for k in model if not isinstance(k, str) or not k.strip()]
        if bad:
            raise ConfigError(f"model=: the labels of a dict name the columns (response:<label>), so they must be "
                              f"non-empty strings, not {bad[0]!r}")
        return [_entry(v, k, backend, f"{{{k!r}: ...}}: ") for k, v in model.items()]
    if isinstance(model, (list, tuple)):
        if not model:
            raise ConfigError(f"model=[]: name at least one model; model= is {SHAPES}")
        return [_entry(v, None, backend, "[...] entry ") for v in model]
    raise ConfigError(f"model={model!r} ({type(model).__name__}) is not {SHAPES}")


def compare(frame: pd.DataFrame, call: Call, models: Sequence[Entry], options: Options, *,
            progress: bool = True, timeout: float | None = None) -> pd.DataFrame:
    """Run the same call on several models; one ``response:<label>`` column per model.

    A model whose job cannot be submitted or fails as a whole (weights that
    do not load, a retired model) does not take the others down: its rows
    get the reason in ``error:<label>`` (with a warning), and the answers of
    the other models are kept. Mistakes in the call itself (a bad parameter,
    an unknown model) still refuse the whole call before anything runs.
    Jobs of backends that take the whole machine run one after another
    (said on stderr when ``progress``); the others run at the same time.

    Parameters
    ----------
    frame : pandas.DataFrame
        The user's frame.
    call : Call
        What to send for each row (its ``model`` is replaced by each entry's).
    models : list of Entry
        From :func:`parse_models`.
    options : Options
        How each job runs.
    progress : bool
        Show the first model's progress (and the queue's).
    timeout : float, optional
        Seconds to wait for each job.

    Returns
    -------
    pandas.DataFrame
        The frame with ``<column>:<label>`` result columns for each model.
    """
    kind = kind_of_url(call.url)
    runs: list[tuple[Backend, Call, str, Entry]] = []
    for e in models:
        be = get_backend(e.backend)
        runs.append((be, replace(call, model=e.model), be.model_name(e.model, kind), e))
    derived = _labels([(be.name, model, e.pair) for be, _, model, e in runs])
    labels = [e.label if e.label is not None else d for (_, _, _, e), d in zip(runs, derived, strict=True)]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"model= names the same model twice: {labels}; name them apart with a dict, "
                          f"e.g. model={{'a': ..., 'b': ...}}")
    prepared = [prep.prepare(frame, c, be, options) for be, c, _, _ in runs]  # every refusal before any job
    queue = [i for i, (be, _, _, _) in enumerate(runs) if be.exclusive_machine]
    if len(queue) > 1 and progress:
        print(f"pdbatch: {', '.join(repr(labels[i]) for i in queue)} run on this machine, one after another: "
              + "; ".join(f"{labels[i]!r} is queued behind {labels[j]!r}" for j, i in itertools.pairwise(queue)),
              file=sys.stderr, flush=True)
    submitted: list[jobs.BatchJob | str | None] = [None] * len(runs)

    def sends(i: int) -> bool:
        p = prepared[i]
        return len(p.part.send.positions) > 0

    def start(i: int) -> None:
        p = prepared[i]
        if not sends(i):
            return  # nothing to send: answered below without a job
        try:
            submitted[i] = prep.submit_prepared(frame, p, options)
        except PdbatchError as exc:
            submitted[i] = f"not submitted: {exc}"

    for i in range(len(runs)):
        if i not in queue[1:]:
            start(i)  # at once; a queued one starts when the one before it ended

    def finish(i: int, shown: bool) -> pd.DataFrame:
        job, p = submitted[i], prepared[i]
        if job is None:
            return prep.answered(frame, p, options) if len(p.plan.positions) else _empty(frame, p, options)
        if isinstance(job, str):
            out = join_results(frame, parse_lines([]), kind=p.plan.kind, custom_ids=p.plan.custom_ids,
                               skipped=p.plan.skipped, overwrite=options.overwrite, missing_error=job)
        else:
            job.wait(timeout, progress=shown)
            try:
                return job.result()
            except JobTimeoutError:
                raise
            except JobError:
                out = job.result(partial=True)  # the rows it answered, the others with why not
        return p.schema.add_columns(out) if p.schema else out

    stop = threading.Event()

    def finish_queue() -> list[pd.DataFrame]:
        out = []
        for n, i in enumerate(queue):
            if n:
                if stop.is_set():  # interrupted: the jobs queued behind are not started
                    break
                start(i)  # the one before it ended (or failed): this machine is free again
            out.append(finish(i, progress and queue[0] == 0))
        return out

    pool = ThreadPoolExecutor(max_workers=len(runs))
    try:
        queued = pool.submit(finish_queue)
        others = {i: pool.submit(finish, i, progress and i == 0) for i in range(len(runs)) if i not in queue}
        by_run = dict(zip(queue, queued.result(), strict=True))
        by_run.update({i: f.result() for i, f in others.items()})
    except BaseException as exc:
        # Ctrl-C reaches this thread, not the ones waiting: say here what goes on and what never started
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        if isinstance(exc, KeyboardInterrupt):
            _interrupted(labels, submitted, [i for i in queue if submitted[i] is None and sends(i)])
            exc.pdbatch_advised = True  # type: ignore[attr-defined]
        raise
    pool.shutdown()
    results = [by_run[i] for i in range(len(runs))]
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


def _interrupted(labels: list[str], submitted: list[Any], waiting: list[int]) -> None:
    for label, job in zip(labels, submitted, strict=True):
        if isinstance(job, jobs.BatchJob) and (job.last_status is None or not job.last_status.done):
            print(f"{label}: {jobs.INTERRUPT_ADVICE.get()(job.id)}", file=sys.stderr, flush=True)
    if waiting:
        print(f"pdbatch: interrupted; {', '.join(repr(labels[i]) for i in waiting)} never started (queued "
              f"behind a job on this machine): nothing was sent for them", file=sys.stderr, flush=True)


def _empty(frame: pd.DataFrame, p: prep.Prepared, options: Options) -> pd.DataFrame:
    out = empty_result(frame, p.plan, options.overwrite)
    return p.schema.add_columns(out) if p.schema else out


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
