"""The Anthropic backend: the real ``anthropic`` client against the Message Batches emulator.

Requests and results follow the examples of Anthropic's batch-processing guide and API
reference: ``{"custom_id": "my-first-request", "params": {"model", "max_tokens", "messages"}}``
in, ``{"custom_id", "result": {"type": "succeeded", "message": {...}}}`` out, in any order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import pdbatch
from pdbatch.backends.anthropic import Anthropic
from pdbatch.errors import BackendError, ConfigError, JobError

pytestmark = pytest.mark.slow  # starts the emulator (in-process)

ROOT = Path(__file__).resolve().parents[2]
REVIEWS = ["great phone", "battery died", "FAIL this one", "love the screen", "meh", "screen cracked",
           "fast delivery", "would buy again"]


def _frame(texts=REVIEWS) -> pd.DataFrame:
    return pd.DataFrame({"review": texts}, index=[f"r{i}" for i in range(len(texts))])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}


def test_answers_land_on_their_rows_and_an_errored_request_is_its_rows_error(anthropic_emulator):
    emu = anthropic_emulator
    emu.fail_when = lambda cid, params: "Invalid content" if "FAIL" in params["messages"][-1]["content"] else None
    df = _frame()
    out = df.llama.batch_predict("{review}", backend="anthropic", model="claude-haiku-4-5", progress=False,
                                 max_tokens=20, system="You are terse.", temperature=0.2, stop=["\n\n"])
    assert list(out.index) == list(df.index)
    ok = out.drop(index="r2")
    assert (ok["response"] == "echo: " + ok["review"]).all()
    assert ok["error"].isna().all() and (ok["finish_reason"] == "stop").all()
    assert (ok["completion_tokens"] > 0).all() and (ok["prompt_tokens"] > 0).all()
    assert pd.isna(out.loc["r2", "response"])
    assert out.loc["r2", "error"] == "HTTP 400: invalid_request_error: Invalid content"
    # one batch, whose requests are Messages params, and whose results came back shuffled
    (batch_id,) = emu.batches
    sent = emu.sent(batch_id)
    assert sent[0]["params"] == {"model": "claude-haiku-4-5", "max_tokens": 20, "system": "You are terse.",
                                 "temperature": 0.2, "stop_sequences": ["\n\n"],
                                 "messages": [{"role": "user", "content": "great phone"}]}
    results = [x["custom_id"] for x in emu.batches[batch_id]["results"]]
    assert results != [x["custom_id"] for x in sent]
    assert sorted(results) == sorted(x["custom_id"] for x in sent)


def test_max_tokens_is_pdbatchs_cap_and_a_cut_answer_is_length(anthropic_emulator):
    out = _frame(["one two three four five"]).llama.batch_predict("{review}", backend="anthropic", progress=False)
    assert anthropic_emulator.sent(next(iter(anthropic_emulator.batches)))[0]["params"]["max_tokens"] == 512
    assert out["finish_reason"].tolist() == ["stop"]
    cut = _frame(["one two three four five"]).llama.batch_predict("{review}", backend="anthropic",
                                                                   progress=False, max_tokens=3)
    assert cut["finish_reason"].tolist() == ["length"]  # stop_reason max_tokens
    assert cut["response"].tolist() == ["echo: one two"]


def test_structured_output_goes_as_output_config(anthropic_emulator):
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["positive", "negative"]}},
              "required": ["label"], "additionalProperties": False}
    out = _frame(REVIEWS[:3]).llama.batch_predict("{review}", backend="anthropic", schema=schema,
                                                   progress=False, max_tokens=20)
    assert out["error"].isna().all() and (out["label"] == "positive").all()
    params = anthropic_emulator.sent(next(iter(anthropic_emulator.batches)))[0]["params"]
    assert params["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "response_format" not in params


def test_fields_anthropic_cannot_take_are_refused_by_name_before_anything_is_sent(anthropic_emulator):
    df = _frame(REVIEWS[:2])
    with pytest.raises(ConfigError, match="frequency_penalty"):
        df.llama.batch_predict("{review}", backend="anthropic", progress=False, frequency_penalty=0.5)
    with pytest.raises(ConfigError, match=r"temperature.*0 to 1"):
        df.llama.batch_predict("{review}", backend="anthropic", progress=False, temperature=1.5)
    assert not anthropic_emulator.batches


def test_embeddings_are_refused_naming_the_backends_that_do_them(anthropic_emulator):
    with pytest.raises(ConfigError, match=r"chat only.*embeddings.*'local', 'vertex' or 'openai'"):
        _frame(REVIEWS[:2]).llama.embed("{review}", backend="anthropic", progress=False)
    assert not anthropic_emulator.batches


def test_an_expired_batch_gives_its_answered_rows_with_partial(anthropic_emulator):
    emu = anthropic_emulator
    emu.hold_after = 3
    job = _frame().llama.submit("{review}", backend="anthropic", progress=False, max_tokens=20)
    emu.wait_for(job.id, "in_progress", answered=3)
    emu.expire(job.id)
    job.wait(progress=False, poll=0.05)
    assert job.state == "JOB_STATE_EXPIRED"
    with pytest.raises(JobError, match="expired"):
        job.result()
    out = job.result(partial=True)
    answered = out[out["error"].isna()]
    assert len(answered) == 3 and (answered["response"] == "echo: " + answered["review"]).all()
    rest = out[out["error"].notna()]
    assert len(rest) == 5 and rest["error"].str.startswith("batch_expired").all()
    emu.hold_after = None
    again = out.llama.retry_failed(progress=False)  # only the expired rows are sent again
    assert again["error"].isna().all() and (again["response"] == "echo: " + again["review"]).all()
    assert len(emu.sent(list(emu.batches)[-1])) == 5


def test_cancel_keeps_the_answered_rows(anthropic_emulator):
    emu = anthropic_emulator
    emu.hold_after = 2
    job = _frame().llama.submit("{review}", backend="anthropic", progress=False, max_tokens=20)
    emu.wait_for(job.id, "in_progress", answered=2)
    job.cancel()
    job.wait(progress=False, poll=0.05)
    assert job.state == "JOB_STATE_CANCELLED"
    out = job.result(partial=True)
    assert out["error"].isna().sum() == 2
    assert out["error"].dropna().str.startswith("batch_cancelled").all()
    job.cancel()  # a batch that ended: nothing left to stop, no error


def test_a_frame_over_the_request_limit_runs_as_several_batches_behind_one_job(anthropic_emulator):
    job = _frame().llama.submit("{review}", backend=Anthropic(max_requests_per_file=3), progress=False,
                                max_tokens=20)
    assert len(job.ids) == 3 == len(anthropic_emulator.batches)
    out = job.wait(progress=False, poll=0.05).result()
    assert (out["response"] == "echo: " + out["review"]).all()


@pytest.mark.parametrize("fault", ["500", "hang"])
def test_an_ambiguous_create_is_not_sent_twice_and_names_the_batch_it_may_have_made(anthropic_emulator, fault):
    emu = anthropic_emulator
    emu.faults["create"] = fault
    emu.hang_seconds = 2.0
    with pytest.raises(BackendError, match="may have created the batch") as err:
        _frame(REVIEWS[:3]).llama.batch_predict("{review}", backend=Anthropic(timeout=0.5), progress=False,
                                                max_tokens=20)
    (made,) = emu.batches
    assert made in str(err.value)
    assert len([r for r in emu.requests if r[:2] == ("POST", "/v1/messages/batches")]) == 1


def test_the_key_stays_out_of_the_job_folder_reprs_and_errors(anthropic_emulator, pdbatch_home):
    key = anthropic_emulator.api_key
    job = _frame(REVIEWS[:3]).llama.submit("{review}", backend="anthropic", progress=False, max_tokens=20)
    job.wait(progress=False, poll=0.05).result()
    for path in pdbatch_home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert key.encode() not in data and key[:16].encode() not in data, path
    assert key not in repr(job.backend) and key not in repr(job)
    assert "api_key" not in json.dumps(job.backend.settings())
    with pytest.raises(BackendError) as err:
        Anthropic(api_key=key[:-4] + "XXXX").status(job.id)
    text = str(err.value)
    assert "API key was refused" in text and "XXXX" not in text and key[:12] not in text
    assert err.value.__cause__ is None and err.value.__suppress_context__  # the client's error holds the key


def test_attach_from_a_new_process_with_the_environments_key(anthropic_emulator, pdbatch_home):
    job = _frame(REVIEWS[:4]).llama.submit("{review}", backend="anthropic", progress=False, max_tokens=20)
    script = (f"import pdbatch, json; job = pdbatch.attach({job.id!r}); "
              f"out = job.wait(progress=False, poll=0.05).result(); print(json.dumps(out['response'].tolist()))")
    env = _env()
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == ["echo: " + r for r in REVIEWS[:4]]
    # without the address in this session, the saved one is not trusted with the key
    env.pop("ANTHROPIC_BASE_URL")
    refused = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "ANTHROPIC_BASE_URL" in refused.stderr
    assert anthropic_emulator.api_key not in refused.stderr


def test_preview_and_max_cost_use_the_batch_prices(anthropic_emulator):
    df = _frame()
    pv = df.llama.preview("{review}", backend="anthropic", model="claude-sonnet-4-6", max_tokens=100)
    assert pv.estimated_cost is not None and pv.estimated_cost > 0
    assert pv.prices_as_of.startswith("2026-12-06 (Anthropic")
    dated = df.llama.preview("{review}", backend="anthropic", model="claude-sonnet-4-5-20250929", max_tokens=100)
    assert dated.estimated_cost == pytest.approx(pv.estimated_cost, rel=0.3)
    with pytest.raises(ConfigError, match="max_cost"):
        df.llama.batch_predict("{review}", backend="anthropic", model="claude-sonnet-4-6", max_tokens=100,
                               max_cost=1e-9, progress=False)
    assert not anthropic_emulator.batches
    assert df.llama.preview("{review}", backend="anthropic", model="claude-next", max_tokens=9).estimated_cost is None


def test_a_request_file_runs_with_the_cli(anthropic_emulator, tmp_path):
    # OpenAI-format lines, as pdbatch's request files are, with the guide's example messages.
    lines = [{"custom_id": f"my-{n}-request", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "claude-opus-4-6", "max_tokens": 1024,
                       "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                    {"role": "user", "content": text}]}}
             for n, text in (("first", "Hello, world"), ("second", "Hi again, friend"))]
    lines.append({**lines[0], "custom_id": "my-third-request",
                  "body": {**lines[0]["body"], "response_format": {"type": "json_object"}}})
    src = tmp_path / "requests.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, "-m", "pdbatch.cli", "run", str(src), "--backend", "anthropic", "-q",
                           "-o", str(out)], env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "2 answered, 1 failed" in done.stderr, done.stderr  # 1: a line failed
    answers = {x["custom_id"]: x for x in map(json.loads, out.read_text().splitlines())}
    assert answers["my-first-request"]["response"]["body"]["choices"][0]["message"]["content"] == \
        "echo: Hello, world"
    assert answers["my-second-request"]["response"]["status_code"] == 200
    # the line Anthropic cannot take is that line's error, naming the field; the others ran
    assert "json_object" in answers["my-third-request"]["error"]["message"]
    (batch,) = anthropic_emulator.batches
    sent = anthropic_emulator.sent(batch)
    assert [x["custom_id"] for x in sent] == ["my-first-request", "my-second-request"]
    assert {x["params"]["system"] for x in sent} == {"You are a helpful assistant."}


def test_a_custom_id_anthropic_would_refuse_is_refused_before_sending(anthropic_emulator, tmp_path):
    line = {"custom_id": "doc.1", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "claude-haiku-4-5", "max_tokens": 10,
                     "messages": [{"role": "user", "content": "Hello"}]}}
    src = tmp_path / "dots.jsonl"
    src.write_text(json.dumps(line) + "\n")
    with pytest.raises(ConfigError, match=r"custom_id 'doc.1'.*1 to 64 characters"):
        pdbatch.run_requests(src, backend="anthropic", progress=False)
    assert not anthropic_emulator.batches
