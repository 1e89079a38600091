"""Live job status: an ipywidgets panel in a Jupyter kernel, a tqdm bar elsewhere.

The poll loop in :meth:`pdbatch.BatchJob.wait` (or, after ``submit`` returns, a
:class:`Poller` thread) calls a reporter with each new
:class:`~pdbatch.backends.JobStatus`; a reporter never calls the backend. The
only thing it can ask of the job is the ``cancel`` callback it was handed.

Everything the panel shows is rendered by :func:`status_html` from a status
snapshot, so it can be checked without a browser (``WidgetReporter.html``),
and ``BatchJob._repr_html_`` shows the same panel, frozen.
"""

from __future__ import annotations

import html
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .backends.base import JobStatus
    from .job import BatchJob

__all__ = [
    "JobLabel",
    "NullReporter",
    "Poller",
    "Reporter",
    "TqdmReporter",
    "WidgetReporter",
    "elapsed_seconds",
    "follow",
    "in_kernel",
    "live_display_available",
    "make_reporter",
    "short_state",
    "status_html",
]

# One colour per state, so a glance at the panel says how the job is doing.
STATE_COLOURS = {
    "queued": "#5f6368",
    "pending": "#5f6368",
    "unspecified": "#5f6368",
    "paused": "#5f6368",
    "updating": "#5f6368",
    "running": "#1a73e8",
    "succeeded": "#188038",
    "partially succeeded": "#b06000",
    "failed": "#d93025",
    "cancelling": "#e8710a",
    "cancelled": "#e8710a",
    "expired": "#80868b",
}
SUCCEEDED_COLOUR = "#34a853"
FAILED_COLOUR = "#ea4335"
# A poller gives up after this many status checks in a row raised: a job whose
# folder was deleted would otherwise be polled until the kernel dies.
MAX_POLL_ERRORS = 5

_warned_no_widgets = False


@dataclass(frozen=True)
class JobLabel:
    """What a reporter shows about a job besides its status (no backend handle).

    Attributes
    ----------
    id : str
        The job id.
    backend : str
        The backend's registry name (``"local"``, ``"vertex"``).
    model : str
        The model as written in the requests.
    """

    id: str
    backend: str
    model: str

    @classmethod
    def of(cls, job: BatchJob) -> JobLabel:
        """The label of a :class:`~pdbatch.BatchJob`."""
        return cls(id=job.id, backend=job.backend.name, model=job.model)

    @property
    def model_short(self) -> str:
        """The model name without a folder: a local ``.gguf`` path is long and says little."""
        return os.path.basename(self.model) if self.model.endswith(".gguf") else self.model


class Reporter(Protocol):
    """Receives status snapshots while a job runs.

    ``update`` is called with every new snapshot, ``close`` once at the end
    (with the last snapshot seen, ``None`` if none). ``live`` is True for a
    display that can go on updating after the blocking call returns (the
    widget), so that an interrupted ``wait`` hands it over to a :class:`Poller`.
    """

    live: bool

    def update(self, status: JobStatus) -> None: ...

    def close(self, status: JobStatus | None) -> None: ...


# ----------------------------------------------------------------- detection
def in_kernel() -> bool:
    """True inside a Jupyter kernel that can show widgets, detected as ``tqdm.autonotebook`` does.

    Returns
    -------
    bool
        True in JupyterLab, Notebook, VS Code, Colab and JupyterLite; False in
        a terminal, a script, IPython, jupyter-console, qtconsole and Spyder.
    """
    try:
        if "ipykernel.zmqshell" in sys.modules:
            if any(k == "QT_API" or k.startswith("SPYDER") for k in os.environ):
                return False
            shell = sys.modules["IPython"].get_ipython()
            name = type(shell).__name__.lower()
            return shell is not None and "qt" not in name and "spyder" not in name
        return "IPython.utils._process_emscripten" in sys.modules
    except Exception:  # a half-imported IPython: play safe, as tqdm does
        return False


