"""Request files run as they are (pdbatch.run_requests, `pdbatch run requests.jsonl`), on the mock backend.

The input lines are written by hand from OpenAI's Batch API reference ("the
request input object") and vLLM's `run-batch` page, and the output lines are
checked against OpenAI's "request output object": ``id``, ``custom_id``,
``response: {status_code, request_id, body}`` and ``error: null``, or
``response: null`` and ``error: {code, message}``. The local engine and the
Vertex emulator run the same files in test_runfile_backends.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import Mock
from pdbatch.builders.requestfile import RequestFileError
from pdbatch.cli import commands as cli
from pdbatch.errors import ConfigError

# OpenAI's reference example, its guide's example, and vLLM's second line (a url pdbatch does not run)
OPENAI = [
    {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                                   {"role": "user", "content": "What is 2+2?"}]}},
    {"custom_id": "request-2", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                                   {"role": "user", "content": "Hello world!"}],
              "max_tokens": 1000}},
    {"custom_id": "request-3", "method": "POST", "url": "/v1/completions",
     "body": {"model": "gpt-4o-mini", "prompt": "Once upon a time"}},
    {"custom_id": "request-4", "method": "POST", "url": "/v1/embeddings",
     "body": {"model": "text-embedding-3-small", "input": "The food was delicious."}},
]


def write(path: Path, lines: list) -> Path:
    path.write_text("".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines))
    return path


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_output_line(line: dict) -> None:
    """OpenAI's request output object, exactly."""
    assert set(line) == {"id", "custom_id", "response", "error"}
    assert isinstance(line["id"], str) and line["id"]
    if line["error"] is None:
        assert set(line["response"]) == {"status_code", "request_id", "body"}
        assert line["response"]["status_code"] == 200 and isinstance(line["response"]["request_id"], str)
    else:
        assert line["response"] is None and set(line["error"]) == {"code", "message"}


@pytest.fixture
def mock() -> Mock:
    return Mock()


def test_file_runs_as_it_is_one_job_per_kind_merged(tmp_path, mock):
    path = write(tmp_path / "requests.jsonl", OPENAI)
    out = pdbatch.run_requests(path, backend=mock, progress=False)
    assert out.custom_id.tolist() == ["request-1", "request-2", "request-3", "request-4"]
    assert out.response.tolist()[:2] == ["echo: What is 2+2?", "echo: Hello world!"]
    assert out.error.isna().tolist() == [True, True, False, True]
    assert "url '/v1/completions' is not supported" in out.error[2]
    assert len(out.embedding[3]) > 0 and out.response.isna()[3]
    # one job per kind, the answers merged into one frame
    assert len(mock.submitted) == 2
    sent = [json.loads(line) for part in mock.submitted for line in part]
    assert sorted(x["url"] for x in sent) == ["/v1/chat/completions", "/v1/chat/completions", "/v1/embeddings"]
    assert "request-3" not in {x["custom_id"] for x in sent}


