"""A test that fails while its local job runs leaves no worker behind (the autouse fixture in conftest.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the real engine runs the inner test's job

HERE = Path(__file__).resolve().parent


def alive(pid: int) -> bool:
    """Running, not a zombie (a killed worker is adopted by whoever reaps orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def test_a_failed_tests_worker_is_killed_at_its_end(tmp_path, converted_models):
    pid_file = tmp_path / "worker.pid"
    env = {**os.environ, "PDBATCH_TEST_MODELS": str(converted_models), "PDBATCH_TEST_PID_FILE": str(pid_file)}
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--basetemp", str(tmp_path / "inner"),
         str(HERE / "leftover_worker_case.py")],
        cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=900,
    )
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    try:
        assert "1 failed" in inner.stdout and "this test fails with its job still running" in inner.stdout, \
            inner.stdout[-3000:] + inner.stderr[-2000:]
        assert pid is not None
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if alive(pid) else b""
        assert not alive(pid), f"worker {pid} outlived its test: {cmdline!r}"
    finally:  # never leave it running for an hour, whatever failed above
        if pid is not None and alive(pid) and b"pdbatch.engine.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
