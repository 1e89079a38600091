"""Submitting a job: the frame kept, the request files written at the backend's limits and handed to it.

:func:`submit` is the last step of ``df.llama.submit`` / ``batch_predict``
(after :mod:`pdbatch.run` planned the call and found what can be reused):
it keeps the frame as the job's data, writes the request lines still to be
sent into ``<home>/staging/`` in files within the backend's limits, builds
the pass-through table when asked (:func:`passthrough_table`), calls
``backend.submit``, and saves the manifest (:mod:`pdbatch.store.jobdir`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from .. import config
from ..atomic import PRIVATE_FILE, private_dir
from ..backends import Backend
from ..backends.base import OK_STATES
from ..builders.requests import RequestPlan
from ..call import Call, Options
from ..errors import ConfigError, StorageError
from ..store import frames, jobdir, reusestate, trust
from . import claims, reuse
from .job import BatchJob
from .jobparts import JobPart

__all__ = ["passthrough_table", "submit"]


def submit(frame: pd.DataFrame, plan: reuse.JobPlan | reuse.Part, backend: Backend, call: Call,
           options: Options) -> BatchJob:
    """Send what each part of ``plan`` still has to send, save each part's folder, and return the job's handle.

    A frame's call is one part; a request file of chat and embeddings lines
    two. Each part gets a job folder (its manifest, its copy of the frame,
    its reuse state); the first part is the head, whose id the caller sees,
    and whose saved call names the other parts' ids
    (``call.requests["siblings"]``): the others are submitted first.

    Parameters
    ----------
    frame : pandas.DataFrame
        The frame the plan was built from (saved for the join).
    plan : JobPlan or Part
        The request plans and what of them is reused
        (:func:`pdbatch.jobs.prepare.make_plan`): only each part's ``send`` is sent.
    backend : Backend
        Where to run.
    call, options : Call, Options
        What the plan was built from and how to run it; kept in the manifest
        (``job.call``, ``job.options``) for the join, the cache and
        ``retry_failed``. A request file's parts each keep their own url.

    Returns
    -------
    BatchJob

    Raises
    ------
    ValueError
        A plan of several parts for a call that is not a request file's (only
        a request file's call, ``call.requests``, has where to name the siblings).

    Whatever a part's submission raises is raised; the parts submitted
    before it are cancelled and their folders removed first.
    """
    parts = plan.parts if isinstance(plan, reuse.JobPlan) else (plan,)
    if len(parts) > 1 and call.requests is None:
        raise ValueError("a job of several parts names them in call.requests['siblings']: a request file's call")
    done: list[tuple[jobdir.Manifest, Path]] = []
    try:
        for part in parts[1:] + parts[:1]:  # the other parts first: the head then names them
            mine = call
            if call.requests is not None:  # a request file's part: its own kind's url, and the parts sent before it
                siblings = [record.id for record, _ in done]
                mine = replace(call, url=part.plan.url, requests={**call.requests, "siblings": siblings})
            done.append(_submit_part(frame, part, backend, mine, options))
    except BaseException:
        # a part failed to go: the parts sent before it would run (and be paid) for a job nobody holds
        for record, folder in done:
            _undo(backend, record.parts)
            with contextlib.suppress(Exception):  # best effort, as _undo: the rows are free for any call again
                claims.release(job=record.id)
                shutil.rmtree(folder)
        raise
    return BatchJob(*done[-1], backend)


def _submit_part(frame: pd.DataFrame, part: reuse.Part, backend: Backend, call: Call,
                 options: Options) -> tuple[jobdir.Manifest, Path]:
    """Write the part's request lines still to send, submit them, save its folder: its manifest and folder."""
    # refused here, before anything is sent, if the job's copy of the frame cannot hold it exactly
    table = frames.to_table(frame)
    # rows another call is sending right now are waited for, not sent again
    reused, token = claims.hold(part.reuse, part.plan, settle)
    if reused is not part.reuse:  # some rows were answered meanwhile: the part is planned again
        part = reuse.Part.of(part.plan, reused)
    plan, send = part.plan, part.send
    name = options.display_name or f"pdbatch-{time.strftime('%Y%m%d-%H%M%S')}"
    backend_parts: list[str] = []
    try:
        with jobdir.staging() as staging:
            try:
                # The job's own files are written first, beside the request lines, and
                # moved into its folder once it exists: a disk too full for any of them
                # fails the call before anything is sent, and leaves nothing half-written.
                kept = private_dir(staging / "job")
                frames.write(table, kept / jobdir.FRAME)
                pa.default_memory_pool().release_unused()  # the compressor's buffers: not held while sending
                r = part.reuse  # the cache keys of the rows sent, by custom_id: their answers are cached by them
                keys = dict(zip(plan.ids_at(r.key_rows), r.keys.tolist(), strict=True)) if len(r.keys) else {}
                reusestate.save(kept, r.alias, r.cached, keys)  # writes nothing when nothing was reused or keyed
                if len(send.positions) == 0:
                    # every row is answered already (cache or duplicates): a job with no parts
                    parts = [time.strftime("cached-%Y%m%d-%H%M%S-") + secrets.token_hex(3)]
                else:
                    backend_parts = _send(send, backend, name, options.passthrough, options.rename_reserved, frame,
                                          staging)
                    parts = backend_parts
                record = jobdir.Manifest(
                    id=parts[0],
                    parts=backend_parts,
                    backend=backend.name,
                    backend_settings=backend.settings(),
                    model=plan.model,
                    kind=plan.kind,
                    n_rows=len(frame),
                    skipped=plan.skipped,
                    call=call.record(),
                    options=options.record(),
                    rows=part.counts.record(),
                )
                folder = jobdir.save(record, kept)
            except OSError as exc:
                if exc.errno not in FULL:
                    raise
                _undo(backend, backend_parts)
                raise _full(exc, send, table) from exc
    except BaseException:
        if token is not None:  # nothing was submitted: the rows are free for any call again
            claims.release(token=token)
        raise
    trust.seal_keys(folder, record)  # only this home's own jobs feed its cache (nothing to seal without keys)
    if token is not None:  # the claims now last as long as the job
        claims.bind(token, record.id)
    if not backend_parts:  # no backend to ask: its state (succeeded) is known now, and kept for `pdbatch jobs`
        JobPart(record, folder, backend).refresh()
    return record, folder


