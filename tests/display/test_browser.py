"""The quickstart notebook in real JupyterLab, driven by headless Chromium.

Starts JupyterLab on 127.0.0.1 (a free port, a token, a temporary PDBATCH_HOME
and a temporary copy of the notebook, so the repository's copy stays without
outputs), runs every cell, and reads the page: the status widgets rendered,
reached ``succeeded`` and show the row counts. Screenshots go to
``tests/screenshots/*.screenshot.png`` (git-ignored) for a person to look at.

Needs Debian's ``chromium`` and the ``test`` extra: ``tests/setup_browser.sh``.
Playwright drives that binary; it never downloads a browser.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
SCREENSHOTS = Path(os.environ.get("PDBATCH_SCREENSHOT_DIR", ROOT / "tests" / "screenshots"))
# Each job takes seconds on an idle machine; a shared, busy one can be ten times slower.
RUN_TIMEOUT_S = float(os.environ.get("PDBATCH_BROWSER_TIMEOUT", 720))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
]


@pytest.fixture
def chromium() -> str:
    """Debian's chromium, or a skip (only when PDBATCH_ALLOW_SKIP=1) or a failure saying how to install it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    message = "chromium is not installed: run tests/setup_browser.sh (apt-get install -y chromium)"
    if os.environ.get("PDBATCH_ALLOW_SKIP") == "1":
        pytest.skip(message)
    pytest.fail(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path) -> Iterator[tuple[str, str]]:
    """A JupyterLab server serving a copy of the quickstart notebook: yields (base url, token)."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "PDBATCH_HOME": str(tmp_path / "pdbatch-home"),
        # Keep the user's Jupyter settings, workspaces and runtime files out of it.
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
    }
    env.pop("PDBATCH_BACKEND", None)
    # Answer JupyterLab's "get notified about news?" question beforehand: no toast over the page.
    notification = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    log = open(tmp_path / "jupyterlab.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            # The test reaches the app's command registry instead of clicking menus.
            "--LabApp.expose_app_in_browser=True",
            # No network: no news feed, no update check.
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            # Containers and CI runners often run tests as root.
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'jupyterlab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, token
    finally:
        # SIGINT twice is how jupyter server shuts down cleanly (kernels included).
        for _ in range(2):
            if server.poll() is None:
                server.send_signal(signal.SIGINT)
                time.sleep(0.5)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()


# Each wait also ends at the first error output, so that a broken cell fails the test at once
# instead of leaving the remaining cells unrun until the timeout.
ERROR_OUTPUT = """() => [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')]
    .map(e => e.textContent).find(t => t.includes('Traceback')) || null"""

ALL_CELLS_RAN = f"""() => {{
    const error = ({ERROR_OUTPUT})();
    if (error) return {{error}};
    const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
        .map(e => e.textContent.trim());
    return prompts.length > 0 && prompts.every(t => /^\\[\\d+\\]:$/.test(t)) && {{error: null}};
}}"""

RUNNING_PANEL = f"""() => {{
    const error = ({ERROR_OUTPUT})();
    if (error) return {{error}};
    const widgets = [...document.querySelectorAll('.jp-Notebook .pdbatch-widget')];
    const index = widgets.findIndex(w => w.querySelector(".pdbatch-status[data-state='running']"));
    if (index < 0) return false;
    const button = [...widgets[index].querySelectorAll('button')].find(b => b.textContent.includes('Cancel job'));
    const controls = button && button.parentElement;
    return {{
        error: null,
        index,
        cancel: !!button && !button.disabled && getComputedStyle(controls).display !== 'none',
        hint: controls ? controls.textContent : '',
    }};
}}"""

KERNEL_IDLE = """() => {
    const app = window.jupyterapp;
    const panel = app && app.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle';
}"""


def run_all_cells(page, base: str, token: str, name: str) -> None:
    """Open the notebook ``name``, wait for its kernel, and start running every cell (not awaited)."""
    page.set_default_timeout(120_000)
    page.goto(f"{base}/lab/tree/{name}?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell")
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)
    # Not awaited: the command's promise settles only once every cell has run.
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def test_quickstart_in_jupyterlab(chromium, jupyterlab):
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import sync_playwright

    base, token = jupyterlab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            run_all_cells(page, base, token, NOTEBOOK.name)

            # While the first job runs, its panel updates live and offers Cancel. Read in one
            # evaluation, so the job cannot end between looking at the state and at the button.
            seen = page.wait_for_function(RUNNING_PANEL, timeout=RUN_TIMEOUT_S * 1000, polling=100).json_value()
            assert seen["error"] is None, seen["error"][-3000:]
            assert seen["cancel"], seen
            # the cell waits, and the click still reaches the kernel (uievents): no advice to interrupt it first
            assert "Interrupt the kernel" not in seen["hint"], seen
            with contextlib.suppress(PlaywrightTimeoutError):  # only a picture for people
                page.locator(".jp-Notebook .pdbatch-widget").nth(seen["index"]).screenshot(
                    path=SCREENSHOTS / "quickstart-running.screenshot.png", timeout=10_000
                )
            ran = page.wait_for_function(ALL_CELLS_RAN, timeout=RUN_TIMEOUT_S * 1000, polling=1000).json_value()
            assert ran["error"] is None, ran["error"][-3000:]
            # The cells ran; the last one shows the finished job's frozen panel.
            outputs = page.locator(".jp-Notebook .jp-OutputArea-output")
            text = "\n".join(outputs.all_text_contents())
            assert "Traceback" not in text, text[-3000:]

            widgets = page.locator(".jp-Notebook .pdbatch-widget")
            # classify, summarize, embed, the failed row, submit
            assert widgets.count() == 5, page.locator(".jp-Notebook").inner_text()[-3000:]
            states = [w.locator(".pdbatch-status").get_attribute("data-state") for w in widgets.all()]
            assert states == ["succeeded"] * 5
            # textContent, not innerText: JupyterLab skips rendering cells scrolled out of view.
            counts = [" ".join((w.locator(".pdbatch-counts").text_content() or "").split()) for w in widgets.all()]
            assert counts[0].startswith("12 / 12 rows · 12 succeeded · 0 failed"), counts[0]
            assert counts[2].startswith("60 / 60 rows · 60 succeeded"), counts[2]
            # the row over the context window is held back before sending (as preview says): 3 sent, 1 not
            assert counts[3].startswith("3 / 3 rows · 3 succeeded · 0 failed"), counts[3]
            rows_line = " ".join((widgets.nth(3).locator(".pdbatch-rows").text_content() or "").split())
            assert rows_line.startswith("4 rows: 3 sent") and "1 skipped" in rows_line, rows_line
            assert all("elapsed" in c for c in counts)
            # A finished job has nothing left to cancel.
            assert page.evaluate("""() => [...document.querySelectorAll('.jp-Notebook .pdbatch-widget button')]
                .every(b => getComputedStyle(b.parentElement).display === 'none')""")
            assert page.locator(".jp-Notebook .pdbatch-status[data-state='succeeded']").count() >= 6  # + the repr

            widgets.first.scroll_into_view_if_needed()
            page.screenshot(path=SCREENSHOTS / "quickstart-page.screenshot.png")
            widgets.first.screenshot(path=SCREENSHOTS / "quickstart-widget.screenshot.png")
            widgets.nth(3).screenshot(path=SCREENSHOTS / "quickstart-failed-row.screenshot.png")
        except BaseException:
            # What the page showed when it went wrong, for whoever reads the failure.
            with contextlib.suppress(Exception):
                page.screenshot(path=SCREENSHOTS / "failure.screenshot.png")
                print(page.locator(".jp-Notebook").text_content()[-5000:])
            raise
        finally:
            browser.close()
