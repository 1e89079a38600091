"""The OpenAI backend: the real ``openai`` client against the Batch API emulator (tests/emulators/openai_batch.py).

Request lines and answers follow the examples of OpenAI's Batch guide and API
reference: ``{"custom_id": "request-1", "method": "POST", "url":
"/v1/chat/completions", "body": {"model": ..., "messages": [...]}}`` in, batch
output objects ``{"id", "custom_id", "response": {"status_code", "request_id",
"body"}, "error"}`` out, in any order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import pdbatch
from pdbatch.backends.openai import OpenAI
from pdbatch.errors import BackendError, ConfigError, JobError

pytestmark = pytest.mark.slow  # starts the emulator (in-process: about a second a test)

ROOT = Path(__file__).resolve().parents[2]
REVIEWS = ["great phone", "battery died", "FAIL this one", "love the screen", "meh", "screen cracked",
           "fast delivery", "would buy again"]


def _frame(texts=REVIEWS) -> pd.DataFrame:
    return pd.DataFrame({"review": texts}, index=[f"r{i}" for i in range(len(texts))])


def _batch_lines(emu, batch_id: str, which: str) -> list[dict]:
    file_id = emu.batch(batch_id)[which]
    return [json.loads(x) for x in emu.file_text(file_id).splitlines()] if file_id else []


def test_answers_land_on_their_rows_and_a_refused_row_keeps_its_error(openai_emulator):
    emu = openai_emulator
    emu.fail_when = lambda cid, body: "Invalid content" if "FAIL" in body["messages"][-1]["content"] else None
    df = _frame()
    out = df.llama.batch_predict("{review}", backend="openai", model="gpt-4.1-mini", progress=False,
                                 max_tokens=20)
    assert list(out.index) == list(df.index)
    ok = out.drop(index="r2")
    assert (ok["response"] == "echo: " + ok["review"]).all()
    assert ok["error"].isna().all()
    assert ok["prompt_tokens"].notna().all()
    assert out.loc["r2", "response"] is None or pd.isna(out.loc["r2", "response"])
    assert "HTTP 400" in out.loc["r2", "error"] and "Invalid content" in out.loc["r2", "error"]
    # one batch, built as the reference says, whose output order differs from the input's
    (batch_id,) = emu.batches
    batch = emu.batch(batch_id)
    assert batch["endpoint"] == "/v1/chat/completions" and batch["completion_window"] == "24h"
    assert batch["metadata"]["pdbatch_run"] and batch["metadata"]["pdbatch_part"] == "1/1"
    sent = [json.loads(x) for x in emu.file_text(batch["input_file_id"]).splitlines()]
    assert {x["body"]["model"] for x in sent} == {"gpt-4.1-mini"}
    answered = [x["custom_id"] for x in _batch_lines(emu, batch_id, "output_file_id")]
    assert answered != sorted(answered, key=[x["custom_id"] for x in sent].index)
    assert [x["custom_id"] for x in _batch_lines(emu, batch_id, "error_file_id")] == ["row-2"]


def test_embeddings_and_structured_output(openai_emulator):
    df = _frame(["alpha", "beta", "gamma"])
    emb = df.llama.embed("{review}", backend="openai", progress=False)
    assert emb["error"].isna().all()
    assert len(emb.loc["r1", "embedding"]) == 8
    assert list(emb.loc["r0", "embedding"]) != list(emb.loc["r1", "embedding"])
    (batch,) = [openai_emulator.batch(b) for b in openai_emulator.batches]
    assert batch["endpoint"] == "/v1/embeddings"
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["positive", "negative"]}},
              "required": ["label"], "additionalProperties": False}
    out = df.llama.batch_predict("{review}", backend="openai", schema=schema, progress=False, max_tokens=20)
    assert out["error"].isna().all()
    assert (out["label"] == "positive").all()
    last = openai_emulator.batch(list(openai_emulator.batches)[-1])
    body = json.loads(openai_emulator.file_text(last["input_file_id"]).splitlines()[0])["body"]
    assert body["response_format"]["type"] == "json_schema"


def test_an_expired_batch_gives_its_answered_rows_with_partial(openai_emulator):
    emu = openai_emulator
    emu.hold_after = 3
    df = _frame()
    job = df.llama.submit("{review}", backend="openai", progress=False, max_tokens=20)
    emu.wait_for(job.id, "in_progress", answered=3)
    emu.expire(job.id)
    job.wait(progress=False, poll=0.05)
    assert job.state == "JOB_STATE_EXPIRED"
    with pytest.raises(JobError, match="expired"):
        job.result()
    out = job.result(partial=True)
    answered = out[out["error"].isna()]
    assert len(answered) == 3
    assert (answered["response"] == "echo: " + answered["review"]).all()
    rest = out[out["error"].notna()]
    assert len(rest) == 5 and rest["error"].str.startswith("batch_expired").all()
    emu.hold_after = None
    again = out.llama.retry_failed(progress=False)  # only the expired rows are sent again
    assert again["error"].isna().all() and (again["response"] == "echo: " + again["review"]).all()
    assert emu.batch(list(emu.batches)[-1])["request_counts"]["total"] == 5


def test_cancel_keeps_the_answered_rows(openai_emulator):
    emu = openai_emulator
    emu.hold_after = 2
    job = _frame().llama.submit("{review}", backend="openai", progress=False, max_tokens=20)
    emu.wait_for(job.id, "in_progress", answered=2)
    job.cancel()
    assert emu.batch(job.id)["status"] in ("cancelling", "cancelled")
    job.wait(progress=False, poll=0.05)
    assert job.state == "JOB_STATE_CANCELLED"
    out = job.result(partial=True)
    assert out["error"].isna().sum() == 2
    assert out["error"].dropna().str.startswith("batch_cancelled").all()
    job.cancel()  # a batch that ended: nothing left to stop, no error


def test_a_frame_over_the_file_limit_runs_as_several_batches_behind_one_job(openai_emulator):
    df = _frame()
    job = df.llama.submit("{review}", backend=OpenAI(max_requests_per_file=3), progress=False, max_tokens=20)
    assert len(job.ids) == 3 == len(openai_emulator.batches)
    parts = sorted(openai_emulator.batch(b)["metadata"]["pdbatch_part"] for b in job.ids)
    assert parts == ["1/3", "2/3", "3/3"]
    out = job.wait(progress=False, poll=0.05).result()
    assert (out["response"] == "echo: " + out["review"]).all()


@pytest.mark.parametrize("fault", ["500", "hang"])
def test_a_create_that_ends_ambiguously_is_adopted_not_sent_twice(openai_emulator, fault):
    emu = openai_emulator
    emu.faults["create"] = fault
    emu.hang_seconds = 2.0
    backend = OpenAI(timeout=0.5)
    out = _frame(REVIEWS[:3]).llama.batch_predict("{review}", backend=backend, progress=False, max_tokens=20)
    assert (out["response"] == "echo: " + out["review"]).all()
    assert len(emu.batches) == 1
    creates = [r for r in emu.requests if r[:2] == ("POST", "/v1/batches")]
    assert len(creates) == 1  # found through batches.list, not created again


def test_a_create_the_server_did_not_act_on_is_sent_again(openai_emulator):
    openai_emulator.faults["create"] = "503-before"
    out = _frame(REVIEWS[:2]).llama.batch_predict("{review}", backend="openai", progress=False, max_tokens=20)
    assert out["error"].isna().all()
    assert len(openai_emulator.batches) == 1
    assert len([r for r in openai_emulator.requests if r[:2] == ("POST", "/v1/batches")]) == 2


def test_a_failed_batch_shows_its_errors(openai_emulator, tmp_path):
    # Lines as in the Batch guide, with the mistakes OpenAI reports per line.
    line = {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Hello world!"}]}}
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [line, line, {**line, "custom_id": "request-3",
                                                                    "url": "/v1/embeddings"}]) + "\n")
    be = OpenAI()
    (batch_id,) = be.submit([path], model="gpt-4.1-mini", kind="chat", n_requests=3, display_name="bad")
    openai_emulator.wait_for(batch_id, "failed")
    st = be.status(batch_id)
    assert st.state == "JOB_STATE_FAILED"
    assert "line 2: duplicate_custom_id" in st.error and "line 3: url_mismatch" in st.error


def test_the_key_stays_out_of_the_job_folder_reprs_and_errors(openai_emulator, pdbatch_home):
    key = openai_emulator.api_key
    openai_emulator.fail_when = lambda cid, body: "bad" if cid == "row-1" else None
    job = _frame(REVIEWS[:3]).llama.submit("{review}", backend="openai", progress=False, max_tokens=20)
    job.wait(progress=False, poll=0.05).result()
    for path in pdbatch_home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert key.encode() not in data and key[:16].encode() not in data, path
    assert key not in repr(job.backend) and key not in repr(job)
    assert "api_key" not in json.dumps(job.backend.settings())
    # OpenAI's 401 quotes the key, masked: the message pdbatch shows does not
    with pytest.raises(BackendError) as err:
        OpenAI(api_key=key[:-4] + "XXXX").status(job.id)
    text = str(err.value)
    assert "API key was refused" in text and "XXXX" not in text and key[:12] not in text
    assert err.value.__cause__ is None and err.value.__suppress_context__  # the client's error holds the key


def test_attach_from_a_new_process_with_the_environments_key(openai_emulator, pdbatch_home):
    job = _frame(REVIEWS[:4]).llama.submit("{review}", backend="openai", progress=False, max_tokens=20)
    script = (f"import pdbatch, json; job = pdbatch.attach({job.id!r}); "
              f"out = job.wait(progress=False, poll=0.05).result(); print(json.dumps(out['response'].tolist()))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == ["echo: " + r for r in REVIEWS[:4]]
    # without the address in this session, the saved one is not trusted with the key
    env.pop("OPENAI_BASE_URL")
    refused = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "OPENAI_BASE_URL" in refused.stderr
    assert openai_emulator.api_key not in refused.stderr


def test_preview_and_max_cost_use_the_batch_prices(openai_emulator):
    df = _frame()
    pv = df.llama.preview("{review}", backend="openai", model="gpt-4.1-mini", max_tokens=100)
    assert pv.estimated_cost is not None and pv.estimated_cost > 0
    assert pv.prices_as_of.startswith("2026-12-06 (OpenAI")
    with pytest.raises(ConfigError, match="max_cost"):
        df.llama.batch_predict("{review}", backend="openai", model="gpt-4.1-mini", max_tokens=100,
                               max_cost=1e-9, progress=False)
    assert not openai_emulator.batches
    unknown = df.llama.preview("{review}", backend="openai", model="my-finetune", max_tokens=100)
    assert unknown.estimated_cost is None


def test_a_request_file_runs_as_it_is_with_the_cli(openai_emulator, tmp_path):
    # The Batch guide's example input lines.
    lines = [{"custom_id": f"request-{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "gpt-3.5-turbo-0125",
                       "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                    {"role": "user", "content": text}], "max_tokens": 1000}}
             for i, text in enumerate(["Hello world!", "Hello again!"], 1)]
    src = tmp_path / "requests.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    done = subprocess.run([sys.executable, "-m", "pdbatch.cli", "run", str(src), "--backend", "openai", "-q",
                           "-o", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answers = {x["custom_id"]: x for x in map(json.loads, out.read_text().splitlines())}
    assert answers["request-1"]["response"]["body"]["choices"][0]["message"]["content"] == "echo: Hello world!"
    assert answers["request-2"]["response"]["status_code"] == 200
    (batch,) = [openai_emulator.batch(b) for b in openai_emulator.batches]
    sent = [json.loads(x) for x in openai_emulator.file_text(batch["input_file_id"]).splitlines()]
    assert {x["body"]["model"] for x in sent} == {"gpt-3.5-turbo-0125"}


def test_status_maps_every_batch_status(openai_emulator):
    emu = openai_emulator
    emu.hold_after = 0
    job = _frame(REVIEWS[:2]).llama.submit("{review}", backend="openai", progress=False, max_tokens=20)
    st = emu.wait_for(job.id, "in_progress")
    assert st["request_counts"]["total"] == 2
    status = job.refresh()
    assert (status.state, status.total, status.finished) == ("JOB_STATE_RUNNING", 2, 0)
    emu.hold_after = None
    deadline = time.monotonic() + 10
    while not job.refresh().done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.status.state == "JOB_STATE_SUCCEEDED" and job.status.succeeded == 2


def test_responses_lines_run_as_their_own_batch_beside_chat_lines(openai_emulator, tmp_path):
    # A request file mixing the Batch guide's chat line with Responses API lines ({"input": ...}).
    lines = [{"custom_id": "chat-1", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Hello world!"}]}},
             *({"custom_id": f"resp-{i}", "method": "POST", "url": "/v1/responses",
                "body": {"model": "gpt-4.1-mini", "input": text, "max_output_tokens": 50}}
               for i, text in enumerate(["Tell me a story.", "And another."]))]
    src = tmp_path / "mixed.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = pdbatch.run_requests(src, backend="openai", progress=False)
    assert out["response"].tolist() == ["echo: Hello world!", "echo: Tell me a story.", "echo: And another."]
    assert out["error"].isna().all() and (out["finish_reason"] == "stop").all()
    endpoints = sorted(openai_emulator.batch(b)["endpoint"] for b in openai_emulator.batches)
    assert endpoints == ["/v1/chat/completions", "/v1/responses"]


def test_a_batch_the_service_fails_raises_with_its_errors(openai_emulator):
    openai_emulator.max_lines = 5  # as a file over OpenAI's 50,000 requests would
    job = _frame().llama.submit("{review}", backend=OpenAI(max_requests_per_file=100), progress=False,
                                max_tokens=20)
    job.wait(progress=False, poll=0.05)
    assert job.state == "JOB_STATE_FAILED"
    with pytest.raises(JobError, match="too_many_tasks: The batch input file has 8 requests") as err:
        job.result()
    assert err.value.state == "JOB_STATE_FAILED"
    out = job.result(partial=True)
    assert out["error"].str.contains("too_many_tasks").all()
