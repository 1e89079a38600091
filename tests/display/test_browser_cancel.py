"""Cancel a job from its panel while ``batch_predict`` holds the cell, in real JupyterLab under headless Chromium.

A long ``batch_predict`` runs on the local engine; the test clicks **Cancel
job** on the live panel, then reads off the page that the job ended
``cancelled`` and that the cell ended with ``JobError`` saying how to get the
answered rows. The screenshot goes to
``tests/screenshots/cancel-while-waiting.screenshot.png`` (git-ignored; a copy
is kept as ``docs/cancel-while-waiting.png``).
"""

from __future__ import annotations

import contextlib

import nbformat
import pytest

from tests.display.test_browser import (
    CHROMIUM_ARGS,
    ERROR_OUTPUT,
    RUN_TIMEOUT_S,
    RUNNING_PANEL,
    SCREENSHOTS,
    run_all_cells,
)
from tests.display.test_browser import chromium as _chromium
from tests.display.test_browser import jupyterlab as _jupyterlab

pytestmark = [pytest.mark.browser, pytest.mark.slow]
chromium, jupyterlab = _chromium, _jupyterlab

CELLS = [
    "import pandas as pd, pdbatch",
    'df = pd.DataFrame({"topic": [f"subject number {i}" for i in range(48)]})\n'
    'out = df.llama.batch_predict("Write a long essay about {topic}.", max_tokens=400, temperature=0)',
]

ENDED = f"""() => {{
    const error = ({ERROR_OUTPUT})();
    const panel = document.querySelector(".jp-Notebook .pdbatch-widget .pdbatch-status");
    const state = panel && panel.getAttribute('data-state');
    return !!error && state !== 'running' && {{error, state}};
}}"""


def test_cancel_while_batch_predict_waits(chromium, jupyterlab, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import sync_playwright

    base, token = jupyterlab
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in CELLS],
        # a notebook without a kernelspec makes JupyterLab ask which kernel to start
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(notebook, tmp_path / "root" / "cancel.ipynb")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            run_all_cells(page, base, token, "cancel.ipynb")

            seen = page.wait_for_function(RUNNING_PANEL, timeout=RUN_TIMEOUT_S * 1000, polling=100).json_value()
            assert seen["error"] is None, seen["error"][-3000:]
            assert seen["cancel"] and "Interrupt the kernel" not in seen["hint"], seen
            panel = page.locator(".jp-Notebook .pdbatch-widget").nth(seen["index"])
            panel.locator("button", has_text="Cancel job").click()

            ended = page.wait_for_function(ENDED, timeout=RUN_TIMEOUT_S * 1000, polling=200).json_value()
            assert ended["state"] == "cancelled", ended
            error = " ".join(ended["error"].split())
            assert "JobError" in error and "was cancelled from its panel" in error, error[-3000:]
            assert "result(partial=True)" in error and "retry_failed" in error, error[-3000:]
            # the panel says so too, and has nothing left to cancel
            assert "cancelled" in (panel.locator(".pdbatch-status").text_content() or "").lower()
            assert page.evaluate("""() => [...document.querySelectorAll('.jp-Notebook .pdbatch-widget button')]
                .every(b => getComputedStyle(b.parentElement).display === 'none')""")
            with contextlib.suppress(PlaywrightTimeoutError):
                # the cell: the panel, cancelled, and the JobError under it (its message last)
                page.locator(".jp-Notebook .jp-CodeCell").nth(1).screenshot(
                    path=SCREENSHOTS / "cancel-while-waiting.screenshot.png", timeout=10_000)
        except BaseException:
            with contextlib.suppress(Exception):
                page.screenshot(path=SCREENSHOTS / "failure-cancel.screenshot.png")
                print(page.locator(".jp-Notebook").text_content()[-5000:])
            raise
        finally:
            browser.close()
