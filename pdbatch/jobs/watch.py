"""Watching a job: the one poll loop, run by ``BatchJob.wait`` and by the thread behind the Jupyter widget.

:func:`watch` asks for a status snapshot every ``interval`` seconds, hands it
to a reporter (:mod:`pdbatch.display.reporter`), retries a failed status check a few
times, and returns when the job ended (or paused, or the time is up, or the
display was closed). What a snapshot is, including restarting a local job
whose worker died, is the job's business: the loop is handed ``fetch``.
:class:`Poller` runs the same loop on a daemon thread, so the widget keeps
updating after ``submit`` or an interrupted ``wait`` returned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..backends.base import JobStatus
from ..display.reporter import Reporter
from ..errors import BackendError, PdbatchError

__all__ = ["MAX_POLL_ERRORS", "Poller", "follow", "watch"]

#: Status checks failing in a row before the loop gives up: a network blip is
#: retried, a job whose folder was deleted is not polled until the kernel dies.
MAX_POLL_ERRORS = 5


def watch(
    fetch: Callable[[], JobStatus],
    reporter: Reporter,
    interval: float,
    *,
    deadline: float | None = None,
    stop: threading.Event | None = None,
    paused_ends: bool = False,
    closed_ends: bool = True,
    between: Callable[[float], None] | None = None,
) -> JobStatus | None:
    """Poll ``fetch`` and feed ``reporter`` until the job ends; return the last snapshot.

    Parameters
    ----------
    fetch : callable
        Returns the job's status now (``BatchJob`` passes its refresh, which
        also restarts a job whose worker died: see ``JobStatus.resumable``).
    reporter : Reporter
        Receives every snapshot, and a note when a check fails.
    interval : float
        Seconds between status checks.
    deadline : float, optional
        A ``time.monotonic()`` value: return the last snapshot once it is reached.
    stop : threading.Event, optional
        Set from another thread to end the loop (it also cuts the sleep short).
    paused_ends : bool
        Return as soon as the job is ``JOB_STATE_PAUSED`` (it would not move
        until someone resumes it on the service).
    closed_ends : bool
        Return once ``reporter.closed`` (nobody sees the display any more):
        what a background thread wants, not a blocking ``wait``.
    between : callable, optional
        **The hook between two polls.** ``between(seconds)`` is called instead
        of sleeping and must return after about ``seconds``. The default
        sleeps (or waits on ``stop``). A blocking ``wait()`` in Jupyter can
        pass a function that processes the kernel's pending UI events
        meanwhile, so that the widget's Cancel button works while the cell
        is blocked.

    Returns
    -------
    JobStatus or None
        The last snapshot (terminal unless the loop was stopped, timed out or
        paused); None if none was fetched before it stopped.

    Raises
    ------
    Exception
        The last error of :data:`MAX_POLL_ERRORS` failed checks in a row, or
        at once a pdbatch error that retrying cannot mend (a damaged job
        folder, an unknown job); a :class:`~pdbatch.errors.BackendError` or a
        network error is retried. The reporter was told first.
    """
    status: JobStatus | None = None
    errors = 0
    while not (stop is not None and stop.is_set()) and not (closed_ends and reporter.closed):
        try:
            status = fetch()
        except Exception as exc:
            errors += 1
            final = errors >= MAX_POLL_ERRORS or (isinstance(exc, PdbatchError) and not isinstance(exc, BackendError))
            verb = "stopped updating" if final else "status check failed, retrying"
            reporter.note(f"{verb}: {type(exc).__name__}: {exc}")
            if final:
                raise
        else:
            errors = 0
            reporter.update(status)
            if status.done or (paused_ends and status.state == "JOB_STATE_PAUSED"):
                return status
        delay = interval
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return status
            delay = min(interval, left)
        if between is not None:
            between(delay)
        elif stop is not None:
            stop.wait(delay)
        else:
            time.sleep(delay)
    return status


class Poller:
    """A daemon thread running :func:`watch` until the job ends, then closing the reporter.

    It also stops when :meth:`stop` is called, when the reporter is closed
    (the widget's comm went away), or when status checks keep failing (the
    reporter shows why).

    Parameters
    ----------
    fetch : callable
        Returns the job's status now.
    reporter : Reporter
        Where snapshots go.
    interval : float
        Seconds between status checks.
    name : str
        The thread's name (``pdbatch-poll-<job id>``).
    """

    def __init__(self, fetch: Callable[[], JobStatus], reporter: Reporter, interval: float,
                 name: str = "pdbatch-poll") -> None:
        self._fetch = fetch
        self._reporter = reporter
        self._interval = interval
        self._stop = threading.Event()
        self._last: JobStatus | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
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

    def _fetch_and_keep(self) -> JobStatus:
        self._last = self._fetch()
        return self._last

    def _run(self) -> None:
        try:
            watch(self._fetch_and_keep, self._reporter, self._interval, stop=self._stop)
        except Exception:  # shown on the panel by watch: a thread's traceback goes nowhere visible
            pass
        finally:
            self._reporter.close(self._last)


def follow(reporter: Reporter, fetch: Callable[[], JobStatus], interval: float, name: str) -> Poller:
    """Keep ``reporter`` updated from a background :class:`Poller` (after ``submit``, or an interrupted ``wait``).

    Parameters
    ----------
    reporter : Reporter
        Usually the widget.
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
    reporter.set_blocking(False)
    return Poller(fetch, reporter, interval, name=name).start()
