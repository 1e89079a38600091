"""The live Jupyter panel: state, a bar of rows succeeded and failed, timing, a Cancel button.

Everything the panel shows is rendered by :func:`status_html` from a status
snapshot, so it can be checked without a browser (``WidgetReporter.html``),
and ``BatchJob._repr_html_`` shows the same panel, frozen. The panel only
renders what the poll loop (:mod:`pdbatch.jobs.watch`) hands it.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .reporter import JobLabel, Reporter, duration, elapsed_seconds, short_state

if TYPE_CHECKING:
    from ..backends.base import JobStatus

__all__ = ["WidgetReporter", "status_html"]

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


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _count(value: Any) -> int | None:
    """A count as a number, or None when it is not a whole number (then it is shown escaped, not counted)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
        the classes ``pdbatch-state``, ``pdbatch-bar``, ``pdbatch-counts``
        (requests), ``pdbatch-rows`` (the frame's rows: sent, merged as
        duplicates, answered from the cache), ``pdbatch-error`` and ``pdbatch-console``.
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
        f'<span class="pdbatch-id" style="margin-left:auto;{muted}">job <code>{_esc(label.id)}</code></span>'
        if label.id else f'<span class="pdbatch-id" style="margin-left:auto;{muted}">no job: nothing to send</span>',
        "</div>",
    ]
    rows = label.rows
    # Counts come from a backend, and a local job's from a file anyone may have edited: only whole
    # numbers are counted; anything else is shown as text, escaped like every other value.
    total = _count(status.total) if status else None
    ok = _count(status.succeeded) if status else 0
    bad = _count(status.failed) if status else 0
    done = ok + bad if ok is not None and bad is not None else None
    if total and ok is not None and bad is not None:
        ok_pct, bad_pct = 100 * ok / total, 100 * bad / total
    elif rows is not None and rows.sent == 0 and status is not None and status.done:
        ok_pct, bad_pct = 100.0, 0.0  # every row answered without sending anything
    else:  # unknown total: an empty track until the job tells us
        ok_pct = bad_pct = 0.0
    shown_total = _esc(status.total) if status and status.total is not None else "?"
    shown_ok = _esc(status.succeeded) if status else "0"
    shown_bad = _esc(status.failed) if status else "0"
    shown_done = "?" if done is None else str(done)
    parts.append(
        '<div class="pdbatch-bar" style="display:flex;height:10px;margin:6px 0 4px;border-radius:5px;'
        f'overflow:hidden;background:var(--jp-layout-color3,#e8eaed)" title="{shown_done} of '
        f'{shown_total if total else "?"} rows">'
        f'<div style="width:{ok_pct:.2f}%;background:{SUCCEEDED_COLOUR}"></div>'
        f'<div style="width:{bad_pct:.2f}%;background:{FAILED_COLOUR}"></div></div>'
    )
    # The job's counts are of requests sent; rows merged as duplicates or answered
    # from the cache are not among them, so then they are named apart, in rows.
    reused = rows is not None and rows.reused
    counts = [f"<b>{shown_done}</b> / {shown_total} {'sent' if reused else 'rows'}"]
    counts.append(f'<span style="color:{STATE_COLOURS["succeeded"]}">{shown_ok} succeeded</span>')
    counts.append(f'<span style="color:{STATE_COLOURS["failed"] if bad else "inherit"}">{shown_bad} failed</span>')
    if rows is not None and rows.sent == 0:
        counts = []
    timing = []
    if elapsed is not None:
        timing.append(f"{duration(elapsed)} elapsed")
    if rate:
        timing.append(f"{rate:.1f} rows/s" if rate >= 1 else f"{60 * rate:.1f} rows/min")
    if eta is not None and status is not None and not status.done:
        timing.append(f"ETA {duration(eta)}")
    line = " · ".join(counts)
    if timing and counts:
        line += f' <span style="{muted}">· ' + " · ".join(timing) + "</span>"
    if counts:
        parts.append(f'<div class="pdbatch-counts">{line}</div>')
    if rows is not None and (reused or rows.skipped):
        parts.append(f'<div class="pdbatch-rows">{_esc(rows.describe())}</div>')
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


# ----------------------------------------------------------------- the widget
class WidgetReporter(Reporter):
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
