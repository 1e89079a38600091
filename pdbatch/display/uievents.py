"""Jupyter widget events while a cell blocks, so that the panel's Cancel button works during ``wait()``.

A kernel's main shell handles one message at a time: while a cell runs, a
click on a widget waits in the queue until the cell ends. A blocking wait
therefore hands the queue's widget messages to the kernel itself, between
status checks (:func:`ui_events`, :func:`pause`):

- **ipykernel 6 and 7.0**: jupyter-ui-poll's ``ui_events``, which runs the
  kernel's ``do_one_iteration`` and holds back cells run meanwhile, to replay
  them once this one ends.
- **ipykernel 7.1 and later** have no ``do_one_iteration`` any more (there,
  jupyter-ui-poll 1.1's call fails silently and a click still waits: its issue
  #54). A shell channel thread receives every message and hands the main
  shell's to the main thread through an inproc socket; :class:`_MainShellQueue`
  reads that socket, dispatches widget messages (``comm_*``) at once, the way
  ipykernel itself dispatches them during an async cell, and gives every other
  message (a cell run meanwhile) back to the kernel, in order, when the wait ends.

Elsewhere (no kernel, another thread, a kernel of another make) there is
nothing to process and :func:`ui_events` yields None: the panel then says to
interrupt the kernel instead.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["pause", "ui_events"]

log = logging.getLogger(__name__)

#: Seconds between two looks at the queue while a wait sleeps: a click is
#: acted on within this long, and an idle look costs a few microseconds.
STEP = 0.1
_COMM = frozenset({"comm_open", "comm_msg", "comm_close"})


@contextlib.contextmanager
def ui_events() -> Iterator[Callable[[], None] | None]:
    """Process the kernel's widget messages while the calling cell blocks.

    Yields
    ------
    callable or None
        ``process()``, to call often while blocking (each call handles what
        arrived since the last); None where nothing can be processed: not in
        a Jupyter kernel, not on the kernel's main thread, or a kernel this
        module does not know how to reach.
    """
    kernel = _kernel()
    if kernel is None or threading.current_thread() is not threading.main_thread():
        yield None
        return
    if hasattr(kernel, "do_one_iteration"):  # ipykernel < 7.1
        from jupyter_ui_poll import ui_events as _ui_poll

        with _ui_poll() as poll:
            yield lambda: poll(10)
        return
    queue = _MainShellQueue.of(kernel)
    if queue is None:
        yield None
        return
    try:
        yield queue.process
    finally:
        queue.close()


def pause(seconds: float, process: Callable[[], None] | None, until: Callable[[], bool] | None = None) -> None:
    """Sleep ``seconds``, processing widget messages every :data:`STEP`; return early once ``until()`` holds.

    Parameters
    ----------
    seconds : float
        How long to wait at most.
    process : callable or None
        From :func:`ui_events`; None sleeps plainly.
    until : callable, optional
        Checked after each processing (e.g. "Cancel was clicked").
    """
    if process is None:
        time.sleep(max(0.0, seconds))
        return
    end = time.monotonic() + seconds
    while True:
        process()
        if until is not None and until():
            return
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(STEP, left))


def _kernel() -> Any:
    from .choose import in_kernel

    if not in_kernel():
        return None
    try:
        from IPython import get_ipython

        return getattr(get_ipython(), "kernel", None)
    except Exception:  # a half-imported IPython: nothing to process
        return None


class _MainShellQueue:
    """The main shell's queue of an ipykernel >= 7.1, read while a cell blocks."""

    def __init__(self, kernel: Any, socket: Any) -> None:
        self._kernel = kernel
        self._socket = socket
        self._held: list[Any] = []
        self._broken = False

    @classmethod
    def of(cls, kernel: Any) -> _MainShellQueue | None:
        """The queue of ``kernel``, or None when it is not laid out as ipykernel 7.1+ lays it out."""
        try:
            pair = kernel.shell_channel_thread.manager.get_shell_channel_to_subshell_pair(None)
            dispatch = inspect.signature(kernel.dispatch_shell).parameters
            if "concurrent" not in dispatch or not callable(kernel.shell_main):
                return None
            return cls(kernel, pair.to_socket)
        except Exception:  # another layout: nothing to process, the panel says to interrupt instead
            return None

    def process(self) -> None:
        """Dispatch the widget messages that arrived; keep the others for later."""
        if self._broken:
            return
        try:
            while self._socket.poll(0):
                frames = self._socket.recv_multipart(copy=False)
                if self._msg_type(frames) in _COMM:
                    self._dispatch(frames)
                else:
                    self._held.append(frames)
        except Exception:
            # An ipykernel that changed under us: stop reading rather than break
            # the kernel; what was held is still handed back by close().
            self._broken = True
            log.warning("pdbatch: cannot process widget events while waiting; interrupt the kernel "
                        "to get the notebook back", exc_info=True)

    def _msg_type(self, frames: list[Any]) -> str | None:
        session = self._kernel.session
        try:
            _, msg = session.feed_identities(frames, copy=False)
            return str(session.deserialize(msg, content=False, copy=False)["header"]["msg_type"])
        except Exception:  # ipykernel's own markers (b"stop aborting") and anything odd: not ours to handle
            return None

    def _dispatch(self, frames: list[Any]) -> None:
        # As ipykernel dispatches comms while an async cell holds the shell:
        # concurrently, and with the cell's parent put back afterwards, so
        # that the cell's later output still goes to the cell.
        kernel = self._kernel
        parent, ident = kernel.get_parent("shell"), kernel._parent_ident["shell"]
        coro = kernel.dispatch_shell(frames, None, concurrent=True)
        try:
            coro.send(None)
        except StopIteration:
            pass
        else:  # a widget handler that awaits: it cannot run inside a blocked cell
            coro.close()
            log.warning("pdbatch: a widget message needed the event loop and was dropped while waiting")
        finally:
            kernel.set_parent(ident, parent, channel="shell")

    def close(self) -> None:
        """Hand the messages kept back to the kernel, in their order, to run after this cell."""
        kernel = self._kernel
        for frames in self._held:
            kernel.io_loop.add_callback(kernel.shell_main, None, frames)
        self._held.clear()
