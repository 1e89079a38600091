"""``BatchJob``: a handle on a submitted job that outlives the call, and the kernel.

A job is submitted by :func:`pdbatch.jobs.submit.submit` (what ``df.llama.submit``
calls) and re-found with :func:`attach` in any later Python process. Its manifest (see
:mod:`pdbatch.manifest`) holds everything :meth:`BatchJob.result` needs to
join the answers back to the frame.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ..backends import Backend, backend_class, get_backend
from ..backends.base import ACTIVE_STATES, OK_STATES, JobStatus
from ..builders.requests import custom_ids
from ..call import Call, Options
from ..display import uievents
from ..display.choose import live_display_available, make_reporter
from ..display.reporter import JobLabel, RowCounts
from ..errors import ConfigError, JobError, JobFolderError, JobTimeoutError
from ..models import Kind
from ..results.parse import parse_bytes, parse_files
from ..results.readside import assemble
from ..store import jobdir, reusestate
from . import claims, jobview, reuse
from .jobstatus import INTERRUPT_ADVICE, cancelled_error, combine, paused_error
from .watch import Poller, follow, watch

__all__ = ["BatchJob", "attach", "combine"]

#: Handle classes by the key a job's saved call sets (a request file's, :mod:`pdbatch.jobs.runfile`): see attach.
JOB_TYPES: dict[str, type[BatchJob]] = {}


class BatchJob:
    """A submitted batch job.

    Create one with ``df.llama.submit(...)`` or :func:`attach`; do not
    construct it directly.

    Attributes
    ----------
    id : str
        The job id (a Vertex resource name for Vertex jobs).
    ids : list of str
        Every backend job behind this one (several when the work was split).
    backend : Backend
        Where the job runs.
    model : str
        The model as written in the request bodies.
    kind : {"chat", "embeddings"}
    call : Call
        What was sent for each row (prompt, params, custom_id column, schema).
    options : Options
        How it was run (cache, overwrite, passthrough, max_cost, display_name, ...).
    poller : Poller or None
        In Jupyter, the thread keeping the status widget updated after
        ``submit`` or :meth:`display` returned (None when there is none).
    """

    def __init__(self, record: jobdir.Manifest, folder: Path, backend: Backend, *, allow_pickle: bool = False) -> None:
        self._record = record
        self._folder = folder
        self.backend = backend
        self._status: JobStatus | None = None
        self._seen: str | None = None  # the state last written to last-status.json by this handle
        self.poller: Poller | None = None
        self._allow_pickle = allow_pickle

    # ------------------------------------------------------------ properties
    @property
    def id(self) -> str:
        return self._record.id

    @property
    def ids(self) -> list[str]:
        return list(self._record.parts)

    @property
    def model(self) -> str:
        return self._record.model

    @property
    def kind(self) -> Kind:
        return self._record.kind

    @property
    def call(self) -> Call:
        """What the job sends for each row, as submitted (``schema`` as a JSON schema)."""
        return Call.from_record(self._record.call)

    @property
    def options(self) -> Options:
        """How the job was run, as submitted; ``retry_failed`` reruns with them."""
        return Options.from_record(self._record.options)

    @property
    def label(self) -> JobLabel:
        """What a status display shows besides the status: id, backend name, model."""
        return JobLabel(id=self.id, backend=self.backend.name, model=self.model, rows=self.rows)

    @property
    def rows(self) -> RowCounts | None:
        """What became of the frame's rows: sent, merged as duplicates, answered from the cache, skipped.

        None for a job saved by an older pdbatch.
        """
        return RowCounts.from_record(self._record.rows) if self._record.rows else None

    @property
    def n_rows(self) -> int:
        """Rows in the submitted frame (sent or skipped)."""
        return self._record.n_rows

    @property
    def state(self) -> str:
        """The job's state now (asks the backend): ``"JOB_STATE_RUNNING"``, ...."""
        return self.refresh().state

    @property
    def skipped(self) -> dict[int, str]:
        """The frame positions this job did not send, and why (skipped, reused, cached, another kind's line)."""
        return dict(self._record.skipped)

    @property
    def last_status(self) -> JobStatus | None:
        """The status last seen by this handle, without asking the backend (None before the first check)."""
        return self._status

    @property
    def status(self) -> JobStatus:
        """The last status seen (refreshed if never fetched)."""
        return self._status or self.refresh()

    @property
    def progress(self) -> dict[str, Any]:
        """Counts from the last refresh: ``total``, ``succeeded``, ``failed``, ``state``."""
        st = self.status
        return {"state": st.state, "total": st.total, "succeeded": st.succeeded, "failed": st.failed}

    @property
    def done(self) -> bool:
        """True once the job reached a terminal state (as of the last refresh)."""
        return self.status.done

    # ------------------------------------------------------------- control
    def refresh(self) -> JobStatus:
        """Ask the backend for the job's status now.

        Returns
        -------
        JobStatus
        """
        statuses = [self.backend.status(p) for p in self._record.parts]
        self._status = status = combine(statuses)
        if status.state != self._seen:  # kept for `pdbatch jobs`, which shows it without asking the backend
            jobdir.write_seen(self._folder, status.state, status.total, status.succeeded, status.failed, status.error)
            self._seen = status.state
        return status

    def wait(self, timeout: float | None = None, *, progress: bool = True, poll: float | None = None) -> BatchJob:
        """Block until the job ends, showing its progress.

        A local job whose worker died (killed, machine restarted) is resumed:
        the new worker skips the rows already answered.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most; then :class:`~pdbatch.errors.JobTimeoutError`
            is raised and the job goes on.
        progress : bool
            Show a progress bar (or the widget in Jupyter).
        poll : float, optional
            Seconds between status checks (backend default otherwise).

        Returns
        -------
        BatchJob
            ``self``, so that ``job.wait().result()`` reads well.

        Notes
        -----
        The loop is :func:`pdbatch.jobs.watch.watch`, the same one that keeps the
        widget updated from a thread: a failed status check is retried (up to
        :data:`~pdbatch.jobs.watch.MAX_POLL_ERRORS` in a row), a stalled job is
        resumed. Between two polls its ``between`` hook processes the Jupyter
        widget's events (:mod:`pdbatch.display.uievents`), so that the panel's Cancel
        button works while the cell is blocked; the call then raises
        :class:`~pdbatch.errors.JobError` once the job is cancelled.
        Interrupting the kernel leaves the job running, and says how to reach it.
        """
        interval = self._interval(poll)
        deadline = None if timeout is None else time.monotonic() + timeout
        clicks: list[float] = []

        def cancel() -> None:  # the panel's button, reached between polls
            clicks.append(time.monotonic())
            self.cancel()

        with uievents.ui_events() as process:
            # where clicks reach the loop the panel's Cancel works as it is; elsewhere it says to interrupt first
            reporter = make_reporter(self.label, progress, cancel=cancel, blocking=process is None)
            status = self._watch(reporter, process, clicks, interval, deadline)
        if status.done:
            if clicks and status.state == "JOB_STATE_CANCELLED":
                raise cancelled_error(self.id, status)
            return self
        if status.state == "JOB_STATE_PAUSED":
            raise paused_error(self.id, status)
        raise JobTimeoutError(
            f"job {self.id} is still {status.state} after {timeout} s; it goes on running. "
            f"Call job.wait() again, or pdbatch.attach({self.id!r}) later.",
            job_id=self.id,
            state=status.state,
        )

    def _watch(self, reporter: Any, process: Any, clicks: list[float], interval: float,
               deadline: float | None) -> JobStatus:
        status: JobStatus | None = None

        def fetch() -> JobStatus:
            nonlocal status
            status = self.poll_once()
            return status

        def between(seconds: float) -> None:  # widget clicks processed while waiting; a click polls at once
            seen = len(clicks)
            uievents.pause(seconds, process, until=lambda: len(clicks) > seen)

        try:
            watch(fetch, reporter, interval, deadline=deadline, paused_ends=True, closed_ends=False, between=between)
        except KeyboardInterrupt as exc:
            if status is None or not status.done:  # None: interrupted in the first status check
                print(INTERRUPT_ADVICE.get()(self.id), file=sys.stderr, flush=True)
                exc.pdbatch_advised = True  # type: ignore[attr-defined]  # the caller need not say it again
            raise
        finally:
            if reporter.live and status is not None and not status.done:
                # Interrupted or timed out: the job goes on, so its panel goes on
                # updating from a thread, and its Cancel button now reaches the kernel.
                self.poller = follow(reporter, self.poll_once, interval, name=f"pdbatch-poll-{self.id}")
            else:
                reporter.close(status)
        assert status is not None  # watch returns only after a snapshot, or raises
        return status

    def _interval(self, poll: float | None = None) -> float:
        return poll if poll is not None else self.backend.poll_seconds

    def poll_once(self) -> JobStatus:
        """One status check; a local job whose worker died is restarted on the way."""
        status = self.refresh()
        if status.stalled:
            self.resume()
            status = self.refresh()
        return status

    def cancel(self) -> None:
        """Ask the job to stop. Rows already answered stay: ``result(partial=True)`` returns them."""
        for part in self._record.parts:
            self.backend.cancel(part)
        self.refresh()

    def resume(self) -> bool:
        """Restart a job whose worker died (local backend); finished rows are not redone.

        Returns
        -------
        bool
            True if a new worker was started.
        """
        started = [self.backend.resume(p) for p in self._record.parts]
        return any(started)

    # -------------------------------------------------------------- result
    def result(self, partial: bool = False) -> pd.DataFrame:
        """The submitted frame with the answers joined by custom_id.

        Parameters
        ----------
        partial : bool
            Also return a frame when the job failed, was cancelled, expired or
            is still running: rows without an answer get an ``error``.

        Returns
        -------
        pandas.DataFrame
            The frame's columns, index and order, plus ``response``,
            ``finish_reason``, ``prompt_tokens``, ``completion_tokens`` and
            ``error`` (chat), or ``embedding`` and ``error`` (embeddings).

        Raises
        ------
        JobError
            The job did not succeed (or has not ended) and ``partial`` is False.
        JobFolderError
            A file the result needs (manifest, frame, status) is missing or
            damaged; the message says what can still be recovered. With
            ``partial=True`` a damaged status is not needed: the rows written
            to the output so far are returned.
        """
        try:
            status = self.refresh()
        except JobFolderError as exc:
            if not partial:
                raise
            status = JobStatus(state="JOB_STATE_UNSPECIFIED", error=f"its status cannot be read: {exc}")
        claimed = status.done and reusestate.has_keys(self._folder)  # its rows were claimed (pdbatch.jobs.claims)
        if claimed and status.state not in OK_STATES:
            claims.release(job=self.id)  # ended without answers to cache: other calls send the rows again
        if status.state not in OK_STATES and not partial:
            if status.state in ACTIVE_STATES:
                raise JobError(
                    f"job {self.id} is {status.state}; call job.wait() first, or result(partial=True) "
                    f"for the rows answered so far",
                    job_id=self.id,
                    state=status.state,
                )
            raise JobError(
                f"job {self.id} ended {status.state}: {status.error or 'no error given'}. "
                f"result(partial=True) returns the rows it answered.",
                job_id=self.id,
                state=status.state,
                detail=status.error,
            )
        frame = self.frame()
        paths = self.output_files()
        saved = reusestate.load(self._folder, len(frame), paths)
        # a running (or crashed) worker may have left half a line at the end: not data
        parsed = parse_files(paths, complete_only=not status.done)
        if saved.cached is not None:  # rows answered by the cache
            parsed = pd.concat([parsed, parse_bytes(saved.cached)], ignore_index=True)
        missing = "missing: the job returned no output line for this row"
        if status.state not in OK_STATES:
            missing = f"not run: the job is {status.state}" + (f" ({status.error})" if status.error else "")
        call = self.call
        out = assemble(frame, parsed, call, kind=self._record.kind, custom_ids=custom_ids(frame, call.custom_id),
                       skipped=self._record.skipped, overwrite=self.options.overwrite, alias=saved.alias,
                       missing_error=missing)
        if status.state in OK_STATES:  # once, after a good job: its new answers into the cache
            reuse.fill_cache(self._folder, self._record, paths)
        if claimed:  # after its answers went into the cache: a call waiting for them finds them there
            claims.release(job=self.id)
        out.attrs["pdbatch_job"] = self.id
        if self._record.rows:
            out.attrs["pdbatch_rows"] = dict(self._record.rows)
        return out

    def frame(self) -> pd.DataFrame:
        """The frame as it was submitted (the job's own copy, read from its folder)."""
        return jobdir.load_frame(self._folder, self.id, allow_pickle=self._allow_pickle)

    def reuse_state(self, outputs: list[Path]) -> reusestate.Saved:
        """Its aliases and cached answers (:func:`pdbatch.store.reusestate.load`; errors name ``outputs``)."""
        return reusestate.load(self._folder, self.n_rows, outputs)

    def output_files(self) -> list[Path]:
        """The job's output files, downloaded into its folder by the backend (empty when nothing was sent)."""
        dest = self._folder / jobdir.DOWNLOADS
        try:
            jobdir.private_tree(dest, chmod=False)  # a link there would take the download elsewhere: refused
            paths = [path for part in self._record.parts for path in self.backend.fetch_output(part, dest)]
            # downloaded here by the backend: as private as the rest of the folder, never chmod-ed through a link
            jobdir.private_tree(dest)
        except PermissionError as exc:
            raise JobFolderError(f"cannot write the job's output into {dest} ({exc.strerror}); make the job "
                                 f"folder writable again (chmod u+w {self._folder})", path=dest) from exc
        return paths

    # ------------------------------------------------------------- display
    def display(self, *, poll: float | None = None) -> None:
        """Show the job's live status again, e.g. after :func:`attach` or a kernel restart.

        In Jupyter this shows the status widget and returns at once: a
        background thread keeps it updated until the job ends or the widget is
        closed, and its Cancel button stops the job. Elsewhere it waits for the
        job with a text progress bar.

        Parameters
        ----------
        poll : float, optional
            Seconds between status checks (backend default otherwise).

        Notes
        -----
        The thread updating the widget is ``job.poller`` (``.stop()``, ``.join()``).
        """
        if not live_display_available():
            self.wait(progress=True, poll=poll)
            return
        reporter = make_reporter(self.label, True, cancel=self.cancel, blocking=False)
        self.poller = follow(reporter, self.poll_once, self._interval(poll), name=f"pdbatch-poll-{self.id}")

    def __repr__(self) -> str:
        return jobview.text(self, self.last_status)

    def _repr_html_(self) -> str:
        return jobview.html(self)


