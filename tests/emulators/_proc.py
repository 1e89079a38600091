"""Shared helpers for emulators that run as subprocesses."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where setup.sh puts the venvs; overridable so a shared install can be reused.
EMULATORS_DIR = Path(os.environ.get("PDBATCH_EMULATORS_DIR", REPO_ROOT / ".emulators"))
SETUP_HINT = "run `bash tests/emulators/setup.sh` to install the emulators"


class EmulatorNotInstalled(RuntimeError):
    """The emulator's venv or binary is missing (setup.sh was not run)."""


def free_port() -> int:
    """A port that was free a moment ago (the usual small race is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(path: Path) -> Path:
    if not path.exists():
        raise EmulatorNotInstalled(f"{path} not found: {SETUP_HINT}")
    return path


class Process:
    """A subprocess in its own process group, logging to a temp file.

    Its own group so that stop() also kills any children it forked (uvicorn
    workers, for instance) and a Ctrl-C in pytest does not reach it first.
    """

    def __init__(self, argv: list[str], name: str, env: dict | None = None):
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)  # noqa: SIM115  (closed in stop())
        self.popen = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, **(env or {})},
        )

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return Path(self.log.name).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        """Poll url until it answers 2xx; fail early if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.popen.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if 200 <= r.status < 300:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout} s at {url}:\n{self.log_tail()}")

    def stop(self, grace: float = 5.0) -> None:
        if self.popen.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.popen.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.popen.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)
