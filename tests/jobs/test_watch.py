"""The one poll loop: retries, the deadline, the hook between polls, and BatchJob.wait running on it."""

from __future__ import annotations

import threading
import time

import pytest

from pdbatch.backends.base import JobStatus
from pdbatch.display.reporter import Reporter
from pdbatch.errors import JobFolderError
from pdbatch.jobs.watch import MAX_POLL_ERRORS, watch


class Recorder(Reporter):
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.notes: list[str | None] = []

    def update(self, status: JobStatus) -> None:
        self.seen.append(status.state)

    def note(self, text: str | None) -> None:
        self.notes.append(text)


def scripted(*steps: JobStatus | Exception):
    it = iter(steps)

    def fetch() -> JobStatus:
        step = next(it)
        if isinstance(step, Exception):
            raise step
        return step

    return fetch


RUNNING, DONE = JobStatus("JOB_STATE_RUNNING"), JobStatus("JOB_STATE_SUCCEEDED")


def test_a_failed_check_is_retried_and_the_hook_runs_between_polls():
    slept: list[float] = []
    rec = Recorder()
    fetch = scripted(RUNNING, ConnectionError("blip"), RUNNING, DONE)
    assert watch(fetch, rec, 0.5, between=slept.append) is DONE
    assert rec.seen == ["JOB_STATE_RUNNING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
    assert rec.notes == ["status check failed, retrying: ConnectionError: blip"]
    assert slept == [0.5, 0.5, 0.5]  # the hook replaces the sleep, once between two polls


def test_a_run_of_failures_or_a_damaged_folder_ends_the_loop():
    rec = Recorder()
    with pytest.raises(ConnectionError):
        watch(scripted(*[ConnectionError("down")] * MAX_POLL_ERRORS), rec, 0, between=lambda s: None)
    assert rec.notes[-1] == "stopped updating: ConnectionError: down"
    with pytest.raises(JobFolderError):  # retrying cannot mend it: raised at the first check
        watch(scripted(JobFolderError("status.json is damaged"), DONE), Recorder(), 0)


def test_deadline_paused_and_stop_end_the_loop_with_the_last_status():
    assert watch(lambda: RUNNING, Recorder(), 0.01, deadline=time.monotonic() + 0.05) is RUNNING
    paused = JobStatus("JOB_STATE_PAUSED")
    assert watch(scripted(paused), Recorder(), 0.01, paused_ends=True) is paused
    stop = threading.Event()
    stop.set()
    assert watch(lambda: RUNNING, Recorder(), 30, stop=stop) is None


class Closed(Recorder):
    closed = True  # type: ignore[assignment]


def test_a_closed_display_ends_a_background_loop_but_not_a_blocking_wait():
    assert watch(lambda: RUNNING, Closed(), 30) is None
    fetch = scripted(RUNNING, RUNNING, DONE)
    assert watch(fetch, Closed(), 0, closed_ends=False, between=lambda s: None) is DONE
