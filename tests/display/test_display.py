"""The live status display: the HTML panel, the reporters, the poller thread, and their wiring into BatchJob.

The widget is checked through what it renders (``WidgetReporter.html``) and its
ipywidgets objects, without a browser or a kernel; tests/display/test_browser.py looks
at it in JupyterLab.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest

import pdbatch
from pdbatch.backends.base import Backend, JobStatus
from pdbatch.builders.requests import build_requests
from pdbatch.call import Call, Options
from pdbatch.display import choose as display
from pdbatch.display import widget
from pdbatch.display.choose import TqdmReporter
from pdbatch.display.reporter import JobLabel, NullReporter, elapsed_seconds, short_state
from pdbatch.display.widget import WidgetReporter, status_html
from pdbatch.errors import JobTimeoutError
from pdbatch.jobs.reuse import Part
from pdbatch.jobs.submit import submit
from pdbatch.jobs.watch import Poller

LABEL = JobLabel(id="local-20260101-120000-ab12cd", backend="local", model="smollm2-135m-instruct")


def st(state: str = "RUNNING", total: int | None = 60, ok: int = 0, bad: int = 0, **kw: Any) -> JobStatus:
    return JobStatus(state=f"JOB_STATE_{state}", total=total, succeeded=ok, failed=bad, **kw)


class Scripted(Backend):
    """A backend whose job walks through a list of statuses, one per status call (then stays on the last)."""

    name = "scripted"
    script: ClassVar[list[JobStatus]] = []

    def __init__(self, script: list[JobStatus] | None = None) -> None:
        self.script = list(script or [st("SUCCEEDED", 3, 3)])
        self.calls = 0
        self.cancelled = False

    def settings(self) -> dict[str, Any]:
        return {}

    def model_name(self, model: str | None, kind: Any) -> str:
        return model or "scripted-model"

    def submit(self, files: list[Path], **kw: Any) -> list[str]:
        return ["scripted-1"]

    def status(self, job_id: str) -> JobStatus:
        if self.cancelled:
            return st("CANCELLED", self.script[0].total, error="cancelled by the user")
        status = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return status

    def cancel(self, job_id: str) -> None:
        self.cancelled = True

    def fetch_output(self, job_id: str, dest: Path) -> list[Path]:
        return []


def make_job(backend: Backend) -> pdbatch.BatchJob:
    frame = pd.DataFrame({"review": ["good", "bad", "fine"]})
    return submit(frame, Part.of(build_requests(frame, "{review}", model="scripted-model")), backend,
                  Call(prompt="{review}"), Options())


@pytest.fixture
def kernel(monkeypatch):
    """Pretend to run in a Jupyter kernel; widgets are built but not displayed anywhere."""
    monkeypatch.setattr(display, "in_kernel", lambda: True)
    shown: list[Any] = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    return shown


@pytest.fixture(autouse=True)
def no_stray_threads():
    """Every test must leave no poller thread behind."""
    yield
    deadline = time.monotonic() + 5
    while any(t.name.startswith("pdbatch-poll") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("pdbatch-poll")]


# ------------------------------------------------------------------ rendering
def test_short_state():
    assert short_state("JOB_STATE_PARTIALLY_SUCCEEDED") == "partially succeeded"
    assert short_state("JOB_STATE_RUNNING") == "running"


@pytest.mark.parametrize(
    ("state", "colour"),
    [
        ("QUEUED", "#5f6368"),
        ("RUNNING", "#1a73e8"),
        ("SUCCEEDED", "#188038"),
        ("FAILED", "#d93025"),
        ("CANCELLED", "#e8710a"),
    ],
)
def test_each_state_has_its_colour(state, colour):
    html = status_html(LABEL, st(state))
    assert f'data-state="{short_state("JOB_STATE_" + state)}"' in html
    assert f"background:{colour}" in html
    assert f'title="JOB_STATE_{state}"' in html


def test_panel_shows_backend_model_id_counts_and_timing():
    html = status_html(LABEL, st("RUNNING", 60, 40, 2), elapsed=65, rate=8.123, eta=2.3)
    assert "<b>local</b>" in html and "smollm2-135m-instruct" in html and LABEL.id in html
    assert "<b>42</b> / 60 rows" in html and "40 succeeded" in html and "2 failed" in html
    assert "1:05 elapsed" in html and "8.1 rows/s" in html and "ETA 2.3 s" in html
    assert "width:66.67%" in html and "width:3.33%" in html  # the bar: succeeded, then failed
    assert "pdbatch-error" not in html and "pdbatch-console" not in html


def test_panel_unknown_total_and_no_status_yet():
    assert "? rows" in status_html(LABEL, st("PENDING", None))
    assert 'data-state="connecting"' in status_html(LABEL, None)


def test_panel_shows_error_escaped_and_console_link():
    html = status_html(
        LABEL,
        st(
            "FAILED",
            60,
            3,
            1,
            error="quota <exceeded> & more",
            console_url="https://console.cloud.google.com/vertex-ai/x?a=1&b=2",
        ),
    )
    assert "quota &lt;exceeded&gt; &amp; more" in html and "<exceeded>" not in html
    assert 'href="https://console.cloud.google.com/vertex-ai/x?a=1&amp;b=2"' in html
    assert "Open in the Cloud console" in html


def test_panel_hides_eta_once_done_and_shortens_gguf_paths():
    label = JobLabel(id="j", backend="local", model="/models/deep/tiny-q4.gguf")
    html = status_html(label, st("SUCCEEDED", 3, 3), eta=5.0)
    assert "ETA" not in html and ">tiny-q4.gguf<" in html and 'title="/models/deep/tiny-q4.gguf"' in html


def test_elapsed_seconds_from_status_times():
    assert elapsed_seconds(st("RUNNING", extra={"created": 100.0}), now=130.0) == 30.0
    done = st("SUCCEEDED", extra={"created": 100.0, "updated": 112.5})
    assert elapsed_seconds(done, now=999.0) == 12.5  # frozen at the end
    iso = st("SUCCEEDED", extra={"create_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T00:01:30Z"})
    assert elapsed_seconds(iso) == 90.0
    assert elapsed_seconds(st("RUNNING"), since=None) is None
    assert elapsed_seconds(st("RUNNING"), since=50.0, now=60.0) == 10.0


# ------------------------------------------------------------------ detection
def test_in_kernel_like_tqdm(monkeypatch):
    assert display.in_kernel() is False  # pytest is no kernel

    class ZMQInteractiveShell:
        pass

    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))
    fake_ipython = types.SimpleNamespace(get_ipython=ZMQInteractiveShell)
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    assert display.in_kernel() is True
    monkeypatch.setenv("QT_API", "pyqt5")
    assert display.in_kernel() is False  # qtconsole cannot show widgets


def test_make_reporter_per_environment(kernel, monkeypatch):
    job = make_job(Scripted())
    assert isinstance(display.make_reporter(job.label, False), NullReporter)
    reporter = display.make_reporter(job.label, True, cancel=job.cancel)
    assert isinstance(reporter, WidgetReporter) and kernel == [reporter.widget]
    monkeypatch.setattr(display, "in_kernel", lambda: False)
    bar = display.make_reporter(job.label, True)
    assert isinstance(bar, TqdmReporter)
    bar.close(None)


def test_kernel_without_ipywidgets_falls_back_to_tqdm_with_one_warning(kernel, monkeypatch):
    monkeypatch.setattr(display, "_have_widgets", lambda: False)
    monkeypatch.setattr(display, "_warned_no_widgets", False)
    job = make_job(Scripted())
    with pytest.warns(UserWarning, match="pip install ipywidgets"):
        first = display.make_reporter(job.label, True)
    assert isinstance(first, TqdmReporter)
    second = display.make_reporter(job.label, True)  # filterwarnings=error: a second warning would fail here
    assert isinstance(second, TqdmReporter)
    first.close(None)
    second.close(None)
    assert not display.live_display_available()


# ------------------------------------------------------------------ tqdm
def test_tqdm_reporter_shows_counts_state_and_error(capsys):
    bar = TqdmReporter(LABEL)
    bar.update(st("RUNNING", 10, 4, 1))
    bar.update(st("RUNNING", 10, 4, 1))  # unchanged: not redrawn
    bar.close(st("FAILED", 10, 6, 1, error="engine error: boom"))
    err = capsys.readouterr().err
    assert "5/10" in err and "running:" in err and "1 failed" in err
    assert "7/10" in err and "failed:" in err and "\nerror: engine error: boom" in err
    assert err.count("5/10") == 1



def test_tqdm_bar_fits_80_columns_and_its_rate_counts_only_rows_seen_finishing(monkeypatch):
    import io

    monkeypatch.setenv("COLUMNS", "80")  # tqdm's width where the stream is no terminal
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    label = JobLabel("local-20261130-101500-ab12cd", "local", "/home/me/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    bar = TqdmReporter(label)
    clock = [1000.0]
    bar._bar._time = lambda: clock[0]  # tqdm's own clock, so that the rate is exact
    bar.update(st("RUNNING", 10_000, 7000, 3))  # as after attach: 7003 rows were done before watching
    clock[0] += 10
    bar.update(st("RUNNING", 10_000, 7100, 3))
    lines = [line for line in out.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    assert lines[0] == f"local:SmolLM2-135M-Instruct.Q4_1.gguf  job {label.id}"  # details before the bar
    drawn = lines[-1]
    assert all(len(line) <= 80 for line in lines[1:]), lines
    # 100 rows in 10 s, and 2897 rows to go: not 7103 rows in 10 s
    assert drawn.startswith("running:") and "7103/10000" in drawn and "10.00row/s" in drawn, drawn
    assert "<04:49" in drawn and "3 failed" in drawn, drawn
    bar.close(None)


# ------------------------------------------------------------------ widget
def test_widget_updates_and_final_state_stays_visible():
    cancels: list[int] = []
    reporter = WidgetReporter(LABEL, cancel=lambda: cancels.append(1), show=False)
    assert 'data-state="connecting"' in reporter.html
    reporter.update(st("RUNNING", 60, 10, 0, extra={"created": time.time() - 3}))
    assert 'data-state="running"' in reporter.html and "<b>10</b> / 60 rows" in reporter.html
    assert reporter._controls.layout.display is None  # the Cancel button shows while running
    reporter.close(st("FAILED", 60, 50, 3, error="engine error: out of memory"))
    assert 'data-state="failed"' in reporter.html and "engine error: out of memory" in reporter.html
    assert "<b>53</b> / 60 rows" in reporter.html and "elapsed" in reporter.html
    assert reporter._controls.layout.display == "none"  # nothing to cancel any more
    reporter._button.click()  # a click queued while the cell was busy arrives after the end
    assert cancels == []


def test_widget_rate_and_eta_from_running_snapshots(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(widget.time, "monotonic", lambda: now[0])
    reporter = WidgetReporter(LABEL, show=False)
    reporter.update(st("RUNNING", 60, 0))
    now[0] += 2
    reporter.update(st("RUNNING", 60, 20))
    assert "10.0 rows/s" in reporter.html and "ETA 4.0 s" in reporter.html


def test_cancel_button_calls_the_callback_once_and_shows_cancelling():
    cancels: list[int] = []
    reporter = WidgetReporter(LABEL, cancel=lambda: cancels.append(1), show=False)
    reporter.update(st("RUNNING", 60, 10))
    reporter._button.click()
    assert cancels == [1] and reporter._button.disabled and reporter._button.description == "Cancelling…"
    reporter.update(st("CANCELLING", 60, 12))
    reporter.close(st("CANCELLED", 60, 12, error="cancelled by the user"))
    assert 'data-state="cancelled"' in reporter.html and "cancelled by the user" in reporter.html


def test_cancel_failure_is_shown_not_raised():
    def boom() -> None:
        raise RuntimeError("permission denied")

    reporter = WidgetReporter(LABEL, cancel=boom, show=False)
    reporter.update(st("RUNNING", 60, 10))
    reporter._button.click()
    assert "cancel failed: RuntimeError: permission denied" in reporter.html
    assert not reporter._button.disabled


def test_no_cancel_button_without_callback_and_blocking_hint():
    assert WidgetReporter(LABEL, show=False)._controls.layout.display == "none"
    reporter = WidgetReporter(LABEL, cancel=lambda: None, blocking=True, show=False)
    reporter.update(st("RUNNING", 60, 1))
    assert "Interrupt the kernel" in reporter._hint.value
    reporter.set_blocking(False)
    assert reporter._hint.value == ""


# ------------------------------------------------------------------ poller
def test_poller_stops_when_the_job_ends_and_closes_the_reporter():
    script = iter([st("QUEUED"), st("RUNNING", 60, 30), st("SUCCEEDED", 60, 60)])
    reporter = WidgetReporter(LABEL, cancel=lambda: None, show=False)
    poller = Poller(lambda: next(script), reporter, interval=0.01, name="pdbatch-poll-test").start()
    poller.join(5)
    assert not poller.running and reporter.final
    assert 'data-state="succeeded"' in reporter.html and "60 succeeded" in reporter.html


def test_poller_stops_when_the_widget_is_closed():
    calls: list[int] = []

    def fetch() -> JobStatus:
        calls.append(1)
        return st("RUNNING", 60, len(calls))

    reporter = WidgetReporter(LABEL, show=False)
    poller = Poller(fetch, reporter, interval=30, name="pdbatch-poll-test").start()
    while not calls:
        time.sleep(0.01)
    started = time.monotonic()
    reporter.widget.close()  # wakes the thread from its 30 s sleep at once
    poller.join(5)
    assert not poller.running and time.monotonic() - started < 5


def test_poller_stop_and_repeated_errors():
    reporter = WidgetReporter(LABEL, show=False)
    poller = Poller(lambda: st("RUNNING"), reporter, interval=30, name="pdbatch-poll-test").start()
    poller.stop()
    assert not poller.running

    def broken() -> JobStatus:
        raise ConnectionError("network is unreachable")

    reporter = WidgetReporter(LABEL, show=False)
    poller = Poller(broken, reporter, interval=0.01, name="pdbatch-poll-test").start()
    poller.join(5)
    assert not poller.running and "stopped updating: ConnectionError: network is unreachable" in reporter.html


# ------------------------------------------------------------------ BatchJob wiring
def test_wait_feeds_the_reporter_from_its_poll_loop(kernel):
    backend = Scripted([st("QUEUED", 3), st("RUNNING", 3, 1), st("SUCCEEDED", 3, 2, 1)])
    job = make_job(backend)
    job.wait(poll=0.01)
    (widget,) = kernel
    html = widget.children[0].value
    assert 'data-state="succeeded"' in html and "2 succeeded" in html and "1 failed" in html
    assert job.poller is None  # blocking wait: nothing left running


def test_wait_timeout_in_kernel_hands_the_widget_to_a_poller(kernel):
    backend = Scripted([st("RUNNING", 3, 0)] * 20 + [st("SUCCEEDED", 3, 3)])
    job = make_job(backend)
    with pytest.raises(JobTimeoutError):
        job.wait(timeout=0.05, poll=0.01)
    assert job.poller is not None
    job.poller.join(10)
    assert not job.poller.running
    assert 'data-state="succeeded"' in kernel[0].children[0].value


def test_submit_in_kernel_starts_a_poller_that_stops_at_the_end(kernel, monkeypatch):
    monkeypatch.setattr(Scripted, "poll_seconds", 0.01)  # the backend's own pace, read by the job
    backend = Scripted([st("QUEUED", 3), st("RUNNING", 3, 1), st("SUCCEEDED", 3, 3)])
    frame = pd.DataFrame({"review": ["good", "bad", "fine"]})
    job = frame.llama.submit("{review}", backend=backend)
    assert job.poller is not None and len(kernel) == 1
    job.poller.join(10)
    assert not job.poller.running
    assert 'data-state="succeeded"' in kernel[0].children[0].value


def test_submit_outside_a_kernel_or_without_progress_shows_nothing(kernel, monkeypatch):
    frame = pd.DataFrame({"review": ["good"]})
    job = frame.llama.submit("{review}", backend=Scripted(), progress=False)
    assert job.poller is None and kernel == []
    monkeypatch.setattr(display, "in_kernel", lambda: False)
    assert frame.llama.submit("{review}", backend=Scripted()).poller is None


def test_display_cancel_button_cancels_through_the_job(kernel):
    backend = Scripted([st("RUNNING", 3, 1)])
    job = make_job(backend)
    job.display(poll=0.01)
    reporter_widget = kernel[0]
    while 'data-state="running"' not in reporter_widget.children[0].value:
        time.sleep(0.01)
    button = reporter_widget.children[1].children[0]
    button.click()
    assert backend.cancelled
    job.poller.join(10)
    html = reporter_widget.children[0].value
    assert not job.poller.running and 'data-state="cancelled"' in html and "cancelled by the user" in html


def test_display_outside_a_kernel_waits_with_a_bar(capsys):
    job = make_job(Scripted([st("RUNNING", 3, 1), st("SUCCEEDED", 3, 3)]))
    job.display(poll=0.01)
    assert job.done and job.poller is None
    assert "3/3" in capsys.readouterr().err


def test_reprs():
    job = make_job(Scripted([st("RUNNING", 3, 1, 1, extra={"created": time.time() - 5})]))
    assert "status not fetched" in repr(job)
    html = job._repr_html_()
    assert 'data-state="running"' in html and "<b>2</b> / 3 rows" in html and "elapsed" in html
    assert "job.display()" in html
    assert repr(job) == f"<BatchJob {job.id} scripted:scripted-model running, 2/3 rows (1 failed)>"


def test_repr_html_does_not_raise_when_the_backend_does():
    backend = Scripted([st("RUNNING", 3, 1)])
    job = make_job(backend)
    job.refresh()

    def down(job_id: str) -> JobStatus:
        raise ConnectionError("service unavailable")

    backend.status = down  # type: ignore[method-assign]
    html = job._repr_html_()
    assert "could not fetch the status: ConnectionError: service unavailable" in html
    assert 'data-state="running"' in html  # the last status seen


# ------------------------------------------------------------------ rows, not requests (issue 24, item 3)
def test_progress_names_rows_merged_as_duplicates_and_answered_from_the_cache(capsys):
    from pdbatch.backends import Mock
    from pdbatch.display.reporter import RowCounts

    frame = pd.DataFrame({"t": [f"text {i % 60}" for i in range(120)]})  # 60 distinct rows, each twice
    job = frame.llama.submit("{t}", backend=Mock(), temperature=0)
    assert job.rows == RowCounts(rows=120, sent=60, merged=60, cached=0, skipped=0)
    panel = status_html(job.label, job.refresh())
    assert "<b>60</b> / 60 sent" in panel and "60/60 rows" not in panel and "/ 60 rows" not in panel
    assert "120 rows: 60 sent, 60 merged as duplicates, 0 answered from the cache" in panel
    assert job.result().attrs["pdbatch_rows"]["merged"] == 60
    assert repr(job).endswith("succeeded, 60/60 sent; 120 rows: 60 sent, 60 merged as duplicates, "
                              "0 answered from the cache>"), repr(job)
    bar = TqdmReporter(job.label)
    bar.close(job.refresh())
    err = capsys.readouterr().err
    assert "120 rows: 60 sent, 60 merged as duplicates" in err and "60/60" in err and "request" in err, err

    # answered entirely from the cache: no "0 / 0 rows", the rows are named
    again = frame.llama.batch_predict("{t}", backend=Mock(), temperature=0, progress=True)
    assert again.attrs["pdbatch_rows"] == {"rows": 120, "sent": 0, "merged": 0, "cached": 120, "skipped": 0}
    err = capsys.readouterr().err
    assert "no job" in err and "120 rows: nothing sent, 0 merged as duplicates, 120 answered from the cache" in err
    assert "0/0" not in err, err
    label = JobLabel(id="", backend="mock", model="mock-chat", rows=RowCounts(120, 0, 0, 120))
    panel = status_html(label, JobStatus(state="JOB_STATE_SUCCEEDED", total=0))
    assert "0 / 0" not in panel and "120 answered from the cache" in panel and "nothing to send" in panel
    assert "width:100.00%" in panel  # a full bar: every row is answered


def test_cli_summary_says_how_rows_were_answered(tmp_path, capsys):
    from pdbatch.cli.commands import main

    path = tmp_path / "in.csv"
    pd.DataFrame({"t": ["x", "y", "x", "x"]}).to_csv(path, index=False)
    args = ["run", str(path), "--prompt", "{t}", "--backend", "mock", "--temperature", "0", "-q", "-o",
            str(tmp_path / "out.csv")]
    assert main(args) == 0
    assert "4 rows, 4 answered, 0 failed" in (err := capsys.readouterr().err) and \
        "(2 sent, 2 merged as duplicates, 0 answered from the cache)" in err, err
    assert main(args) == 0
    assert "(nothing sent, 0 merged as duplicates, 4 answered from the cache)" in capsys.readouterr().err
