"""Widget clicks reach a cell that blocks in pdbatch's wait: a real ipykernel, driven as a frontend drives it.

The client sends what JupyterLab sends for a button click (a ``comm_msg``
with ``{"method": "custom", "content": {"event": "click"}}``) while the cell
blocks; without processing, the click waits until the cell ends.
"""

from __future__ import annotations

import queue
import time

import pytest

pytestmark = pytest.mark.slow

jupyter_client = pytest.importorskip("jupyter_client")

BLOCKING_CELL = r"""
import time, ipywidgets as w
from IPython.display import display
from pdbatch.display.uievents import pause, ui_events
clicked = []
button = w.Button(description="Cancel job")
button.on_click(lambda _: clicked.append(time.monotonic()))
display(button)
print("MODEL", button.model_id, flush=True)
start = time.monotonic()
{loop}
print("RESULT", "clicked" if clicked else "not clicked", flush=True)
"""
WITH_EVENTS = """with ui_events() as process:
    assert process is not None, "ipykernel's queue was not found"
    while not clicked and time.monotonic() - start < {limit}:
        pause(1.0, process, until=lambda: bool(clicked))"""
WITHOUT = """while not clicked and time.monotonic() - start < {limit}:
    time.sleep(0.1)"""


@pytest.fixture
def kernel():
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3")
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _click_while_blocked(kc, loop: str) -> dict[str, list[tuple[str, str]]]:
    """Run the blocking cell; once its button shows, queue a second cell and click the button.

    Returns each cell's output texts with the parent message they were sent under.
    """
    first = kc.execute(BLOCKING_CELL.replace("{loop}", loop))
    second = None
    out: dict[str, list[tuple[str, str]]] = {"first": [], "second": [], "other": []}
    idle: set[str] = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (second and {first, second} <= idle):
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        parent = msg["parent_header"].get("msg_id")
        where = "first" if parent == first else "second" if parent == second else "other"
        if msg["msg_type"] == "stream":
            text = msg["content"]["text"].strip()
            out[where].append((text, msg["parent_header"].get("msg_type", "")))
            if text.startswith("MODEL") and second is None:
                second = kc.execute("print('SECOND', clicked and 'after the click')")
                click = kc.session.msg("comm_msg", {"comm_id": text.split()[1],
                                                    "data": {"method": "custom", "content": {"event": "click"}}})
                kc.shell_channel.send(click)
        elif msg["msg_type"] == "error":
            out[where].append(("ERROR " + msg["content"]["evalue"], ""))
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle" and parent:
            idle.add(parent)
    return out


def test_a_click_reaches_a_cell_blocked_in_pause(kernel):
    out = _click_while_blocked(kernel, WITH_EVENTS.format(limit=30))
    assert ("RESULT clicked", "execute_request") in out["first"], out
    # the cell sent meanwhile waited for the first to end, then ran, and saw the click
    assert out["second"] == [("SECOND after the click", "execute_request")], out


def test_without_processing_the_click_waits_for_the_cell(kernel):
    # what ui_events fixes: the same cell, sleeping plainly, never sees the click
    out = _click_while_blocked(kernel, WITHOUT.format(limit=4))
    assert ("RESULT not clicked", "execute_request") in out["first"], out