#: The errors of a write that did not fit: disk full, quota used up, a file past the size limit (``ulimit -f``).
FULL = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
        errno.EFBIG: "a file would pass the file-size limit (ulimit -f)"}


def _full(exc: OSError, plan: RequestPlan, table: Any) -> StorageError:
    """The error of a job whose files did not fit, with about how many bytes they need."""
    assert exc.errno is not None
    needed = int(table.nbytes) + (sum(len(chunk) for chunk, _ in plan.iter_jsonl()) if len(plan.positions) else 0)
    home = config.home()
    return StorageError(
        f"cannot write the job's files under {home}: {FULL[exc.errno]}. They need about {needed / 1e6:,.1f} MB "
        f"({needed:,} bytes); free that much there, or set PDBATCH_HOME to a folder on a disk with room. "
        f"Nothing was submitted.", errno=exc.errno, path=home, needed=needed)


def _undo(backend: Backend, parts: list[str]) -> None:
    """Cancel and remove the parts of a job submitted before its own files failed to fit (best effort)."""
    for part in parts:
        with contextlib.suppress(Exception):  # each step may fail on the same full disk: do what can be done
            backend.cancel(part)
        with contextlib.suppress(Exception):
            shutil.rmtree(jobdir.folder_for(part))


def settle(job_id: str) -> bool:
    """Whether the job ``job_id``, whose rows a call waits for, has ended; its answers are then in the cache.

    The job is polled as ``wait()`` polls (a local job whose worker died is
    resumed), and once it succeeded its result is read, which puts its
    answers into the cache, whoever submitted it. A job that cannot be
    found or polled has ended too: it answers nothing.
    """
    from .job import attach

    try:
        job = attach(job_id)
        status = job.poll_once()
        if not status.done and status.state != "JOB_STATE_PAUSED":
            return False
        if status.state in OK_STATES:
            job.result()
    except Exception:  # whatever went wrong, waiting for this job would never end
        pass
    return True


def _send(plan: RequestPlan, backend: Backend, name: str, passthrough: bool, rename_reserved: bool,
          frame: pd.DataFrame, staging: Path) -> list[str]:
    """Write the plan's request files into ``staging`` at the backend's limits and submit them."""
    extra: dict[str, Any] = {}
    if passthrough:  # checked before anything is uploaded
        extra["extra_columns"] = passthrough_table(frame, plan, backend, rename_reserved)
    files = plan.write_jsonl_parts(
        staging, max_requests=backend.max_requests_per_file, max_bytes=backend.max_bytes_per_file
    )
    for path, _ in files:  # a backend may move them into a job folder: private there too
        os.chmod(path, PRIVATE_FILE)
    n = sum(rows for _, rows in files)
    return backend.submit([p for p, _ in files], model=plan.model, kind=plan.kind, n_requests=n,
                          display_name=name, **extra)


def passthrough_table(
    frame: pd.DataFrame, plan: RequestPlan, backend: Backend, rename: bool
) -> Any:
    """The frame's columns for the rows sent, as a pyarrow Table in request-line order.

    Raises :class:`ConfigError` when the backend cannot pass columns through,
    or when a column has a reserved name and ``rename`` is False.
    """
    import pyarrow as pa

    if not backend.accepts_passthrough:
        raise ConfigError(f"the {backend.name!r} backend cannot pass columns through; "
                          f"drop passthrough=True (the result frame keeps your columns anyway)")
    reserved = backend.reserved_columns  # the backend knows what its service reads and writes
    names = [str(c) for c in frame.columns]
    clash = [c for c in names if c.lower() in reserved]
    if clash and not rename:
        raise ConfigError(
            f"passthrough=True: column(s) {clash} use names the batch service reserves "
            f"({', '.join(reserved)}); rename them, or pass rename_reserved=True "
            f"to send them as {['input_' + c for c in clash]}"
        )
    taken = set(names)
    rows = frame.iloc[plan.positions]
    arrays, out_names = [], []
    for col, name in zip(frame.columns, names, strict=True):
        if name in clash:
            new = f"input_{name}"
            while new in taken:
                new = f"input_{new}"
            taken.add(new)
            name = new
        try:
            arrays.append(pa.Array.from_pandas(rows[col]))
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise ConfigError(f"passthrough=True: column {name!r} cannot be converted for the "
                              f"backend ({exc}); convert it (e.g. .astype(str)) or drop it") from exc
        out_names.append(name)
    return pa.Table.from_arrays(arrays, names=out_names)
