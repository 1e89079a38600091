"""A job of several parts held by BatchJob itself (pdbatch.jobs.jobparts): old folders, frames, the answers' file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import Mock
from tests.jobs.test_runfile import OPENAI, check_output_line, lines_of, write

OLD = Path(__file__).parent / "fixtures" / "requests_job_v1"
HEAD = "local-20261206-152203-fbfea4"


def _install_old_folders(home: Path) -> None:
    jobs = home / "jobs"
    jobs.mkdir(mode=0o700, exist_ok=True)
    for folder in OLD.glob("local-*"):
        shutil.copytree(folder, jobs / folder.name)
        for path in [jobs / folder.name, *(jobs / folder.name).iterdir()]:  # as pdbatch keeps them: private
            path.chmod(0o700 if path.is_dir() else 0o600)


def test_a_request_files_folders_written_by_the_previous_version_attach_and_read_the_same(pdbatch_home, tmp_path):
    _install_old_folders(pdbatch_home)
    job = pdbatch.attach(HEAD)  # the local backend, rebuilt from the settings the folder saved: nothing runs
    assert type(job) is pdbatch.BatchJob and pdbatch.RequestsJob is pdbatch.BatchJob
    assert len(job.parts) == 2 and job.ids == ["local-20261206-152202-19376a", HEAD]
    assert job.status.state == "JOB_STATE_SUCCEEDED"
    out = job.result()
    expected = pdbatch.read_predictions(OLD / "expected.jsonl")
    assert out.custom_id.tolist() == expected.index.tolist() == ["q1", "e1", "q2", "bad", "e2"]
    assert out.body[0]["messages"][0]["content"] == "What is 2+2?"  # the bodies read back as dicts
    assert out.response.fillna("-").tolist() == expected.response.fillna("-").tolist()
    assert out.error.notna().tolist() == [False, False, False, True, False]
    assert out.error[3] == "invalid request: " + expected.error["bad"].removeprefix("invalid_request: ")
    assert out.response[0] == out.response[2]  # q2 repeats q1: the old folder's aliases still fan out
    for p in (1, 4):
        np.testing.assert_allclose(out.embedding[p], expected.embedding.iloc[p])
    # the answers' file is the one that version wrote, byte for byte (same ids, same bodies)
    assert job.write_output(tmp_path / "out.jsonl") == 5
    assert (tmp_path / "out.jsonl").read_bytes() == (OLD / "expected.jsonl").read_bytes()


def test_a_mixed_files_job_is_a_plain_batchjob_of_two_parts(tmp_path):
    job = pdbatch.run_requests(write(tmp_path / "r.jsonl", OPENAI), backend=Mock(), wait=False, progress=False)
    assert type(job) is pdbatch.BatchJob and [p.kind for p in job.parts] == ["embeddings", "chat"]
    assert job.id == job.parts[-1].id and job.ids == [i for p in job.parts for i in p.record.parts]
    # the display and the counts speak for both parts: 3 lines sent (2 chat, 1 embeddings), 1 refused
    assert job.rows.record() == {"rows": 4, "sent": 3, "merged": 0, "cached": 0, "skipped": 1}
    assert job.label.model == f"{job.parts[1].record.model} + {job.parts[0].record.model}"
    assert job.wait(progress=False).result().attrs["pdbatch_rows"]["sent"] == 3
    # the refused line is the one no part runs, with its own reason (not "another kind's line")
    assert list(job.skipped) == [2] and job.skipped[2].startswith("invalid request: url '/v1/completions'")


def test_a_frame_jobs_answers_as_openai_batch_output(tmp_path):
    df = pd.DataFrame({"id": ["a", "b", "c"], "t": ["x", "y", None]}, index=[10, 11, 12])
    job = df.llama.submit("{t}", backend=Mock(fail=lambda cid, body: "boom" if cid == "b" else None),
                          custom_id="id", on_null="skip", progress=False).wait(progress=False)
    lines = list(job.output_lines())
    for line in lines:
        check_output_line(line)
    assert [x["custom_id"] for x in lines] == ["a", "b", "c"]
    assert lines[0]["response"]["body"]["choices"][0]["message"]["content"] == "echo: x"
    assert lines[1]["error"]["code"] == "request_failed" and "boom" in lines[1]["error"]["message"]
    assert lines[2]["error"]["code"] == "no_output" and lines[2]["error"]["message"].startswith("skipped: null")
    assert job.write_output(tmp_path / "o.jsonl") == 3 and lines_of(tmp_path / "o.jsonl") == lines
    job.write_output(tmp_path / "o.parquet")
    table = pd.read_parquet(tmp_path / "o.parquet")
    assert table.id.tolist() == ["a", "b", "c"] and table.response[0] == "echo: x"


def test_a_file_answered_wholly_from_the_cache_makes_no_job_folder_as_a_frame_call(tmp_path, pdbatch_home, capsys):
    from pdbatch.cli import commands as cli

    lines = [{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}], "temperature": 0}},
             {"custom_id": "b", "body": {"messages": [{"role": "user", "content": "hi"}], "temperature": 0}},
             {"custom_id": "e", "body": {"input": "some text"}},
             {"custom_id": "x", "url": "/v1/completions", "body": {"prompt": "refused"}}]
    path = write(tmp_path / "r.jsonl", lines)
    folders = lambda: sorted(p.name for p in (pdbatch_home / "jobs").iterdir())  # noqa: E731
    assert cli.main(["run", str(path), "--backend", "mock", "-o", str(tmp_path / "first.jsonl"), "-q"]) == 1
    first = folders()
    assert len(first) == 2  # a part per kind
    # again: every line is answered by the cache (or refused); nothing is sent, no `cached-` folder is left
    assert cli.main(["run", str(path), "--backend", "mock", "-o", str(tmp_path / "again.jsonl"), "-q"]) == 1
    assert folders() == first
    before, again = lines_of(tmp_path / "first.jsonl"), lines_of(tmp_path / "again.jsonl")
    for line in again:
        check_output_line(line)
    assert [(x["custom_id"], x["response"] and x["response"]["body"], x["error"]) for x in again] == \
        [(x["custom_id"], x["response"] and x["response"]["body"], x["error"]) for x in before]
    assert cli.main(["run", str(path), "--backend", "mock", "-q"]) == 1  # on stdout, the same lines
    assert [x["custom_id"] for x in map(json.loads, capsys.readouterr().out.splitlines())] == ["a", "b", "e", "x"]
    out = pdbatch.run_requests(path, backend=Mock(), progress=False)
    assert "pdbatch_job" not in out.attrs and out.attrs["pdbatch_rows"]["sent"] == 0
    assert out.response[0] == out.response[1] and len(out.embedding[2]) > 0 and out.body[0]["temperature"] == 0
    assert out.llama.retry_failed(progress=False) is out  # nothing was sent, nothing to resend
    assert folders() == first
    # a file whose every line is refused sends nothing either: as a frame whose every row is skipped
    only_bad = pdbatch.run_requests(write(tmp_path / "bad.jsonl", lines[3:]), backend=Mock(), progress=False)
    assert only_bad.error[0].startswith("invalid request: ") and folders() == first


class _NoChat(Mock):
    """The mock backend, refusing chat jobs as a service down for them would; it keeps the ids it gave."""

    def __init__(self):
        super().__init__()
        self.given: list[str] = []

    def submit(self, files, *, kind, **kw):
        if kind == "chat":
            raise pdbatch.BackendError("chat service unavailable")
        self.given += super().submit(files, kind=kind, **kw)
        return self.given[-1:]


def test_a_part_that_fails_to_go_leaves_no_other_part_running(tmp_path, pdbatch_home):
    be = _NoChat()
    with pytest.raises(pdbatch.BackendError, match="chat service unavailable"):
        pdbatch.run_requests(write(tmp_path / "r.jsonl", OPENAI), backend=be, wait=False, progress=False)
    # the embeddings part went first (the head, chat, names it), then chat was refused: the embeddings
    # job is cancelled and its folder removed, so nothing of the file runs, or is paid, for nobody
    (sent,) = be.given
    assert be.status(sent).state == "JOB_STATE_CANCELLED"
    assert not list((pdbatch_home / "jobs").iterdir())


def test_a_frame_jobs_table_keeps_the_users_body_and_url_columns(tmp_path):
    # a frame's "body" (an e-mail's) or "url" column is the user's data, not a request file's request columns
    df = pd.DataFrame({"body": ["hello there", "bye now"], "url": ["https://a", "https://b"], "n": [1, 2]})
    job = df.llama.submit("{body}", backend=Mock(), progress=False).wait(progress=False)
    for name in ("o.parquet", "o.csv"):
        assert job.write_output(tmp_path / name) == 2
        table = pd.read_parquet(tmp_path / name) if name.endswith(".parquet") else pd.read_csv(tmp_path / name)
        assert table.columns.tolist() == job.result().columns.tolist()
        assert table.body.tolist() == ["hello there", "bye now"] and table.url.tolist() == ["https://a", "https://b"]
