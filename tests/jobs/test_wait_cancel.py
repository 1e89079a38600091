"""Cancel from the panel while wait() holds the cell, and an interrupted wait, on the real local engine.

The click itself, through JupyterLab's comm channel, is driven in
tests/display/test_browser_cancel.py; here the panel's Cancel callback is called from
the hook wait() runs between polls (``uievents.ui_events``), as a click
processed there calls it.
"""

from __future__ import annotations

import contextlib

import pandas as pd
import pytest

import pdbatch
from pdbatch.display import uievents
from pdbatch.display.choose import NullReporter
from pdbatch.errors import JobError
from pdbatch.jobs import job as jobs

pytestmark = pytest.mark.slow


@pytest.fixture
def long_job():
    """A job that runs for minutes; cancelled at the end whatever happened (no worker left behind)."""
    df = pd.DataFrame({"topic": [f"subject number {i}" for i in range(40)]})
    job = df.llama.submit("Write a long essay about {topic}.", max_tokens=400, temperature=0, progress=False)
    yield job
    job.cancel()


def test_a_click_between_polls_cancels_and_the_call_raises(monkeypatch, long_job):
    job = long_job
    panel: dict = {}

    def reporter(job, progress, *, cancel=None, blocking=True):
        panel.update(cancel=cancel, blocking=blocking)
        return NullReporter()

    calls = []

    def process():
        calls.append(1)
        if len(calls) == 3:  # the user clicks Cancel while the job runs
            panel["cancel"]()

    @contextlib.contextmanager
    def events():
        yield process

    monkeypatch.setattr(jobs, "make_reporter", reporter)
    monkeypatch.setattr(uievents, "ui_events", events)
    with pytest.raises(JobError) as info:
        job.wait(timeout=300)
    assert info.value.state == "JOB_STATE_CANCELLED"
    message = str(info.value)
    assert "result(partial=True)" in message and "retry_failed" in message and job.id in message
    assert panel["blocking"] is False  # clicks are processed: the panel does not ask to interrupt first
    out = job.result(partial=True)
    assert out.error.str.contains("JOB_STATE_CANCELLED").any()


def test_a_cancel_elsewhere_is_not_an_error_of_wait(long_job):
    job = long_job
    job.cancel()
    job.wait(timeout=300, progress=False)  # ends; result() says the job was cancelled
    with pytest.raises(JobError, match="CANCELLED"):
        job.result()


def test_keyboard_interrupt_leaves_the_job_running_and_says_how_to_reach_it(monkeypatch, capsys, long_job):
    job = long_job

    def interrupted(seconds, process, until=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(uievents, "pause", interrupted)
    with pytest.raises(KeyboardInterrupt):
        job.wait(progress=False)
    err = capsys.readouterr().err
    assert f"job {job.id} goes on running" in err
    assert f"pdbatch.attach({job.id!r})" in err and "job.cancel()" in err and f"pdbatch cancel {job.id}" in err
    assert pdbatch.attach(job.id).state in ("JOB_STATE_RUNNING", "JOB_STATE_PENDING", "JOB_STATE_QUEUED")
