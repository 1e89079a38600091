"""How a job shows itself: one line for ``repr``, the frozen status panel for Jupyter's rich display.

Both read only the job's public face (``id``, ``backend``, ``model``, ``rows``,
``label``, ``refresh``), so that any job handle shows the same way.
"""

from __future__ import annotations

from typing import Any

from ..backends.base import JobStatus
from ..display.choose import live_display_available
from ..display.reporter import elapsed_seconds, short_state
from ..display.widget import status_html

__all__ = ["html", "show_live", "text"]


def show_live(job: Any, progress: bool) -> None:
    """After a submit: in Jupyter, the live status widget (updated from a thread while the notebook goes on).

    Elsewhere nothing: there is nothing to show without blocking.
    """
    if progress and live_display_available():
        job.display()


def text(job: Any, st: JobStatus | None) -> str:
    """``<BatchJob id backend:model state, done/total rows>`` for the last status seen (``st``)."""
    if st is None:
        return f"<BatchJob {job.id} {job.backend.name}:{job.model} (status not fetched: job.refresh())>"
    state = short_state(st.state)
    rows = job.rows
    unit = "sent" if rows is not None and rows.reused else "rows"  # requests, when some rows were not sent
    counts = f", {st.finished}/{st.total if st.total is not None else '?'} {unit}"
    if st.failed:
        counts += f" ({st.failed} failed)"
    if rows is not None and rows.reused:
        counts += f"; {rows.describe()}"
    return f"<BatchJob {job.id} {job.backend.name}:{job.model} {state}{counts}>"


def html(job: Any) -> str:
    """A frozen copy of the live panel; ``job.display()`` brings the live one back."""
    try:
        st: JobStatus | None = job.refresh()
        note = None if st is not None and st.done else "a snapshot: job.display() shows it live"
    except Exception as exc:  # a repr must not raise: show the last status and why it is stale
        st = job.last_status
        note = f"could not fetch the status: {type(exc).__name__}: {exc}"
    return status_html(job.label, st, elapsed=elapsed_seconds(st) if st is not None else None, note=note)