def _have_widgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def live_display_available() -> bool:
    """True when a live, non-blocking widget can be shown (a kernel with ipywidgets).

    Returns
    -------
    bool
    """
    return in_kernel() and _have_widgets()


def make_reporter(
    job: BatchJob,
    progress: bool,
    *,
    cancel: Callable[[], None] | None = None,
    blocking: bool = True,
) -> Reporter:
    """The reporter for this environment: nothing, a tqdm bar, or (in Jupyter) the widget.

    Parameters
    ----------
    job : BatchJob
        Only its id, backend name and model are read.
    progress : bool
        False shows nothing.
    cancel : callable, optional
        Called by the widget's Cancel button (``job.cancel``).
    blocking : bool
        Whether the cell is blocked in ``wait`` while the reporter is fed; the
        widget then says how to get the notebook back.

    Returns
    -------
    Reporter
    """
    if not progress:
        return NullReporter()
    label = JobLabel.of(job)
    if in_kernel():
        if _have_widgets():
            return WidgetReporter(label, cancel=cancel, blocking=blocking)
        global _warned_no_widgets
        if not _warned_no_widgets:
            _warned_no_widgets = True
            warnings.warn(
                "pdbatch shows job progress as a live widget in Jupyter, but ipywidgets is not "
                "installed; using a text bar instead. Install it with: pip install ipywidgets",
                UserWarning,
                stacklevel=3,
            )
    return TqdmReporter(label)


# ----------------------------------------------------------------- rendering
def short_state(state: str) -> str:
    """``"JOB_STATE_PARTIALLY_SUCCEEDED"`` -> ``"partially succeeded"``.

    Parameters
    ----------
    state : str
        A Vertex-style state name.

    Returns
    -------
    str
    """
    return state.removeprefix("JOB_STATE_").replace("_", " ").lower()


def _epoch(value: Any) -> float | None:
    # Backends report times as epoch seconds (local), datetimes or RFC 3339
    # strings (Vertex); anything else is not a time we can use.
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def elapsed_seconds(status: JobStatus, *, since: float | None = None, now: float | None = None) -> float | None:
    """Seconds the job has run: from its creation to now, or to its end once it ended.

    Parameters
    ----------
    status : JobStatus
        Its ``extra`` may carry ``created``/``create_time`` and
        ``ended``/``end_time``/``updated``/``update_time``.
    since : float, optional
        Epoch seconds to count from when the status has no creation time.
    now : float, optional
        The current time (epoch seconds); for tests.

    Returns
    -------
    float or None
        None when no start time is known.
    """
    extra = status.extra or {}
    start = _epoch(extra.get("created")) or _epoch(extra.get("create_time")) or since
    if start is None:
        return None
    end = now if now is not None else time.time()
    if status.done:
        for key in ("ended", "end_time", "updated", "update_time"):
            t = _epoch(extra.get(key))
            if t is not None:
                end = t
                break
    return max(0.0, end - start)


