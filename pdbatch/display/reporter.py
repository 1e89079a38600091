"""What a status display is handed: a job's label and status snapshots; no job, no backend.

:class:`Reporter` is the base every display derives from (as tqdm's display
classes share ``tqdm``): the poll loop in :mod:`pdbatch.jobs.watch` calls
:meth:`Reporter.update` with each new :class:`~pdbatch.backends.JobStatus` and
:meth:`Reporter.close` at the end; a reporter never calls the backend. The
only thing it can ask of the job is the ``cancel`` callback it was handed.
The text bar and the detection live in :mod:`pdbatch.display.choose`, the Jupyter
panel in :mod:`pdbatch.display.widget`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..backends.base import JobStatus

__all__ = ["JobLabel", "NullReporter", "Reporter", "RowCounts", "duration", "elapsed_seconds", "short_state"]


@dataclass(frozen=True)
class RowCounts:
    """What became of a frame's rows before anything was sent: a job's progress counts requests, not rows.

    ``rows == sent + merged + cached + skipped``.

    Attributes
    ----------
    rows : int
        Rows in the frame.
    sent : int
        Requests sent (one per distinct request not in the cache).
    merged : int
        Rows that repeat the request of a row that is sent: answered with it.
    cached : int
        Rows answered from the response cache (repeats of a cached row included).
    skipped : int
        Rows not sent for another reason (a null field with ``on_null="skip"``).
    """

    rows: int
    sent: int
    merged: int = 0
    cached: int = 0
    skipped: int = 0

    @classmethod
    def from_record(cls, record: Any) -> RowCounts | None:
        """Read :meth:`record` back (from a job folder: anything else gives None)."""
        try:
            counts = cls(**{k: int(record[k]) for k in ("rows", "sent", "merged", "cached", "skipped")})
        except (TypeError, KeyError, ValueError):
            return None
        return counts

    def record(self) -> dict[str, int]:
        """As saved in a job's manifest and in a result's ``attrs["pdbatch_rows"]``."""
        return {"rows": self.rows, "sent": self.sent, "merged": self.merged, "cached": self.cached,
                "skipped": self.skipped}

    @property
    def reused(self) -> bool:
        """True when some rows were not sent because their answer was at hand."""
        return bool(self.merged or self.cached)

    def describe(self) -> str:
        """``"120 rows: 60 sent, 60 merged as duplicates, 0 answered from the cache"``."""
        parts = [f"{self.sent} sent" if self.sent else "nothing sent"]
        parts.append(f"{self.merged} merged as duplicates")
        parts.append(f"{self.cached} answered from the cache")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        return f"{self.rows} rows: " + ", ".join(parts)


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
    rows : RowCounts, optional
        The frame's rows: sent, merged as duplicates, answered from the cache.
    """

    id: str
    backend: str
    model: str
    #: what became of the frame's rows (None: not known, e.g. a job saved by an older pdbatch)
    rows: RowCounts | None = None

    @property
    def model_short(self) -> str:
        """The model name without a folder: a local ``.gguf`` path is long and says little."""
        return os.path.basename(self.model) if self.model.endswith(".gguf") else self.model


class Reporter:
    """Receives status snapshots while a job runs; this base shows nothing (``progress=False``).

    ``update`` is called with every new snapshot, ``close`` once at the end
    (with the last snapshot seen, ``None`` if none). The other methods let
    the poll loop talk to a display that can do more; their defaults do nothing.

    Attributes
    ----------
    live : bool
        True for a display that can go on updating after the blocking call
        returns (the widget), so that an interrupted ``wait`` hands it over to
        a background :class:`~pdbatch.jobs.watch.Poller`.
    """

    live = False

    def update(self, status: JobStatus) -> None:
        """Show a new snapshot."""

    def close(self, status: JobStatus | None) -> None:
        """The loop ended: show the last snapshot for good."""

    def note(self, text: str | None) -> None:
        """Show a line of small print, e.g. that a status check failed and is retried."""

    @property
    def closed(self) -> bool:
        """True once nobody can see the display any more: the loop feeding it stops."""
        return False

    def on_closed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the display is closed (wakes a sleeping background loop)."""

    def set_blocking(self, blocking: bool) -> None:
        """Whether a cell is blocked in ``wait`` while this display is fed."""


class NullReporter(Reporter):
    """``progress=False``: show nothing."""


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


def duration(seconds: float) -> str:
    """A duration as people read it: ``"4.2 s"``, ``"3:07"``, ``"1:02:03"``."""
    s = round(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
