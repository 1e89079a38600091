"""Which display a job gets: nothing, a tqdm bar in terminals and scripts, or the widget in Jupyter.

Detection follows ``tqdm.autonotebook``. The displays only render what the
poll loop (:mod:`pdbatch.jobs.watch`) hands them; see :mod:`pdbatch.display.reporter`
for what they are handed and :mod:`pdbatch.display.widget` for the Jupyter panel.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .reporter import JobLabel, NullReporter, Reporter, short_state
from .widget import WidgetReporter

if TYPE_CHECKING:
    from ..backends.base import JobStatus

__all__ = ["TqdmReporter", "in_kernel", "live_display_available", "make_reporter"]

_warned_no_widgets = False


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
    label: JobLabel,
    progress: bool,
    *,
    cancel: Callable[[], None] | None = None,
    blocking: bool = True,
) -> Reporter:
    """The reporter for this environment: nothing, a tqdm bar, or (in Jupyter) the widget.

    Parameters
    ----------
    label : JobLabel
        The job's id, backend name and model.
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


# ----------------------------------------------------------------- text bar
class TqdmReporter(Reporter):
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

        rows = label.rows
        job = f"job {label.id}" if label.id else "no job"
        # rows merged as duplicates or answered from the cache are not sent: the bar counts requests then
        about = f"  ({rows.describe()})" if rows is not None and (rows.reused or rows.skipped) else ""
        print(f"{label.backend}:{label.model_short}  {job}{about}", file=sys.stderr, flush=True)
        self._bar: Any = None
        if rows is None or rows.sent:
            unit = "request" if rows is not None and rows.reused else "row"
            self._bar = tqdm(total=None, desc="connecting", unit=unit, file=sys.stderr, dynamic_ncols=True)
        self._shown: tuple[Any, ...] = ()
        self._first = True
        self._running = False

    def update(self, status: JobStatus) -> None:
        """Move the bar; it is redrawn only when something changed, so logs stay short."""
        shown = (status.state, status.total, status.succeeded, status.failed, status.error)
        if shown == self._shown or self._bar is None:
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
        if self._bar is not None:
            self._bar.close()
        if status is not None and status.error and status.done:
            print(f"error: {status.error}", file=sys.stderr, flush=True)
