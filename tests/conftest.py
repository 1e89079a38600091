"""Shared fixtures: every test gets its own PDBATCH_HOME, so jobs never leak between tests."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

import pdbatch
from pdbatch import config

pytest_plugins = ["tests.emulators.fixtures"] if os.path.exists(
    os.path.join(os.path.dirname(__file__), "emulators", "fixtures.py")
) else []


@pytest.fixture(scope="session")
def converted_models(tmp_path_factory):
    """One folder of converted model weights for the whole run (271 MB per model)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def pdbatch_home(tmp_path, monkeypatch, converted_models):
    """A fresh jobs folder per test, and no session settings carried over.

    The 16-bit weights the local engine converts once are shared by every
    test (a link), as they are by every job of a user.
    """
    home = tmp_path / "pdbatch-home"
    home.mkdir(mode=0o700)  # as pdbatch makes it: a home others can write is warned about, whatever the umask
    (home / "models").symlink_to(converted_models, target_is_directory=True)
    monkeypatch.setenv("PDBATCH_HOME", str(home))
    monkeypatch.delenv("PDBATCH_BACKEND", raising=False)
    config.reset()
    yield home
    config.reset()


@pytest.fixture(autouse=True)
def no_leftover_workers(pdbatch_home):
    """Kill, at the end of each test, the local workers whose job folder is under its PDBATCH_HOME.

    A worker is detached on purpose (a job outlives its kernel), so a test that
    fails or ends before its job would otherwise leave it running for up to an
    hour, loading a shared machine until other tests time out. The test's own
    PDBATCH_HOME counts too when it set another one.
    """
    yield
    homes = {pdbatch_home, Path(os.environ.get("PDBATCH_HOME") or pdbatch_home)}
    kill_workers_under(*homes)


def kill_workers_under(*homes: Path, wait: float = 10.0) -> list[int]:
    """SIGKILL every worker under ``homes`` and wait (up to ``wait`` s) until they are gone; their pids.

    Scanned again after each kill: a ``launch`` process may have started its
    ``run`` worker between the scan and the kill.
    """
    killed: list[int] = []
    deadline = time.monotonic() + wait
    while pids := [p for home in homes for p in workers_under(home)]:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # ended on its own meanwhile
                os.kill(pid, signal.SIGKILL)
            if pid not in killed:
                killed.append(pid)
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return killed


def workers_under(home: Path) -> list[int]:
    """Live ``pdbatch.engine.worker`` processes whose command line names a folder under ``home``.

    The worker's command line carries its job folder as an absolute, resolved
    path (``pdbatch.engine.worker.command``). A zombie (killed, not yet reaped
    by whoever adopted it) is dead already.
    """
    root = str(home.resolve()) + os.sep
    found = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):  # gone, or not ours to read
            continue
        if state != b"Z" and b"pdbatch.engine.worker" in argv and \
                any(a.decode(errors="replace").startswith(root) for a in argv):
            found.append(int(entry.name))
    return found


@pytest.fixture
def reviews() -> pd.DataFrame:
    """The sixty bundled product reviews."""
    return pdbatch.builders.datasets.reviews()