def test_output_file_in_openai_format_reads_back(tmp_path, mock):
    path = write(tmp_path / "requests.jsonl", OPENAI)
    job = pdbatch.run_requests(path, backend=mock, wait=False, progress=False)
    assert isinstance(job, pdbatch.BatchJob) and isinstance(job, pdbatch.RequestsJob)
    job.wait(progress=False)
    assert job.write_output(tmp_path / "out.jsonl") == 4
    lines = lines_of(tmp_path / "out.jsonl")
    for line in lines:
        check_output_line(line)
    assert [x["custom_id"] for x in lines] == ["request-1", "request-2", "request-3", "request-4"]
    assert lines[0]["response"]["body"]["object"] == "chat.completion"
    assert lines[0]["response"]["body"]["choices"][0]["message"]["content"] == "echo: What is 2+2?"
    assert lines[3]["response"]["body"]["object"] == "list"
    assert lines[2]["error"]["code"] == "invalid_request"
    assert lines[2]["error"]["message"].startswith("url '/v1/completions' is not supported")
    # the same file again gives the same ids
    job.write_output(tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_text() == (tmp_path / "out.jsonl").read_text()
    back = pdbatch.read_predictions(tmp_path / "out.jsonl")
    assert back.loc["request-1", "response"] == "echo: What is 2+2?"
    assert "not supported" in back.loc["request-3", "error"]
    # attach finds the whole file job again, in a fresh handle
    again = pdbatch.attach(job.id, backend=mock)
    assert type(again) is pdbatch.BatchJob and len(again.parts) == 2
    pd.testing.assert_frame_equal(again.result(), job.result())


def test_table_outputs_have_custom_id_response_error_and_tokens(tmp_path, mock):
    path = write(tmp_path / "requests.jsonl", OPENAI[:3])
    job = pdbatch.run_requests(path, backend=mock, wait=False, progress=False).wait(progress=False)
    job.write_output(tmp_path / "out.parquet")
    job.write_output(tmp_path / "out.csv")
    for table in (pd.read_parquet(tmp_path / "out.parquet"), pd.read_csv(tmp_path / "out.csv")):
        assert list(table.columns) == ["custom_id", "response", "finish_reason", "prompt_tokens",
                                       "completion_tokens", "error"]
        assert table.prompt_tokens.notna().sum() == 2


def test_a_request_frame_runs_through_the_same_function(mock):
    reqs = pd.DataFrame({"review": ["good", "bad"]}).llama.to_requests("Classify: {review}", backend=mock)
    out = pdbatch.run_requests(reqs, backend=mock, progress=False)
    assert out.response.tolist() == ["echo: Classify: good", "echo: Classify: bad"]
    assert out.custom_id.tolist() == ["row-0", "row-1"]
    frame = pdbatch.read_requests(write(Path(pytest.importorskip("tempfile").mkdtemp()) / "r.jsonl", OPENAI))
    assert list(frame.columns) == ["custom_id", "method", "url", "body"]
    with pytest.raises(pdbatch.InputError, match="ids used more than once"):
        pdbatch.run_requests(pd.concat([reqs, reqs]), backend=mock)


def test_models_chosen_agreed_or_refused(tmp_path, mock):
    path = write(tmp_path / "r.jsonl", OPENAI[:2])
    pdbatch.run_requests(path, backend=mock, progress=False)
    assert {json.loads(x)["body"]["model"] for x in mock.submitted[-1]} == {"gpt-4o-mini"}
    pdbatch.run_requests(path, backend=mock, model="other-model", progress=False, cache=False)
    assert {json.loads(x)["body"]["model"] for x in mock.submitted[-1]} == {"other-model"}
    two = [OPENAI[0], {**OPENAI[1], "body": {**OPENAI[1]["body"], "model": "gpt-4o"}}]
    with pytest.raises(ConfigError, match=r"2 different models: 'gpt-4o-mini' .*'gpt-4o'"):
        pdbatch.run_requests(write(tmp_path / "two.jsonl", two), backend=mock)
    assert pdbatch.run_requests(write(tmp_path / "two.jsonl", two), backend=mock, model="m",
                                progress=False).error.isna().all()


def test_duplicates_merged_and_cache_reused(tmp_path, mock):
    greedy = {"model": "m", "messages": [{"role": "user", "content": "same"}], "temperature": 0}
    sampled = {"model": "m", "messages": [{"role": "user", "content": "same"}]}
    lines = [{"custom_id": "a", "body": greedy}, {"custom_id": "b", "body": greedy},
             {"custom_id": "c", "body": sampled}, {"custom_id": "d", "body": sampled}]
    path = write(tmp_path / "r.jsonl", lines)
    out = pdbatch.run_requests(path, backend=mock, progress=False)
    assert out.response.notna().all()
    # a and b are one request; the sampled lines are each their own
    assert sorted(json.loads(x)["custom_id"] for x in mock.submitted[-1]) == ["a", "c", "d"]
    job = pdbatch.run_requests(path, backend=mock, wait=False, progress=False).wait(progress=False)
    assert sorted(json.loads(x)["custom_id"] for x in mock.submitted[-1]) == ["c", "d"]  # a from the cache
    job.write_output(tmp_path / "o.jsonl")
    by_id = {x["custom_id"]: x for x in lines_of(tmp_path / "o.jsonl")}
    assert by_id["a"]["response"]["body"] == by_id["b"]["response"]["body"]
    assert all(x["error"] is None for x in by_id.values())


def test_limits_and_chunking(tmp_path, mock):
    lines = [{"custom_id": f"q{i}", "url": "/v1/chat/completions",
              "body": {"model": "m", "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 5}}
             for i in range(5)]
    path = write(tmp_path / "r.jsonl", lines)
    with pytest.raises(ConfigError, match="would send 5 requests, over max_rows=4"):
        pdbatch.run_requests(path, backend=mock, max_rows=4)
    with pytest.raises(ConfigError, match="no price is known"):
        pdbatch.run_requests(path, backend=mock, max_cost=1.0)
    with pytest.raises(ConfigError, match="over max_cost=1e-09"):
        pdbatch.run_requests(path, backend=mock, max_cost=1e-9, prices={"m": (1.0, 1.0)})
    assert not mock.submitted
    files: list[int] = []

    class Counting(Mock):
        def submit(self, paths, **kw):
            files.append(len(paths))
            return super().submit(paths, **kw)

    counting = Counting()
    counting.max_requests_per_file = 2
    out = pdbatch.run_requests(path, backend=counting, progress=False)
    assert out.error.isna().all() and files == [3] and len(counting.submitted[-1]) == 5  # 3 files, one job
    [pv] = pdbatch.preview_requests(path, backend=mock, prices={"m": (1.0, 1.0)})
    assert pv.n_requests == 5 and pv.prompt_tokens.notna().all() and pv.estimated_cost > 0


def test_retry_failed_sends_only_failed_lines(tmp_path):
    broken = Mock(fail=lambda cid, body: "overloaded" if cid == "request-2" else None)
    path = write(tmp_path / "r.jsonl", OPENAI)
    out = pdbatch.run_requests(path, backend=broken, progress=False)
    assert out.error.notna().tolist() == [False, True, True, False]
    fixed = Mock()
    again = out.llama.retry_failed(backend=fixed, progress=False)
    # the invalid line would fail the same way: not sent again
    assert [json.loads(x)["custom_id"] for part in fixed.submitted for x in part] == ["request-2"]
    assert again.error.notna().tolist() == [False, False, True, False]
    assert again.response[1] == "echo: Hello world!"


def test_a_cancelled_file_job_gives_its_answered_lines_and_says_why_not_the_others(tmp_path, capsys):
    stopped = Mock(answered=1, final_state="JOB_STATE_CANCELLED")
    path = write(tmp_path / "r.jsonl", OPENAI[:3])
    job = pdbatch.run_requests(path, backend=stopped, wait=False, progress=False).wait(progress=False)
    with pytest.raises(pdbatch.JobError, match="CANCELLED"):
        job.write_output(tmp_path / "o.jsonl")
    job.write_output(tmp_path / "o.jsonl", partial=True)
    lines = lines_of(tmp_path / "o.jsonl")
    for line in lines:
        check_output_line(line)
    # the job answered request-1 before it was cancelled, never request-2
    assert [x["error"] and x["error"]["code"] for x in lines] == [None, "batch_cancelled", "invalid_request"]
    assert "JOB_STATE_CANCELLED" in lines[1]["error"]["message"]
    assert cli.main(["results", job.id, "--partial", "-o", str(tmp_path / "cli.jsonl")]) == 1
    assert lines_of(tmp_path / "cli.jsonl") == lines


def test_cancel_and_status_reach_every_job_of_a_mixed_file(mock, tmp_path, capsys):
    path = write(tmp_path / "r.jsonl", OPENAI)
    job = pdbatch.run_requests(path, backend=mock, wait=False, progress=False)
    assert len(job.ids) == 2
    job.cancel()
    assert job.status.state == "JOB_STATE_CANCELLED"
    assert [part.status.state for part in job.parts] == ["JOB_STATE_CANCELLED"] * 2


# ------------------------------------------------------------------- CLI
def test_cli_run_and_results_write_the_same_file(tmp_path, capsys):
    path = write(tmp_path / "requests.jsonl", OPENAI)
    assert cli.main(["run", str(path), "--backend", "mock", "-o", str(tmp_path / "out.jsonl"), "-q"]) == 1
    assert "4 request lines, 3 answered, 1 failed" in capsys.readouterr().err
    for line in lines_of(tmp_path / "out.jsonl"):
        check_output_line(line)
    assert cli.main(["submit", str(path), "--backend", "mock"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert cli.main(["results", job_id, "-o", str(tmp_path / "res.jsonl")]) == 1
    assert [x["custom_id"] for x in lines_of(tmp_path / "res.jsonl")] == [f"request-{i}" for i in range(1, 5)]
    assert cli.main(["results", job_id]) == 1  # OpenAI's format on stdout too
    stdout = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["error"] is None for x in stdout] == [True, True, False, True]


def test_cli_whole_file_errors_exit_2_naming_the_lines(tmp_path, capsys):
    path = write(tmp_path / "bad.jsonl", [OPENAI[0], "{not json", {"custom_id": 7, "body": {}}, OPENAI[0]])
    assert cli.main(["run", str(path), "--backend", "mock", "-o", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "line 2: not JSON" in err and "line 3: custom_id is 7" in err
    assert "line 4: custom_id 'request-1' is also on line 1" in err and "nothing was sent" in err
    assert not (tmp_path / "o.jsonl").exists()
    with pytest.raises(RequestFileError):
        pdbatch.read_requests(path)


def test_cli_empty_file_gives_empty_output(tmp_path, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    for out in ("o.jsonl", "o.parquet"):
        assert cli.main(["run", str(path), "--backend", "mock", "-o", str(tmp_path / out)]) == 0
    assert (tmp_path / "o.jsonl").read_text() == ""
    assert len(pd.read_parquet(tmp_path / "o.parquet")) == 0


def test_cli_detects_request_files_and_the_flags_force_a_reading(tmp_path, capsys):
    path = write(tmp_path / "requests.jsonl", OPENAI[:2])
    # a request file given a frame option is refused, saying how to read it as rows
    assert cli.main(["run", str(path), "--backend", "mock", "--prompt", "{custom_id}"]) == 2
    assert "--prompt does not apply" in capsys.readouterr().err
    assert cli.main(["run", str(path), "--rows", "--backend", "mock", "--prompt", "id {custom_id}",
                     "-o", str(tmp_path / "rows.csv"), "-q"]) == 0
    assert pd.read_csv(tmp_path / "rows.csv").response.tolist() == ["echo: id request-1", "echo: id request-2"]
    # rows without custom_id and body are data rows; --requests reads them as requests, and names the lines
    rows = write(tmp_path / "rows.jsonl", [{"text": "hi"}])
    assert cli.main(["run", str(rows), "--backend", "mock", "--prompt", "{text}", "-q"]) == 0
    capsys.readouterr()
    assert cli.main(["run", str(rows), "--requests", "--backend", "mock"]) == 2
    assert "line 1: no custom_id" in capsys.readouterr().err


def test_cli_help_shows_the_request_file_form(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "pdbatch run requests.jsonl -o results.jsonl" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--requests" in help_text and "--rows" in help_text and "batch request file" in help_text
