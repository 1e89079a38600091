"""The local worker: never imports from a job folder; one worker and one death count per kill, across processes.

These run the real engine. Processes are released together by a "go" file
once all of them are ready; what is asserted is what each saw, never how long
anything took.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pdbatch.backends import Local
from pdbatch.backends.local import job_dir
from pdbatch.store.jobdir import read_status
from tests.backends.test_local import output_ids, wait_for

pytestmark = pytest.mark.slow


def worker_pids(folder: Path) -> list[int]:
    """Live worker processes (``... pdbatch.engine.worker run <folder>``) of one job."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and b"pdbatch.engine.worker" in argv and b"run" in argv and \
                str(folder.resolve()).encode() in argv:
            pids.append(int(proc.name))
    return pids


def killed_job(df, **kw):
    """A job whose worker was SIGKILLed after it wrote a few rows; returns (job, folder)."""
    job = df.llama.submit("Summarize: {review}", temperature=0, backend=Local(parallel=2), **kw)
    folder = job_dir(job.id)
    wait_for(lambda: read_status(folder)["state"] == "JOB_STATE_RUNNING" and (folder / "output.jsonl").exists()
             and len(output_ids(job.id)) >= 2, timeout=600)
    kill_worker(job, folder)
    return job, folder


def kill_worker(job, folder):
    for pid in worker_pids(folder):
        os.kill(pid, signal.SIGKILL)
    # the kernel drops the worker's lock once it is gone
    wait_for(lambda: job.refresh().stalled and not worker_pids(folder), timeout=60)


def together(tmp_path, code: str, n: int, home: Path) -> list[str]:
    """Run ``code`` in ``n`` fresh Python processes released at once; their last stdout lines."""
    go = tmp_path / "go"
    prelude = (
        "import os, sys, time, pathlib\n"
        "import pdbatch\n"
        f"pathlib.Path(sys.argv[1]).touch()\n"
        f"while not os.path.exists({str(go)!r}):\n"
        "    time.sleep(0.01)\n"
    )
    procs = []
    for i in range(n):
        ready = tmp_path / f"ready-{i}"
        procs.append((ready, subprocess.Popen(
            [sys.executable, "-c", prelude + code, str(ready)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "PDBATCH_HOME": str(home)})))
    wait_for(lambda: all(ready.exists() or p.poll() is not None for ready, p in procs), timeout=300)
    go.touch()
    lines = []
    for _, p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
        lines.append(out.strip().splitlines()[-1])
    return lines


def test_five_waiters_after_a_kill_all_see_the_job_succeed(reviews, pdbatch_home, tmp_path):
    df = reviews.iloc[:16]
    job, folder = killed_job(df, max_tokens=16)
    code = (
        f"job = pdbatch.attach({job.id!r})\n"
        "try:\n"
        "    job.wait(timeout=900, progress=False)\n"
        "    print(job.status.state)\n"
        "except pdbatch.PdbatchError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    seen = together(tmp_path, code, 5, pdbatch_home)
    assert seen == ["JOB_STATE_SUCCEEDED"] * 5, seen
    ids = output_ids(job.id)
    assert len(ids) == len(set(ids)) == len(df), "every row exactly once"
    st = read_status(folder)
    assert st["stalled_restarts"] == 1, "one kill, one death counted"
    assert job.result().error.isna().all()


def test_back_to_back_resumes_leave_exactly_one_worker(reviews, pdbatch_home, tmp_path):
    job, folder = killed_job(reviews.iloc[:40], max_tokens=48)
    try:
        assert [job.resume() for _ in range(4)] == [True, False, False, False]
        assert len(worker_pids(folder)) == 1
        # the same from four processes at once
        kill_worker(job, folder)
        seen = together(tmp_path, f"print(pdbatch.attach({job.id!r}).resume())", 4, pdbatch_home)
        assert sorted(seen) == ["False", "False", "False", "True"], seen
        assert len(worker_pids(folder)) == 1
    finally:
        job.cancel()  # stop the worker this test started
        job.wait(timeout=600, progress=False)
    ids = output_ids(job.id)
    assert len(ids) == len(set(ids)), "no row twice"


def test_modules_planted_in_a_dead_jobs_folder_are_never_imported(reviews, tmp_path):
    job, folder = killed_job(reviews.iloc[:8], max_tokens=8)
    marker = tmp_path / "imported"
    plant = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for name in ("orjson", "numpy", "pandas", "llama_cpp"):
        (folder / f"{name}.py").write_text(plant)
    (folder / "pdbatch").mkdir()
    (folder / "pdbatch" / "__init__.py").write_text(plant)
    assert job.resume()
    cwds = []
    for pid in worker_pids(folder):
        try:
            cwds.append(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            cwds.append("(exited)")
    job.wait(timeout=600, progress=False)
    assert not marker.exists(), f"the worker imported {marker.read_text().split()} from the job folder"
    assert cwds == ["/"], "the worker does not run in the job folder"
    out = job.result()
    assert out.error.isna().all() and len(out) == 8


def test_a_worker_started_by_hand_still_takes_the_lock(reviews, pdbatch_home):
    """``python -P -m pdbatch.engine.worker run FOLDER`` without a lock from its starter locks the file itself."""
    job, folder = killed_job(reviews.iloc[:6], max_tokens=8)
    proc = subprocess.Popen([sys.executable, "-P", "-m", "pdbatch.engine.worker", "run", str(folder)], cwd="/",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: not job.refresh().stalled or proc.poll() is not None, timeout=300)
        assert job.resume() is False, "a live worker holds the lock"
        assert proc.wait(timeout=600) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert job.wait(timeout=60, progress=False).result().error.isna().all()
