"""The parts of a job as they sit on disk: each one's status, files and answers read back.

A job (:class:`pdbatch.jobs.job.BatchJob`) is one or more parts, one per kind
and model of its :class:`~pdbatch.jobs.reuse.JobPlan`: a frame's call is one
part, a request file with chat and embeddings lines two. Each part has a job
folder of its own (its manifest, its copy of the frame, its reuse state, its
backend jobs); the head part's folder carries the id the caller sees, and its
saved call names the others (``call.requests["siblings"]``). Every part keeps
the whole frame with the rows it does not run skipped, so the parts' results
merge by position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..backends import Backend
from ..backends.base import ACTIVE_STATES, OK_STATES, JobStatus
from ..builders.requestfile import OTHER_PART
from ..builders.requests import custom_ids
from ..call import Call, Options
from ..display.reporter import RowCounts
from ..errors import JobError, JobFolderError
from ..models import Kind
from ..results.join import output_columns
from ..results.parse import parse_bytes, parse_files
from ..results.readside import assemble
from ..store import jobdir, reusestate
from . import claims, reuse
from .jobstatus import combine

__all__ = ["JobPart", "load_parts", "merge_parts", "owned", "run_by_none", "total_counts"]


def load_parts(record: jobdir.Manifest, folder: Path, backend: Backend, allow_pickle: bool) -> list[JobPart]:
    """The parts of the job whose head is ``record``: the siblings its call names first, then the head itself.

    Raises
    ------
    JobNotFoundError, JobFolderError
        A sibling's folder is gone or damaged.
    """
    siblings = (record.call.get("requests") or {}).get("siblings", [])
    parts = [JobPart(*jobdir.load(s), backend, allow_pickle) for s in siblings]
    return [*parts, JobPart(record, folder, backend, allow_pickle)]


class JobPart:
    """One part of a job: its manifest and folder, read through the backend that runs its backend jobs.

    Attributes
    ----------
    record : Manifest
        The part's manifest (:mod:`pdbatch.store.jobdir`).
    folder : pathlib.Path
        Its job folder.
    backend : Backend
    """

    def __init__(self, record: jobdir.Manifest, folder: Path, backend: Backend, allow_pickle: bool = False) -> None:
        self.record = record
        self.folder = folder
        self.backend = backend
        self.allow_pickle = allow_pickle
        self.status: JobStatus | None = None
        self._seen: str | None = None  # the state last written to last-status.json by this handle

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def skipped(self) -> dict[int, str]:
        """Frame positions the part does not run, and why (other parts' rows among them)."""
        return dict(self.record.skipped)

    @property
    def kind(self) -> Kind:
        return self.record.kind

    # -------------------------------------------------------------- control
    def refresh(self) -> JobStatus:
        """Its backend jobs' status, as one; written to ``last-status.json`` when it changed."""
        self.status = status = combine([self.backend.status(p) for p in self.record.parts])
        if status.state != self._seen:  # kept for `pdbatch jobs`, which shows it without asking the backend
            jobdir.write_seen(self.folder, status.state, status.total, status.succeeded, status.failed, status.error)
            self._seen = status.state
        return status

    def poll_once(self) -> JobStatus:
        """One status check; a local job whose worker died is restarted on the way."""
        status = self.refresh()
        if status.stalled:
            self.resume()
            status = self.refresh()
        return status

    def cancel(self) -> None:
        for p in self.record.parts:
            self.backend.cancel(p)

    def resume(self) -> bool:
        return any([self.backend.resume(p) for p in self.record.parts])

    # ---------------------------------------------------------------- files
    def frame(self) -> pd.DataFrame:
        """The frame as it was submitted (the part's own copy, read from its folder)."""
        return jobdir.load_frame(self.folder, self.id, allow_pickle=self.allow_pickle)

    def output_files(self) -> list[Path]:
        """The part's output files, downloaded into its folder by the backend (empty when nothing was sent)."""
        dest = self.folder / jobdir.DOWNLOADS
        try:
            jobdir.private_tree(dest, chmod=False)  # a link there would take the download elsewhere: refused
            paths = [path for part in self.record.parts for path in self.backend.fetch_output(part, dest)]
            # downloaded here by the backend: as private as the rest of the folder, never chmod-ed through a link
            jobdir.private_tree(dest)
        except PermissionError as exc:
            raise JobFolderError(f"cannot write the job's output into {dest} ({exc.strerror}); make the job "
                                 f"folder writable again (chmod u+w {self.folder})", path=dest) from exc
        return paths

    def reuse_state(self, outputs: list[Path]) -> reusestate.Saved:
        """Its aliases and cached answers (:func:`pdbatch.store.reusestate.load`; errors name ``outputs``)."""
        return reusestate.load(self.folder, self.record.n_rows, outputs)

    def answer_lines(self, complete_only: bool) -> tuple[list[bytes], np.ndarray | None]:
        """Every line that answers a row (the output files', then the cache's) and the aliases, read once."""
        paths = self.output_files() if self.record.parts else []
        saved = self.reuse_state(paths)  # read (and checked) by the one reader of a job's reuse state
        return list(saved.answer_lines(paths, complete_only=complete_only)), saved.alias

    def answer_ids(self) -> list[str]:
        """Each frame row's custom_id as the part sent it (a column of the frame, or ``row-<position>``)."""
        frame = self.frame()
        ids = custom_ids(frame, Call.from_record(self.record.call).custom_id)
        return [f"row-{p}" for p in range(len(frame))] if ids is None else ids.tolist()

    # --------------------------------------------------------------- result
    def read(self, partial: bool, job_id: str) -> pd.DataFrame:
        """The part's frame with its answers joined (:meth:`pdbatch.jobs.job.BatchJob.result`; ``job_id`` in errors)."""
        try:
            status = self.refresh()
        except JobFolderError as exc:
            if not partial:
                raise
            status = JobStatus(state="JOB_STATE_UNSPECIFIED", error=f"its status cannot be read: {exc}")
        claimed = status.done and reusestate.has_keys(self.folder)  # its rows were claimed (pdbatch.jobs.claims)
        if claimed and status.state not in OK_STATES:
            claims.release(job=self.id)  # ended without answers to cache: other calls send the rows again
        if status.state not in OK_STATES and not partial:
            if status.state in ACTIVE_STATES:
                raise JobError(
                    f"job {job_id} is {status.state}; call job.wait() first, or result(partial=True) "
                    f"for the rows answered so far",
                    job_id=job_id,
                    state=status.state,
                )
            raise JobError(
                f"job {job_id} ended {status.state}: {status.error or 'no error given'}. "
                f"result(partial=True) returns the rows it answered.",
                job_id=job_id,
                state=status.state,
                detail=status.error,
            )
        frame = self.frame()
        paths = self.output_files()
        saved = reusestate.load(self.folder, len(frame), paths)
        # a running (or crashed) worker may have left half a line at the end: not data
        parsed = parse_files(paths, complete_only=not status.done)
        if saved.cached is not None:  # rows answered by the cache
            parsed = pd.concat([parsed, parse_bytes(saved.cached)], ignore_index=True)
        missing = "missing: the job returned no output line for this row"
        if status.state not in OK_STATES:
            missing = f"not run: the job is {status.state}" + (f" ({status.error})" if status.error else "")
        call = Call.from_record(self.record.call)
        out = assemble(frame, parsed, call, kind=self.record.kind, custom_ids=custom_ids(frame, call.custom_id),
                       skipped=self.record.skipped, overwrite=Options.from_record(self.record.options).overwrite,
                       alias=saved.alias, missing_error=missing)
        if status.state in OK_STATES:  # once, after a good job: its new answers into the cache
            reuse.fill_cache(self.folder, self.record, paths)
        if claimed:  # after its answers went into the cache: a call waiting for them finds them there
            claims.release(job=self.id)
        return out


def owned(skipped: Mapping[int, str], n: int) -> np.ndarray:
    """A mask of the positions a part runs (sent, or answered by the cache or an identical row)."""
    mine = np.ones(n, dtype=bool)
    mine[list(skipped)] = False
    return mine


def run_by_none(parts: Sequence[JobPart]) -> dict[int, str]:
    """The frame positions no part runs, each with the reason of a part that had it to run, if one had."""
    out = {}
    for p, why in parts[-1].record.skipped.items():
        reasons = [part.record.skipped.get(p) for part in parts]
        if None not in reasons:
            out[p] = next((r for r in reasons if r is not None and not r.startswith(OTHER_PART)), why)
    return out


def merge_parts(parts: list[tuple[Kind, Mapping[int, str]]], results: list[pd.DataFrame]) -> pd.DataFrame:
    """The parts' results as one frame: each row takes the answer columns of the part that runs it.

    ``parts`` are each part's kind and skipped rows (a :class:`JobPart`'s, or
    a planned :class:`~pdbatch.jobs.reuse.Part`'s answered without a job);
    the last one (the head) gives the frame and the columns every part has.
    """
    if len(results) == 1:
        return results[0]
    out = results[-1].copy()
    for (kind, skipped), res in zip(parts, results, strict=True):
        mine = owned(skipped, len(out))
        for c in output_columns(kind):
            if c not in out.columns:  # before "error", which every kind has
                blank = pd.array([None] * len(out), dtype=res[c].dtype)
                out.insert(len(out.columns) - 1, c, pd.Series(blank, index=out.index))
            col = out[c].copy()
            col.iloc[mine] = res[c].iloc[mine].to_numpy()
            out[c] = col
    return out


def total_counts(counts: Sequence[RowCounts | None]) -> RowCounts | None:
    """What became of the frame's rows over every part (each part counts the others' rows as skipped).

    None when a part has no counts (a job saved by an older pdbatch).
    """
    if not counts or any(c is None for c in counts):
        return None
    known = [c for c in counts if c is not None]
    if len(known) == 1:
        return known[0]
    sent, merged, cached = (sum(getattr(c, f) for c in known) for f in ("sent", "merged", "cached"))
    rows = known[0].rows
    return RowCounts(rows=rows, sent=sent, merged=merged, cached=cached, skipped=rows - sent - merged - cached)
