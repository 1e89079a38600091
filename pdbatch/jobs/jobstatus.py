"""What a job's status means to the one waiting: one status for several parts, and the errors a wait raises."""

from __future__ import annotations

import contextvars
from collections.abc import Callable

from ..backends.base import ACTIVE_STATES, OK_STATES, JobStatus
from ..errors import JobError, JobPausedError

__all__ = ["INTERRUPT_ADVICE", "cancelled_error", "combine", "paused_error"]


def _interrupted(job_id: str) -> str:
    return (f"pdbatch: interrupted; job {job_id} goes on running. Get it back with "
            f"job = pdbatch.attach({job_id!r}) (then job.wait(), job.result()); stop it with job.cancel() "
            f"(or `pdbatch cancel {job_id}`).")


#: What an interrupted ``wait`` prints about the job that goes on: how to reach it again.
#: Python's words by default; the command line sets its own (``pdbatch wait JOB_ID``, ...).
INTERRUPT_ADVICE: contextvars.ContextVar[Callable[[str], str]] = contextvars.ContextVar(
    "pdbatch_interrupt_advice", default=_interrupted)


def cancelled_error(job_id: str, status: JobStatus) -> JobError:
    """What ``wait`` raises when the job was cancelled from its panel while it waited."""
    return JobError(
        f"job {job_id} was cancelled from its panel ({status.state}; {status.succeeded} rows answered, "
        f"{status.failed} failed). The answered rows are kept: job.result(partial=True), or "
        f"pdbatch.attach({job_id!r}).result(partial=True), returns them with the others marked not run, "
        f"and .llama.retry_failed() on that frame sends the others again.",
        job_id=job_id,
        state=status.state,
        detail=status.error,
    )


def paused_error(job_id: str, status: JobStatus) -> JobPausedError:
    """What ``wait`` raises when the service paused the job (it goes on only once resumed there)."""
    # A paused job leaves that state only when someone resumes it on the service:
    # waiting on would hang a script, or a notebook cell, indefinitely.
    return JobPausedError(
        f"job {job_id} is JOB_STATE_PAUSED ({status.finished}/{status.total if status.total is not None else '?'} "
        f"rows done{'; ' + status.error if status.error else ''}): the service paused it and it will not go on "
        f"until it is resumed there (see {status.console_url or 'the console'}). Stopped waiting. "
        f"job.result(partial=True) returns the rows answered so far; job.cancel() stops it; job.wait() waits again.",
        job_id=job_id,
        state=status.state,
        detail=status.error,
    )


def combine(statuses: list[JobStatus]) -> JobStatus:
    """One status for a job split over several backend jobs."""
    if not statuses:  # every row was answered from the cache: nothing was sent
        return JobStatus(state="JOB_STATE_SUCCEEDED", total=0)
    if len(statuses) == 1:
        return statuses[0]
    states = {s.state for s in statuses}
    active = [s for s in statuses if s.state in ACTIVE_STATES]
    if active:
        state = "JOB_STATE_RUNNING" if any(s.state == "JOB_STATE_RUNNING" for s in active) else active[0].state
    elif states == {"JOB_STATE_SUCCEEDED"}:
        state = "JOB_STATE_SUCCEEDED"
    elif states <= OK_STATES:
        state = "JOB_STATE_PARTIALLY_SUCCEEDED"
    else:
        state = next(s for s in ("JOB_STATE_FAILED", "JOB_STATE_EXPIRED", "JOB_STATE_CANCELLED") if s in states)
    totals = [s.total for s in statuses]
    errors = [s.error for s in statuses if s.error]
    return JobStatus(
        state=state,
        total=None if None in totals else sum(t or 0 for t in totals),
        succeeded=sum(s.succeeded for s in statuses),
        failed=sum(s.failed for s in statuses),
        error="; ".join(errors) or None,
        output=statuses[0].output,
        console_url=statuses[0].console_url,
        stalled=any(s.stalled for s in statuses),
        extra={"parts": [s.state for s in statuses]},
    )