def _duration(seconds: float) -> str:
    s = round(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def status_html(
    label: JobLabel,
    status: JobStatus | None,
    *,
    elapsed: float | None = None,
    rate: float | None = None,
    eta: float | None = None,
    note: str | None = None,
) -> str:
    """The status panel as an HTML fragment (what the widget and ``_repr_html_`` show).

    Parameters
    ----------
    label : JobLabel
        Backend, model and job id.
    status : JobStatus or None
        The last snapshot; None before the first one arrived.
    elapsed : float, optional
        Seconds since the job was created.
    rate : float, optional
        Rows per second.
    eta : float, optional
        Seconds left at that rate.
    note : str, optional
        A line of small print (e.g. that status checks fail).

    Returns
    -------
    str
        A ``<div class="pdbatch-status" data-state="...">`` whose parts carry
        the classes ``pdbatch-state``, ``pdbatch-bar``, ``pdbatch-counts``,
        ``pdbatch-error`` and ``pdbatch-console``.
    """
    state = short_state(status.state) if status else "connecting"
    colour = STATE_COLOURS.get(state, "#5f6368")
    muted = "color:var(--jp-ui-font-color2,#5f6368)"
    parts = [
        f'<div class="pdbatch-status" data-state="{_esc(state)}" style="font-family:var(--jp-ui-font-family,'
        f"system-ui,sans-serif);font-size:13px;line-height:1.6;max-width:680px;padding:8px 12px;"
        f'border:1px solid var(--jp-border-color2,#dadce0);border-left:4px solid {colour};border-radius:6px">',
        '<div style="display:flex;flex-wrap:wrap;align-items:center;gap:8px">',
        # The backend's own state name on hover: what its docs and console call it.
        f'<span class="pdbatch-state" title="{_esc(status.state if status else "")}" style="background:{colour};'
        f'color:#fff;border-radius:10px;padding:0 9px;font-weight:600">{_esc(state)}</span>',
        f'<span><b>{_esc(label.backend)}</b> · <code title="{_esc(label.model)}">{_esc(label.model_short)}</code>'
        "</span>",
        f'<span class="pdbatch-id" style="margin-left:auto;{muted}">job <code>{_esc(label.id)}</code></span>',
        "</div>",
    ]
    total = status.total if status else None
    done = status.finished if status else 0
    ok = status.succeeded if status else 0
    bad = status.failed if status else 0
    if total:
        ok_pct, bad_pct = 100 * ok / total, 100 * bad / total
    else:  # unknown total: an empty track until the job tells us
        ok_pct = bad_pct = 0.0
    parts.append(
        '<div class="pdbatch-bar" style="display:flex;height:10px;margin:6px 0 4px;border-radius:5px;'
        f'overflow:hidden;background:var(--jp-layout-color3,#e8eaed)" title="{done} of {total or "?"} rows">'
        f'<div style="width:{ok_pct:.2f}%;background:{SUCCEEDED_COLOUR}"></div>'
        f'<div style="width:{bad_pct:.2f}%;background:{FAILED_COLOUR}"></div></div>'
    )
    counts = [f"<b>{done}</b> / {total if total is not None else '?'} rows"]
    counts.append(f'<span style="color:{STATE_COLOURS["succeeded"]}">{ok} succeeded</span>')
    counts.append(f'<span style="color:{STATE_COLOURS["failed"] if bad else "inherit"}">{bad} failed</span>')
    timing = []
    if elapsed is not None:
        timing.append(f"{_duration(elapsed)} elapsed")
    if rate:
        timing.append(f"{rate:.1f} rows/s" if rate >= 1 else f"{60 * rate:.1f} rows/min")
    if eta is not None and status is not None and not status.done:
        timing.append(f"ETA {_duration(eta)}")
    line = " · ".join(counts)
    if timing:
        line += f' <span style="{muted}">· ' + " · ".join(timing) + "</span>"
    parts.append(f'<div class="pdbatch-counts">{line}</div>')
    if status is not None and status.error:
        parts.append(
            f'<div class="pdbatch-error" style="color:{STATE_COLOURS["failed"]};white-space:pre-wrap;'
            f'max-height:12em;overflow:auto">{_esc(status.error)}</div>'
        )
    if status is not None and status.console_url:
        parts.append(
            f'<div><a class="pdbatch-console" href="{_esc(status.console_url)}" target="_blank" '
            f'rel="noopener noreferrer">Open in the Cloud console ↗</a></div>'
        )
    if note:
        parts.append(f'<div class="pdbatch-note" style="{muted};font-size:12px">{_esc(note)}</div>')
    parts.append("</div>")
    return "".join(parts)


class _Clock:
    """Elapsed time, rate and ETA from the snapshots seen (backends report counts only)."""

    def __init__(self) -> None:
        self._first_seen = time.time()
        self._start: tuple[float, int] | None = None  # (monotonic time, rows) when first seen running
        self.rate: float | None = None

    def observe(self, status: JobStatus) -> None:
        now = time.monotonic()
        if status.state == "JOB_STATE_RUNNING":
            # Measure from the first running snapshot: the time a worker spends
            # loading the model (or Vertex spends queueing) is not throughput.
            if self._start is None or status.finished < self._start[1]:
                self._start = (now, status.finished)
            elif status.finished > self._start[1] and now - self._start[0] >= 0.5:
                self.rate = (status.finished - self._start[1]) / (now - self._start[0])

    def figures(self, status: JobStatus) -> dict[str, float | None]:
        elapsed = elapsed_seconds(status, since=self._first_seen)
        rate, eta = self.rate, None
        if status.done:
            # Overall throughput, model loading included: what the job cost.
            rate = status.finished / elapsed if elapsed and status.finished else None
        elif rate and status.total is not None:
            eta = max(0, status.total - status.finished) / rate
        return {"elapsed": elapsed, "rate": rate, "eta": eta}


# ----------------------------------------------------------------- reporters
class NullReporter:
    """``progress=False``: show nothing."""

    live = False

    def update(self, status: JobStatus) -> None:
        pass

    def close(self, status: JobStatus | None) -> None:
        pass


class TqdmReporter:
    """A tqdm bar of rows done / total for terminals and scripts.

    The job's backend, model and id go on a line of their own before the
    bar: in an 80-column terminal a label that long squeezed the rate, the
    ETA and the state out of the bar. The bar's label is the state
    (``running``), the postfix the failures. Rate and ETA count only rows
    finished while this bar watched a running job: a job attached to with
    thousands of rows done does not show millions of rows per second.
    """

    live = False

    def __init__(self, label: JobLabel) -> None:
        # tqdm.std, not tqdm.auto: this is the text bar, also where widgets are missing.
        from tqdm.std import tqdm

        print(f"{label.backend}:{label.model_short}  job {label.id}", file=sys.stderr, flush=True)
        self._bar = tqdm(total=None, desc="connecting", unit="row", file=sys.stderr, dynamic_ncols=True)
        self._shown: tuple[Any, ...] = ()
        self._first = True
        self._running = False

    def update(self, status: JobStatus) -> None:
        """Move the bar; it is redrawn only when something changed, so logs stay short."""
        shown = (status.state, status.total, status.succeeded, status.failed, status.error)
        if shown == self._shown:
            return
        self._shown = shown
        bar = self._bar
        if status.total is not None and bar.total != status.total:
            bar.total = status.total
        # tqdm's rate is (n - initial) / (time since start_t): count from the
        # rows done when watching began, and from when the job first ran
        # (a worker loading its model, or a queue, is not throughput)
        if self._first:
            self._first = False
            bar.initial = status.finished
            bar.start_t = bar.last_print_t = bar._time()
        if not self._running and status.state == "JOB_STATE_RUNNING":
            self._running = True
            if status.finished == bar.initial:
                bar.start_t = bar.last_print_t = bar._time()
        bar.n = status.finished
        bar.set_description_str(short_state(status.state), refresh=False)
        bar.set_postfix_str(f"{status.failed} failed" if status.failed else "", refresh=False)
        bar.refresh()

    def close(self, status: JobStatus | None) -> None:
        """Draw the last status, end the bar's line, and print a job error on a line of its own."""
        if status is not None:
            self.update(status)
        self._bar.close()
        if status is not None and status.error and status.done:
            print(f"error: {status.error}", file=sys.stderr, flush=True)


class WidgetReporter:
    """The live panel: state, a bar of rows succeeded and failed, timing, a Cancel button.

    Parameters
    ----------
    label : JobLabel
        Backend, model and job id.
    cancel : callable, optional
        What the Cancel button calls; no button without it.
    blocking : bool
        The cell is blocked in ``wait``: a click would only reach the kernel
        after the job ended, so the panel says to interrupt the kernel first
        (the job goes on, and the panel keeps updating).
    show : bool
        Display the widget now (tests pass False).

    Attributes
    ----------
    widget : ipywidgets.VBox
        The panel.
    html : str
        The panel's HTML as of the last update.
    """

    live = True

    def __init__(
        self,
        label: JobLabel,
        *,
        cancel: Callable[[], None] | None = None,
        blocking: bool = False,
        show: bool = True,
    ) -> None:
        import ipywidgets as w

        self.label = label
        self.status: JobStatus | None = None
        self.final = False
        self._cancel = cancel
        self._blocking = blocking
        self._note: str | None = None
        self._clock = _Clock()
        self._closed_callbacks: list[Callable[[], None]] = []
        self._view = w.HTML(value=status_html(label, None))
        self._button = w.Button(
            description="Cancel job",
            icon="stop",
            tooltip="Stop the job; rows already answered stay (job.result(partial=True))",
            layout=w.Layout(width="auto"),
        )
        self._button.on_click(self._on_cancel)
        self._hint = w.HTML(layout=w.Layout(margin="0 0 0 8px"))
        controls = w.HBox([self._button, self._hint], layout=w.Layout(align_items="center"))
        if cancel is None:
            controls.layout.display = "none"
        self._controls = controls
        self.widget = w.VBox([self._view, controls])
        self.widget.add_class("pdbatch-widget")
        # A closed widget (widget.close(), or its comm closed) has nobody
        # watching: tell the poller to stop.
        self.widget.observe(self._on_comm, names="comm")
        self._render()
        if show:
            from IPython.display import display

            display(self.widget)

    # -------------------------------------------------------------- state
    @property
    def html(self) -> str:
        """The panel's HTML as of the last update (what tests assert on)."""
        return str(self._view.value)

    @property
    def closed(self) -> bool:
        """True once the widget was closed; nothing is shown any more."""
        return self.widget.comm is None

    def on_closed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the widget is closed (a :class:`Poller` stops then)."""
        self._closed_callbacks.append(callback)

    def set_blocking(self, blocking: bool) -> None:
        """Whether the cell is blocked in ``wait`` (changes the hint next to Cancel)."""
        self._blocking = blocking
        self._render()

    # ------------------------------------------------------------ reporter
    def update(self, status: JobStatus) -> None:
        """Show a new snapshot."""
        self.status = status
        self._note = None
        self._clock.observe(status)
        self._render()

    def close(self, status: JobStatus | None) -> None:
        """Freeze the panel on the last snapshot; it stays visible, without the Cancel button once the job ended."""
        if status is not None:
            self.update(status)
        self.final = True
        self._render()

    def note(self, text: str | None) -> None:
        """Show a line of small print under the counts (e.g. a failed status check)."""
        self._note = text
        self._render()

    # ------------------------------------------------------------ internals
    def _render(self) -> None:
        figures = self._clock.figures(self.status) if self.status else {}
        self._view.value = status_html(self.label, self.status, note=self._note, **figures)
        ended = self.status is not None and self.status.done
        if self._cancel is None or ended or (self.final and self.status is None):
            self._controls.layout.display = "none"
            return
        self._controls.layout.display = None
        if self.status is not None and self.status.state == "JOB_STATE_CANCELLING":
            self._button.disabled, self._button.description = True, "Cancelling…"
        if self._blocking:
            self._hint.value = (
                '<span style="color:var(--jp-ui-font-color2,#5f6368);font-size:12px">This cell '
                "waits for the job. Interrupt the kernel (■) to get the notebook back: the job "
                "goes on and this panel keeps updating.</span>"
            )
        elif self.final:
            self._hint.value = (
                '<span style="color:var(--jp-ui-font-color2,#5f6368);font-size:12px">Not updating '
                "any more: job.display() shows a live panel again.</span>"
            )
        else:
            self._hint.value = ""

    def _on_cancel(self, _button: Any) -> None:
        # A click queued while the cell was blocked arrives after the job ended.
        if self._cancel is None or (self.status is not None and self.status.done):
            return
        self._button.disabled, self._button.description = True, "Cancelling…"
        try:
            self._cancel()
        except Exception as exc:  # shown, not raised: a comm handler's traceback goes nowhere visible
            self._button.disabled, self._button.description = False, "Cancel job"
            self.note(f"cancel failed: {type(exc).__name__}: {exc}")

    def _on_comm(self, change: dict[str, Any]) -> None:
        if change["new"] is None:
            for callback in list(self._closed_callbacks):
                callback()


# ----------------------------------------------------------------- poller
class Poller:
    """A daemon thread that feeds a reporter with status snapshots until the job ends.

    It stops when a snapshot is terminal, when :meth:`stop` is called, or when
    the reporter's widget is closed, and then closes the reporter. The thread
    asks ``fetch`` for snapshots; the reporter still never calls the backend.

    Parameters
    ----------
    fetch : callable
        Returns the job's status now (``BatchJob.refresh``, plus resuming a
        dead local worker).
    reporter : Reporter
        Where snapshots go.
    interval : float
        Seconds between status checks.
    name : str
        The thread's name (``pdbatch-poll-<job id>``).
    """

    def __init__(
        self, fetch: Callable[[], JobStatus], reporter: Reporter, interval: float, name: str = "pdbatch-poll"
    ) -> None:
        self._fetch = fetch
        self._reporter = reporter
        self._interval = interval
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        if isinstance(reporter, WidgetReporter):
            reporter.on_closed(self._stop.set)

    def start(self) -> Poller:
        """Start the thread; returns ``self``."""
        self.thread.start()
        return self

    @property
    def running(self) -> bool:
        """True while the thread is alive."""
        return self.thread.is_alive()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the thread to stop and wait for it (at most ``timeout`` seconds: a status call in flight)."""
        self._stop.set()
        if self.thread is not threading.current_thread() and self.thread.ident is not None:
            self.thread.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (the job to end, or :meth:`stop`)."""
        self.thread.join(timeout)

    def _run(self) -> None:
        status: JobStatus | None = None
        errors = 0
        try:
            while not self._stop.is_set():
                if isinstance(self._reporter, WidgetReporter) and self._reporter.closed:
                    break
                try:
                    status = self._fetch()
                except Exception as exc:
                    # A failed status check (network blip, quota) is shown and retried;
                    # only a run of them stops the poller.
                    errors += 1
                    if isinstance(self._reporter, WidgetReporter):
                        verb = "stopped updating" if errors >= MAX_POLL_ERRORS else "status check failed, retrying"
                        self._reporter.note(f"{verb}: {type(exc).__name__}: {exc}")
                    if errors >= MAX_POLL_ERRORS:
                        break
                else:
                    errors = 0
                    self._reporter.update(status)
                    if status.done:
                        break
                self._stop.wait(self._interval)
        finally:
            self._reporter.close(status)


def follow(reporter: Reporter, fetch: Callable[[], JobStatus], interval: float, name: str) -> Poller:
    """Keep ``reporter`` updated from a background :class:`Poller` (after ``submit``, or an interrupted ``wait``).

    Parameters
    ----------
    reporter : Reporter
        Usually a :class:`WidgetReporter`.
    fetch : callable
        Returns the job's status now.
    interval : float
        Seconds between status checks.
    name : str
        The thread's name.

    Returns
    -------
    Poller
        Already started.
    """
    if isinstance(reporter, WidgetReporter):
        reporter.set_blocking(False)
    return Poller(fetch, reporter, interval, name=name).start()
