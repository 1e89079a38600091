"""Never pay twice, concurrently: two calls sending the same rows at once send each row once (pdbatch.jobs.claims)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import orjson
import pandas as pd
import pytest

from pdbatch.backends import Mock
from pdbatch.jobs import claims
from pdbatch.store.cache import ResponseCache


class SlowMock(Mock):
    """Mock whose submit takes a while: the other call plans while this one is in flight."""

    def submit(self, files, **kw):
        time.sleep(1.0)
        return super().submit(files, **kw)


def sent(mock: Mock) -> list[str]:
    return [orjson.loads(line)["body"]["messages"][-1]["content"] for lines in mock.submitted for line in lines]


def run_together(*calls, stagger=0.0):
    """Start the calls at one moment (or ``stagger`` s apart), each in a thread; their results (or exceptions)."""
    start = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i, call):
        start.wait()
        time.sleep(i * stagger)
        try:
            results[i] = call()
        except Exception as exc:  # shown by the assertion on the results
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_identical_calls_at_the_same_moment_send_each_row_once(capfd):
    df = pd.DataFrame({"t": ["a", "b", "c", "d"]})
    first, second = SlowMock(), SlowMock()
    outs = run_together(
        lambda: df.llama.batch_predict("{t}", backend=first, temperature=0, progress=False),
        lambda: df.llama.batch_predict("{t}", backend=second, temperature=0, progress=False),
    )
    for out in outs:
        assert isinstance(out, pd.DataFrame), out
        assert out.response.tolist() == ["echo: a", "echo: b", "echo: c", "echo: d"]
    assert sorted(sent(first) + sent(second)) == ["a", "b", "c", "d"]
    assert "waiting for those answers instead of paying for them twice" in capfd.readouterr().err
    with ResponseCache() as store:  # no claim outlives its job
        assert store.use(lambda db: db.execute("SELECT COUNT(*) FROM claims").fetchone()[0], -1) == 0


def test_overlapping_calls_wait_only_for_the_rows_in_flight():
    first, second = SlowMock(), SlowMock()
    outs = run_together(
        lambda: pd.DataFrame({"t": ["a", "b", "c"]}).llama.batch_predict("{t}", backend=first, temperature=0,
                                                                         progress=False),
        lambda: pd.DataFrame({"t": ["b", "c", "d"]}).llama.batch_predict("{t}", backend=second, temperature=0,
                                                                         progress=False),
    )
    assert all(isinstance(o, pd.DataFrame) and o.error.isna().all() for o in outs), [repr(o)[:1500] for o in outs]
    assert sorted(sent(first) + sent(second)) == ["a", "b", "c", "d"]


def test_rows_of_a_job_that_failed_are_sent_by_the_waiting_call():
    df = pd.DataFrame({"t": ["a", "b"]})
    failing, second = SlowMock(final_state="JOB_STATE_FAILED"), SlowMock()
    outs = run_together(
        lambda: df.llama.batch_predict("{t}", backend=failing, temperature=0, progress=False),
        lambda: df.llama.batch_predict("{t}", backend=second, temperature=0, progress=False),
        stagger=0.3,  # the failing job claims first
    )
    answered = [o for o in outs if isinstance(o, pd.DataFrame)]
    assert len(answered) == 1 and answered[0].response.tolist() == ["echo: a", "echo: b"], outs
    # the failed job sent them once, and the waiting call once more: no answer was kept to reuse
    assert sorted(sent(failing) + sent(second)) == ["a", "a", "b", "b"]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def claim_as(keys, pid, job=None):
    """Claims made by another process (a crashed one, when ``pid`` is gone)."""
    with ResponseCache() as store:
        store.use(lambda db: db.execute(claims._SCHEMA), None)
        store.use(lambda db: db.executemany("INSERT INTO claims VALUES (?, 'other', ?, ?, '', 0)",
                                            [(k, job, pid) for k in keys]), None)


def keys_of(df):
    from pdbatch import run
    from pdbatch.call import Call, Options

    p = run.prepare(df, Call(prompt="{t}", params={"temperature": 0}), Mock(), Options())
    return p.part.reuse.keys.tolist()


def test_a_claim_of_a_process_that_died_before_submitting_does_not_block():
    df = pd.DataFrame({"t": ["a", "b"]})
    claim_as(keys_of(df), dead_pid())
    mock = Mock()
    started = time.monotonic()
    out = df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert time.monotonic() - started < 5 and out.error.isna().all()
    assert sorted(sent(mock)) == ["a", "b"]


def test_a_claim_whose_job_cannot_be_found_does_not_block():
    df = pd.DataFrame({"t": ["a", "b"]})
    claim_as(keys_of(df), os.getpid(), job="mock-20990101-gone")
    mock = Mock()
    out = df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert out.error.isna().all() and sorted(sent(mock)) == ["a", "b"]


def test_cache_false_sends_claimed_rows_anyway():
    df = pd.DataFrame({"t": ["a"]})
    claim_as(keys_of(df), os.getpid())  # a live owner that never submits
    mock = Mock()
    df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False, cache=False)
    assert sent(mock) == ["a"]


@pytest.mark.slow
def test_two_processes_on_the_local_engine_send_each_row_once(tmp_path, pdbatch_home):
    # two notebooks: two processes with one PDBATCH_HOME, started together on the same frame
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import os, sys, time
        import pandas as pd
        import pdbatch
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        df = pd.DataFrame({{"t": [f"Say the number {{i}}." for i in range(6)]}})
        out = df.llama.batch_predict("{{t}}", temperature=0, max_tokens=4, progress=False)
        from pdbatch.store import jobdir
        sent = jobdir.folder_for(out.attrs["pdbatch_job"]) / jobdir.REQUESTS  # the lines this call sent
        print(len(sent.read_bytes().splitlines()) if sent.exists() else 0, int(out.error.notna().sum()))
    """)
    env = {**os.environ, "PDBATCH_HOME": str(pdbatch_home), "PYTHONPATH": str(Path(__file__).parents[2])}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(1)
    go.write_text("")
    results = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    counts = [tuple(map(int, out.split())) for out, _ in results]
    assert sum(n for n, _ in counts) == 6, (counts, [err for _, err in results])
    assert all(failed == 0 for _, failed in counts)
