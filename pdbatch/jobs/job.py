"""``BatchJob``: a handle on a submitted job that outlives the call, and the kernel.

A job is submitted by :func:`pdbatch.jobs.submit.submit` (what ``df.llama.submit``
calls) and re-found with :func:`attach` in any later Python process. Its manifest (see
:mod:`pdbatch.store.jobdir`) holds everything :meth:`BatchJob.result` needs to
join the answers back to the frame; a job of several parts (a request file's
kinds of line) has one folder per part, read by :mod:`pdbatch.jobs.jobparts`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..backends import Backend, backend_class, get_backend
from ..backends.base import JobStatus
from ..builders.bodies import as_dicts
from ..call import Call, Options
from ..display import uievents
from ..display.choose import live_display_available, make_reporter
from ..display.reporter import JobLabel, RowCounts
from ..errors import ConfigError, JobTimeoutError
from ..models import Kind
from ..store import jobdir
from . import filewriter, jobview
from .filewriter import PartAnswers
from .jobparts import JobPart, load_parts, merge_parts, run_by_none, total_counts
from .jobstatus import INTERRUPT_ADVICE, cancelled_error, combine, paused_error
from .watch import Poller, follow, watch

__all__ = ["BatchJob", "attach", "combine"]

#: Handle classes by the key a job's saved call sets (a BigQuery table's, :mod:`pdbatch.jobs.tableresult`): see
#: attach. A request file's job needs none: a BatchJob holds its parts (:mod:`pdbatch.jobs.jobparts`).
JOB_TYPES: dict[str, type[BatchJob]] = {}


class BatchJob:
    """A submitted batch job.

    Create one with ``df.llama.submit(...)``, ``pdbatch.run_requests(...,
    wait=False)`` or :func:`attach`; do not construct it directly.

    A job is one or more parts (:class:`pdbatch.jobs.jobparts.JobPart`), one
    per kind and model: a frame's call has one, a request file of chat and
    embeddings lines two. Status, wait, cancel, resume, the result and the
    display act on every part. ``pdbatch.RequestsJob``, the request file's
    job class of earlier versions, is an alias of this class.

    Attributes
    ----------
    id : str
        The job id (a Vertex resource name for Vertex jobs).
    ids : list of str
        Every backend job behind this one (several when the work was split, or
        when it has several parts).
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
        self._record = record  # the head part's manifest: the job's id, call and options
        self._folder = folder
        self.backend = backend
        self._status: JobStatus | None = None
        self.poller: Poller | None = None
        # one part per kind and model (a request file of chat and embeddings lines: two), the head last
        self._parts = load_parts(record, folder, backend, allow_pickle)

    # ------------------------------------------------------------ properties
    @property
    def id(self) -> str:
        return self._record.id

    @property
    def ids(self) -> list[str]:
        return [i for part in self._parts for i in part.record.parts]

    @property
    def parts(self) -> list[JobPart]:
        """The job's parts, one per kind and model (its head, whose id is the job's, last)."""
        return list(self._parts)

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
        """What a status display shows besides the status: id, backend name, model (each part's), rows."""
        models = " + ".join(dict.fromkeys(part.record.model for part in reversed(self._parts)))
        return JobLabel(id=self.id, backend=self.backend.name, model=models, rows=self.rows)

    @property
    def rows(self) -> RowCounts | None:
        """What became of the frame's rows: sent, merged as duplicates, answered from the cache, skipped.

        Counted over every part; None for a job saved by an older pdbatch.
        """
        return total_counts([RowCounts.from_record(p.record.rows) if p.record.rows else None for p in self._parts])

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
        """The frame positions no part of this job runs, and why (a row skipped, a line refused, over the window)."""
        return run_by_none(self._parts)

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
        self._status = combine([part.refresh() for part in self._parts])
        return self._status

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
        self._status = combine([part.poll_once() for part in self._parts])
        return self._status

    def cancel(self) -> None:
        """Ask the job to stop. Rows already answered stay: ``result(partial=True)`` returns them."""
        for part in self._parts:
            part.cancel()
        self.refresh()

    def resume(self) -> bool:
        """Restart a job whose worker died (local backend); finished rows are not redone.

        Returns
        -------
        bool
            True if a new worker was started.
        """
        return any([part.resume() for part in self._parts])

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
        results = [part.read(partial, self.id) for part in self._parts]
        seen = [part.status for part in self._parts if part.status is not None]
        if seen:  # what reading the result found: the job's last status
            self._status = combine(seen)
        out = merge_parts([(part.kind, part.record.skipped) for part in self._parts], results)
        if self._record.call.get("requests") is not None:
            out = as_dicts(out)  # a request file's job keeps the bodies as JSON text: the user reads dicts
        out.attrs["pdbatch_job"] = self.id
        rows = self.rows
        if rows is not None:
            out.attrs["pdbatch_rows"] = rows.record()
        return out

    def frame(self) -> pd.DataFrame:
        """The frame as it was submitted (the job's own copy, read from its folder)."""
        return self._parts[-1].frame()

    def output_files(self) -> list[Path]:
        """The job's output files, downloaded into its folders by the backend (empty when nothing was sent)."""
        return [path for part in self._parts for path in part.output_files()]

    def output_lines(self, partial: bool = False) -> Iterator[dict[str, Any]]:
        """Each row's answer as an OpenAI batch output object, in frame order (:mod:`pdbatch.lines.batchoutput`).

        The answer body is the one the backend returned for the row (or the
        cache kept), so a request file's job gives back the output file an
        OpenAI batch would have; a frame's job gives the same objects, by the
        custom_ids its request lines had (``custom_id=``'s column, or ``row-<position>``).
        """
        out = self.result(partial)
        ids = self._parts[-1].answer_ids()
        return filewriter.output_lines(self.id, out, ids, [PartAnswers.of_job(part, ids) for part in self._parts])

    def write_output(self, path: str | os.PathLike[str], partial: bool = False) -> int:
        """Write every row's answer to ``path``; returns the number of rows.

        ``.jsonl`` (or ``.ndjson``): OpenAI's batch output format, one
        ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``
        object per row (:meth:`output_lines`). ``.parquet`` / ``.csv``: the
        result as a table, without a request file's ``method``, ``url`` and
        ``body`` columns: ``custom_id``, ``response``, ``error`` and the token
        columns (``embedding`` for embeddings); a frame's job writes its result
        frame's columns (not its index).
        """
        return filewriter.write(path, lambda: self.result(partial), lambda: self.output_lines(partial),
                                requests=self._record.call.get("requests") is not None)

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
