"""The command line: in-process on the Mock backend, and once end to end on the local engine."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import Mock
from pdbatch.cli.commands import main


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "in.csv"
    pd.DataFrame({"id": ["a", "b", "c"], "t": ["x", "y", "x"]}).to_csv(path, index=False)
    return path


def test_run_writes_joined_table_and_exit_code(table, tmp_path, capsys):
    out = tmp_path / "out.parquet"
    code = main(["run", str(table), "--prompt", "{t}", "--backend", "mock", "-o", str(out), "--custom-id", "id",
                 "--temperature", "0", "-q"])
    assert code == 0
    res = pd.read_parquet(out)
    assert res.response.tolist() == ["echo: x", "echo: y", "echo: x"] and res.id.tolist() == ["a", "b", "c"]
    assert "3 rows, 3 answered, 0 failed" in capsys.readouterr().err


def test_submit_status_wait_results_jobs_cancel(table, tmp_path, capsys):
    assert main(["submit", str(table), "--prompt", "{t}", "--backend", "mock", "--no-cache"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert job_id.startswith("mock-")
    assert main(["status", job_id]) == 0 and "JOB_STATE_SUCCEEDED  3/3 rows" in capsys.readouterr().out
    assert main(["status", job_id, "--json"]) == 0 and '"state":"JOB_STATE_SUCCEEDED"' in capsys.readouterr().out
    assert main(["wait", job_id, "-q"]) == 0
    out = tmp_path / "r.jsonl"
    assert main(["results", job_id, "-o", str(out)]) == 0
    assert pd.read_json(out, lines=True).response.tolist()[1] == "echo: y"
    capsys.readouterr()
    assert main(["jobs"]) == 0 and job_id in capsys.readouterr().out
    assert main(["cancel", job_id]) == 0
    assert main(["results", job_id]) == 3, "a cancelled job's results need --partial"
    assert main(["results", job_id, "--partial", "-o", str(out)]) == 0


def test_exit_codes_for_bad_usage_and_missing_jobs(table, capsys):
    assert main(["status", "local-20990101-000000-abcdef"]) == 4
    assert main(["run", "missing.csv", "--prompt", "{t}", "--backend", "mock"]) == 2
    assert "does not exist" in capsys.readouterr().err
    for command in ("run", "submit"):  # not "give --prompt": the file is what is wrong
        assert main([command, "missing.jsonl"]) == 2
        assert "input file 'missing.jsonl' does not exist" in capsys.readouterr().err
    assert main(["run", str(table), "--prompt", "{nope}", "--backend", "mock"]) == 2
    assert "is not a column" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["run", str(table)])
    assert info.value.code == 2
    assert main(["cache", "clear"]) == 0


@pytest.mark.slow
def test_pdbatch_run_on_the_local_engine(tmp_path, pdbatch_home):
    data = tmp_path / "reviews.jsonl"
    pd.DataFrame({"review": ["Great!", "Awful."]}).to_json(data, orient="records", lines=True)
    out = tmp_path / "out.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "pdbatch.cli", "run", str(data), "--prompt", "One word: {review}", "--max-tokens", "4",
         "--temperature", "0", "-o", str(out), "-q"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PDBATCH_HOME": str(pdbatch_home)})
    assert proc.returncode == 0, proc.stderr
    res = pd.read_csv(out)
    assert res.response.notna().all() and len(res) == 2


@pytest.mark.slow
def test_ctrl_c_while_waiting_leaves_the_job_running_and_prints_no_traceback(tmp_path, pdbatch_home):
    data = tmp_path / "reviews.jsonl"
    pd.DataFrame({"review": [f"Review number {i}." for i in range(400)]}).to_json(data, orient="records", lines=True)
    env = {**os.environ, "PDBATCH_HOME": str(pdbatch_home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdbatch.cli", "run", str(data), "--prompt", "Say something about {review}",
         "--max-tokens", "64", "-o", str(tmp_path / "out.csv")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # as from a terminal: a child inherits an ignored SIGINT (earlier tests in this
        # process may leave it ignored), and Python then installs no handler for Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not list((pdbatch_home / "jobs").glob("*/manifest.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # in wait() by now
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # failed: reap it, so that its pipes do not fail a later test
            proc.kill()
            proc.communicate()
    job_id = next((pdbatch_home / "jobs").glob("*/manifest.json")).parent.name
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert job_id in err and "goes on running" in err and f"pdbatch cancel {job_id}" in err
    # the command line's words, said once: no Python advice, no second "interrupted" line
    assert f"pdbatch wait {job_id}" in err and f"pdbatch results {job_id}" in err, err
    assert "pdbatch.attach" not in err and "job.cancel()" not in err, err
    assert err.count("interrupted") == 1, err
    assert subprocess.run([sys.executable, "-m", "pdbatch.cli", "cancel", job_id], env=env, capture_output=True,
                          timeout=60).returncode == 0


class CtrlC(Mock):
    """A job that runs until its second status check, during which the user presses Ctrl-C."""

    name = "ctrl-c"
    poll_seconds = 0.01

    def status(self, job_id):
        job = self._jobs[job_id]
        job["checks"] = job.get("checks", 0) + 1
        if job["checks"] % 2 == 0:
            raise KeyboardInterrupt
        return super().status(job_id)


def test_ctrl_c_while_waiting_advises_commands_in_the_cli_and_python_in_python(table, capsys, monkeypatch):
    from pdbatch.backends import _REGISTRY

    monkeypatch.setitem(_REGISTRY, "ctrl-c", CtrlC)
    assert main(["submit", str(table), "--prompt", "{t}", "--backend", "ctrl-c", "--no-cache"]) == 0
    job_id = capsys.readouterr().out.strip()
    CtrlC._jobs[job_id]["state"] = "JOB_STATE_RUNNING"  # it runs until interrupted
    assert main(["wait", job_id, "-q"]) == 130
    err = capsys.readouterr().err
    assert f"`pdbatch wait {job_id}`" in err and f"`pdbatch cancel {job_id}`" in err, err
    assert "pdbatch.attach" not in err and err.count("interrupted") == 1, err
    job = pdbatch.attach(job_id)
    with pytest.raises(KeyboardInterrupt):
        job.wait(progress=False)
    assert f"job = pdbatch.attach({job_id!r})" in capsys.readouterr().err  # Python's words in Python


def _job_folders():
    from pdbatch import config

    return list((config.home() / "jobs").glob("*/manifest.json"))


@pytest.mark.parametrize("output", ["out.xlsx", "missing-folder/out.csv", "a-file.csv/out.csv", "."])
def test_output_path_is_refused_before_anything_is_submitted(table, tmp_path, capsys, output):
    (tmp_path / "a-file.csv").write_text("x")
    code = main(["run", str(table), "--prompt", "{t}", "--backend", "mock", "-q", "-o", str(tmp_path / output)])
    assert code == 2
    err = capsys.readouterr().err
    assert "nothing was submitted" in err or "is a folder" in err, err
    assert _job_folders() == [], "the job ran although its output could not be written"


def test_param_is_checked_in_the_command_line_words(table, capsys):
    code = main(["run", str(table), "--prompt", "{t}", "--backend", "mock", "-q", "--param", "max_token=10"])
    assert code == 2
    err = capsys.readouterr().err
    assert "did you mean 'max_tokens'" in err and "--param extra_body='{\"max_token\": ...}'" in err
    assert main(["run", str(table), "--prompt", "{t}", "--backend", "mock", "-q", "--param", "top_p=7"]) == 2
    assert "top_p=7: must be a number from 0 to 1" in capsys.readouterr().err
    assert _job_folders() == []
    assert main(["run", str(table), "--prompt", "{t}", "--backend", "mock", "-q", "--temperature", "0",
                 "--param", 'extra_body={"top_k": 3}']) == 0


def test_hints_name_cli_commands_not_python_methods(table, tmp_path, capsys):
    from pdbatch.backends import Mock

    assert main(["submit", str(table), "--prompt", "{t}", "--backend", "mock", "--no-cache"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert main(["cancel", job_id]) == 0
    capsys.readouterr()
    assert main(["results", job_id]) == 3
    err = capsys.readouterr().err
    assert f"`pdbatch results {job_id} --partial`" in err and "partial=True" not in err, err

    running = pd.read_csv(table).llama.submit("{t}", backend=Mock(final_state="JOB_STATE_RUNNING"), progress=False)
    assert main(["wait", running.id, "--timeout", "0", "-q"]) == 5
    err = capsys.readouterr().err
    assert f"`pdbatch wait {running.id}`" in err and "job.wait()" not in err and "attach(" not in err, err
    assert main(["results", running.id]) == 3
    err = capsys.readouterr().err
    assert f"`pdbatch wait {running.id}` first" in err and "result(partial=True)" not in err, err

    nulls = tmp_path / "nulls.csv"
    pd.DataFrame({"t": ["x", None], "response": [1, 2]}).to_csv(nulls, index=False)
    assert main(["run", str(nulls), "--prompt", "{t}", "--backend", "mock", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--on-null skip" in err and "on_null=" not in err, err
    assert main(["run", str(nulls), "--prompt", "{t}", "--backend", "mock", "-q", "--on-null", "skip"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err, err
    assert main(["run", str(nulls), "--prompt", "{t}", "--backend", "mock", "-q", "--on-null", "skip",
                 "--overwrite", "--max-rows", "0"]) == 2
    err = capsys.readouterr().err
    assert "--max-rows" in err and "max_rows" not in err and "df.sample" not in err, err


# ------------------------------------------------------------ errors, damage, closed pipes
def test_an_internal_error_has_its_own_exit_code_and_one_line(monkeypatch, capsys):
    from pdbatch.cli import commands as cli

    def broken(args):
        raise KeyError("a bug deep inside")

    monkeypatch.setattr(cli, "cmd_jobs", broken)
    assert main(["jobs"]) == cli.EXIT_INTERNAL == 70
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "internal error: KeyError: 'a bug deep inside'" in err and "--debug" in err
    for argv in (["--debug", "jobs"], ["jobs", "--debug"]):
        assert main(argv) == 70
        err = capsys.readouterr().err
        assert "Traceback" in err and "in broken" in err
    assert "70 internal error" in cli.build_parser().format_help()


def test_jobs_lists_the_others_and_marks_a_damaged_manifest(table, pdbatch_home, capsys):
    ids = []
    for _ in range(3):
        assert main(["submit", str(table), "--prompt", "{t}", "--backend", "mock", "--no-cache"]) == 0
        ids.append(capsys.readouterr().out.strip())
    folders = sorted((pdbatch_home / "jobs").iterdir(), key=lambda p: p.name)
    bad_json, bad_fields = folders[0] / "manifest.json", folders[1] / "manifest.json"
    bad_json.write_bytes(b'{"id": "mock-1", "parts": [')
    bad_fields.write_bytes(b'{"id": 5}')
    for argv in (["jobs"], ["jobs", "--refresh"]):
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert f"DAMAGED: {bad_json}" in out and f"DAMAGED: {bad_fields}" in out
        assert ids[2] in out and len(out.strip().splitlines()) == 3
        assert "2 job folder(s)" in err


def test_a_closed_pipe_ends_quietly(table, pdbatch_home):
    # a job that needs no backend process: its answers all come from the cache
    call = [str(table), "--prompt", "{t}", "--backend", "mock", "--temperature", "0"]
    assert main(["run", *call, "-q", "-o", str(table.with_suffix(".parquet"))]) == 0
    assert main(["submit", *call]) == 0
    job = next(p.name for p in (pdbatch_home / "jobs").iterdir() if p.name.startswith("cached-"))
    for argv in (["results", job], ["jobs", "--refresh"], ["status", job], ["jobs"]):
        read, write = os.pipe()
        os.close(read)  # the reader (head) is gone before anything is written
        try:
            proc = subprocess.run([sys.executable, "-m", "pdbatch.cli", *argv], stdout=write,
                                  stderr=subprocess.PIPE, text=True, timeout=120,
                                  env={**os.environ, "PDBATCH_HOME": str(pdbatch_home)})
        finally:
            os.close(write)
        assert proc.returncode == 141, (argv, proc.stderr)  # 128 + SIGPIPE, as a shell reports it
        assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
