"""Live job status: an ipywidgets panel in a Jupyter kernel, a tqdm bar elsewhere.

The poll loop in :meth:`pdbatch.BatchJob.wait` calls a reporter with each new
:class:`~pdbatch.backends.JobStatus`; a reporter never calls the backend.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .backends.base import JobStatus
    from .job import BatchJob

__all__ = ["Reporter", "make_reporter"]


class Reporter(Protocol):
    """Receives status snapshots while a job runs."""

    def update(self, status: JobStatus) -> None: ...

    def close(self, status: JobStatus | None) -> None: ...


class NullReporter:
    """``progress=False``: show nothing."""

    def update(self, status: JobStatus) -> None:
        pass

    def close(self, status: JobStatus | None) -> None:
        pass


class TqdmReporter:
    """A tqdm bar of rows done / total, with the state and failures in the postfix."""

    def __init__(self, job: BatchJob) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=None, desc=f"{job.backend.name}:{job.model}", unit="row", file=sys.stderr,
                         dynamic_ncols=True)
        self._last_state = ""

    def update(self, status: JobStatus) -> None:
        if status.total is not None and self._bar.total != status.total:
            self._bar.total = status.total
        self._bar.n = status.finished
        short = status.state.removeprefix("JOB_STATE_").lower()
        post: dict[str, Any] = {"state": short}
        if status.failed:
            post["failed"] = status.failed
        self._bar.set_postfix(post, refresh=False)
        self._bar.refresh()

    def close(self, status: JobStatus | None) -> None:
        if status is not None:
            self.update(status)
        self._bar.close()


def make_reporter(job: BatchJob, progress: bool) -> Reporter:
    """The reporter for this environment: nothing, a tqdm bar, or (in Jupyter) the widget."""
    if not progress:
        return NullReporter()
    return TqdmReporter(job)