def attach(job_id: str, backend: Backend | str | None = None, *, allow_pickle: bool = False) -> BatchJob:
    """Re-open a job submitted earlier, from any Python process (a restarted kernel).

    Parameters
    ----------
    job_id : str
        ``job.id`` as printed when it was submitted (any part's id works).
    backend : Backend or str, optional
        Overrides the backend settings remembered with the job (for example to
        pass other credentials); by default the backend is rebuilt from them.
    allow_pickle : bool
        Let :meth:`BatchJob.result` read the ``frame.pkl`` of a job saved by
        pdbatch 0.1 (with a warning). Unpickling runs any code the file names:
        pass True only for job folders you trust. New jobs keep their frame as
        Arrow data and never need it.

    Returns
    -------
    BatchJob

    Raises
    ------
    JobNotFoundError
        No job with that id under ``PDBATCH_HOME``, or the id is not a valid id.
    JobFolderError
        The job's manifest is missing or damaged (the message says what can
        still be recovered).
    """
    record, folder = jobdir.load(job_id)
    if backend is None:
        be = backend_class(record.backend).from_settings(record.backend_settings)
    else:
        be = get_backend(backend)
        if be.name != record.backend:
            raise ConfigError(f"job {job_id} ran on the {record.backend!r} backend; backend= must be one too, "
                              f"not {be.name!r}")
    cls = next((c for key, c in JOB_TYPES.items() if record.call.get(key)), BatchJob)
    return cls(record, folder, be, allow_pickle=allow_pickle)
