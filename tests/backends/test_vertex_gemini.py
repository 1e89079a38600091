"""Gemini models on Vertex through the same DataFrame API and CLI (issue 26, part 2), against the emulators.

The Vertex emulator reads Gemini request lines for Gemini models and writes
Google's documented output lines (the input echoed, ``status``,
``processed_time``, ``response``), in shuffled order, in ``global`` only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

import pdbatch
from pdbatch.errors import ConfigError, PdbatchWarning
from tests.backends.test_vertex import creates, make
from tests.backends.test_vertex import quick_retries as _quick_retries
from tests.backends.test_vertex_service import staged_lines

pytestmark = pytest.mark.slow
quick_retries = _quick_retries
FLASH = "gemini-3.5-flash"
PROMPT = "Summarize: {text}"


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"text": [f"review number {i}" for i in range(6)]},
                        index=pd.Index([f"r{i}" for i in range(6)], name="key"))


@pytest.fixture
def staging(gcs_least_privilege, gcs_bucket) -> str:
    return f"gs://{gcs_bucket}/pdbatch/"


def objects(gcs_emulator, bucket: str) -> list[str]:
    return [b.name for b in gcs_emulator.client().list_blobs(bucket)]


def test_gemini_answers_come_back_on_their_rows_with_a_failed_line_kept(vertex_emulator, gcs_emulator, staging,
                                                                        frame):
    vertex_emulator.faults.row_errors = lambda record: "review number 4" in json.dumps(record)
    vx = make(vertex_emulator, staging, location=None)  # each model runs where it is served
    out = frame.llama.batch_predict(PROMPT, model=FLASH, backend=vx, system="Be brief.", max_tokens=50,
                                    temperature=0.2, reasoning_effort="low", progress=False)
    assert list(out.index) == list(frame.index)
    ok = out.drop(index="r4")
    assert ok.error.isna().all(), ok.error.tolist()
    assert ok.response.tolist() == [f"echo: Summarize: {t}" for t in ok.text]
    assert ok.finish_reason.eq("stop").all()
    # usageMetadata: "Be brief." (2) + "Summarize: review number N" (4); the answer is 5 words
    assert ok.prompt_tokens.eq(6).all() and ok.completion_tokens.eq(5).all()
    assert pd.isna(out.response["r4"]) and "Bad Request" in out.error["r4"] and "Injected row error" in out.error["r4"]
    [body] = creates(vertex_emulator)
    [job] = vertex_emulator.jobs.values()
    assert (body["model"], job.location) == (f"publishers/google/models/{FLASH}", "global")
    # what was uploaded: Gemini lines keyed by custom_id, no OpenAI fields
    staged = staged_lines(gcs_emulator, body)
    assert all(set(x) == {"key", "request"} for x in staged)
    first = staged[0]["request"]
    assert first["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert first["generationConfig"] == {"maxOutputTokens": 50, "temperature": 0.2,
                                         "thinkingConfig": {"thinkingLevel": "LOW"}}
    # the job wrote its lines in another order than the input's: the join was by key
    [uri] = job.output_files
    bucket, name = uri[len("gs://"):].split("/", 1)
    written = [json.loads(x) for x in gcs_emulator.client().bucket(bucket).blob(name).download_as_text().splitlines()]
    assert [x["key"] for x in written] != [x["key"] for x in staged]
    assert {x["key"] for x in written} == {x["key"] for x in staged}
    assert all({"status", "processed_time", "request"} <= set(x) for x in written)
    # the preflight's one online request went to the OpenAI-compatible endpoint in global, for this model
    [ping] = vertex_emulator.requests_to("POST", "/endpoints/openapi/chat/completions")
    assert ping.path == "/v1/projects/test-project/locations/global/endpoints/openapi/chat/completions"
    assert ping.body["model"] == f"google/{FLASH}" and ping.body["max_tokens"] == 1


def test_schema_becomes_gemini_structured_output(vertex_emulator, gcs_emulator, staging, frame):
    vx = make(vertex_emulator, staging, location="global")
    schema = {"type": "object", "properties": {"summary": {"type": "string"}, "stars": {"type": "integer"}},
              "required": ["summary", "stars"], "additionalProperties": False}
    out = frame.head(2).llama.batch_predict(PROMPT, model="gemini-3.1-flash-lite", backend=vx, schema=schema,
                                            progress=False)
    assert out.error.isna().all(), out.error.tolist()
    assert out.stars.tolist() == [1, 1] and out.summary.tolist() == [f"echo: Summarize: review number {i}"
                                                                      for i in range(2)]
    [body] = creates(vertex_emulator)
    config = staged_lines(gcs_emulator, body)[0]["request"]["generationConfig"]
    assert config["responseMimeType"] == "application/json" and config["responseJsonSchema"] == schema


def test_a_body_field_gemini_cannot_take_is_refused_before_anything_is_uploaded(vertex_emulator, gcs_emulator,
                                                                               gcs_bucket, staging, frame):
    vx = make(vertex_emulator, staging, location=None, preflight=False)
    with pytest.raises(ConfigError, match=r"google/gemini-3.5-flash cannot take 1 request parameter.*"
                                          r"logit_bias=\{'1': 5\}: Gemini batch lines have no equivalent"):
        frame.llama.batch_predict(PROMPT, model=FLASH, backend=vx, logit_bias={"1": 5}, progress=False)
    assert creates(vertex_emulator) == [] and objects(gcs_emulator, gcs_bucket) == []


def test_a_request_file_line_gemini_cannot_take_is_that_lines_error_and_the_others_run(
        vertex_emulator, gcs_emulator, staging, tmp_path, pdbatch_home):
    # a frame's logit_bias is every row's (refused whole, above); a request file's line carries its own
    bodies = [{"messages": [{"role": "user", "content": "Hello world!"}]},
              {"messages": [{"role": "user", "content": "Hi"}], "logit_bias": {"1": 5}},
              {"messages": [{"role": "user", "content": "Banana bread?"}], "max_tokens": 50}]
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                                        "body": body}) + "\n" for i, body in enumerate(bodies)))
    vx = make(vertex_emulator, staging, location=None, preflight=False)
    out = pdbatch.run_requests(path, model=FLASH, backend=vx, progress=False)
    assert out.custom_id.tolist() == ["req-0", "req-1", "req-2"]
    assert out.response.tolist()[::2] == ["echo: Hello world!", "echo: Banana bread?"]
    assert out.error.isna().tolist() == [True, False, True]
    assert out.error[1].startswith(f"invalid request: google/{FLASH} cannot take logit_bias=") and \
        "Gemini batch lines have no equivalent" in out.error[1]
    [body] = creates(vertex_emulator)
    assert [x["key"] for x in staged_lines(gcs_emulator, body)] == ["req-0", "req-2"]  # only what runs is sent
    # the command line: the two answers and the line's error written, exit code 1 (some lines failed)
    result = tmp_path / "results.jsonl"
    env = {**os.environ, "PDBATCH_HOME": str(pdbatch_home), "PDBATCH_VERTEX_PROJECT": vertex_emulator.project,
           "PDBATCH_VERTEX_STAGING": staging, "PDBATCH_VERTEX_API_ENDPOINT": vertex_emulator.url,
           "PDBATCH_VERTEX_POLL_SECONDS": "0.05"}
    proc = subprocess.run([sys.executable, "-m", "pdbatch.cli", "run", str(path), "--backend", "vertex",
                           "--model", FLASH, "-o", str(result), "-q"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "3 request lines, 2 answered, 1 failed" in proc.stderr
    written = [json.loads(x) for x in result.read_text().splitlines()]
    assert [x["error"] is None for x in written] == [True, False, True]
    assert written[1]["error"]["code"] == "invalid_request" and "logit_bias" in written[1]["error"]["message"]
    assert len(creates(vertex_emulator)) == 2


def test_a_frame_row_whose_messages_gemini_cannot_take_is_that_rows_error_and_the_others_run(
        vertex_emulator, gcs_emulator, staging):
    # a frame's shared logit_bias refuses the call (above); a messages= row carries its own messages
    frame = pd.DataFrame({"chat": [[{"role": "user", "content": "Hello world!"}],
                                   [{"role": "user", "content": "6 x 7?"}, {"role": "tool", "content": "42"}],
                                   [{"role": "user", "content": "Banana bread?"}]]},
                         index=pd.Index(["a", "b", "c"], name="key"))
    vx = make(vertex_emulator, staging, location=None, preflight=False)
    with pytest.warns(PdbatchWarning, match=r"1 row\(s\) \(row-1\) have messages google/gemini-3.5-flash cannot"):
        out = frame.llama.batch_predict(messages="chat", model=FLASH, backend=vx, progress=False)
    assert list(out.index) == ["a", "b", "c"]
    assert out.response.tolist()[::2] == ["echo: Hello world!", "echo: Banana bread?"]
    assert out.error.isna().tolist() == [True, False, True] and pd.isna(out.response["b"])
    assert out.error["b"].startswith(f"invalid request: column 'chat', row 'row-1': google/{FLASH} cannot take these "
                                     f"messages: messages[1]: role 'tool' has no Gemini equivalent")
    assert out.attrs["pdbatch_rows"]["skipped"] == 1
    [body] = creates(vertex_emulator)
    assert [x["key"] for x in staged_lines(gcs_emulator, body)] == ["row-0", "row-2"]  # only what runs is sent
    # sent again unchanged, the row would be refused again: retry_failed keeps it, and says so
    with pytest.warns(UserWarning, match=r"1 row\(s\) \(index 'b'\) were not sent again: the request is invalid"):
        assert out.llama.retry_failed(progress=False) is out
    assert len(creates(vertex_emulator)) == 1


def test_retired_gemini_and_bigquery_staging_are_refused_before_anything_is_sent(vertex_emulator, bq_dataset,
                                                                                 frame):
    vx = make(vertex_emulator, f"bq://{bq_dataset}", location="global")
    with pytest.raises(ConfigError, match=r"retired google/gemini-2.5-flash on 2026-10-20"):
        frame.llama.batch_predict(PROMPT, model="gemini-2.5-flash", backend=vx, progress=False)
    with pytest.raises(ConfigError, match=r"staging=bq://.*JSONL files in Cloud Storage only"):
        frame.llama.batch_predict(PROMPT, model=FLASH, backend=vx, progress=False)
    assert creates(vertex_emulator) == []


def test_the_emulator_refuses_openai_lines_for_gemini_and_serves_gemini_in_global_only(vertex_emulator, staging,
                                                                                      frame):
    # what the service does when pdbatch does not convert (another client, or a bug): row errors
    from google.api_core import exceptions as gexc
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1, storage

    client = aiplatform_v1.JobServiceClient(transport="rest", credentials=AnonymousCredentials(),
                                            client_options={"api_endpoint": vertex_emulator.url})
    bucket, prefix = staging[len("gs://"):].split("/", 1)
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": "Hi"}]}}
    storage.Client(project="p", credentials=AnonymousCredentials()).bucket(bucket).blob(
        prefix + "openai.jsonl").upload_from_string(json.dumps(line) + "\n")
    job = {"display_name": "raw", "model": f"publishers/google/models/{FLASH}",
           "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": [f"{staging}openai.jsonl"]}},
           "output_config": {"predictions_format": "jsonl",
                             "gcs_destination": {"output_uri_prefix": f"{staging}out/"}}}
    with pytest.raises(gexc.BadRequest, match="not supported in location us-central1"):
        client.create_batch_prediction_job(parent="projects/test-project/locations/us-central1",
                                           batch_prediction_job=job)
    made = client.create_batch_prediction_job(parent="projects/test-project/locations/global",
                                              batch_prediction_job=job)
    done = vertex_emulator.wait_for_state(made.name, "JOB_STATE_SUCCEEDED")
    assert done["completionStats"]["failedCount"] in (1, "1")
    # and the other way round: a Gemini line sent to an open model has no body to answer
    gemini_line = {"key": "b", "request": {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}}
    storage.Client(project="p", credentials=AnonymousCredentials()).bucket(bucket).blob(
        prefix + "gemini.jsonl").upload_from_string(json.dumps(gemini_line) + "\n")
    job["model"] = "publishers/openai/models/gpt-oss-120b-maas"
    job["input_config"]["gcs_source"]["uris"] = [f"{staging}gemini.jsonl"]
    made = client.create_batch_prediction_job(parent="projects/test-project/locations/us-central1",
                                              batch_prediction_job=job)
    done = vertex_emulator.wait_for_state(made.name, "JOB_STATE_SUCCEEDED")
    assert done["completionStats"]["failedCount"] in (1, "1")


def test_a_request_file_runs_on_gemini_from_the_command_line(vertex_emulator, staging, tmp_path, pdbatch_home):
    lines = [{"custom_id": f"request-{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are a chef."},
                                                            {"role": "user", "content": text}],
                       "max_tokens": 100}}
             for i, text in enumerate(["Give me a recipe for banana bread", "Hello world!"], 1)]
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "results.jsonl"
    env = {**os.environ, "PDBATCH_HOME": str(pdbatch_home), "PDBATCH_VERTEX_PROJECT": vertex_emulator.project,
           "PDBATCH_VERTEX_STAGING": staging, "PDBATCH_VERTEX_API_ENDPOINT": vertex_emulator.url,
           "PDBATCH_VERTEX_POLL_SECONDS": "0.05"}
    proc = subprocess.run([sys.executable, "-m", "pdbatch.cli", "run", str(path), "--backend", "vertex",
                           "--model", FLASH, "-o", str(out), "-q"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    back = pdbatch.read_predictions(out)
    assert back.loc["request-1", "response"] == "echo: Give me a recipe for banana bread"
    assert back.loc["request-2", "response"] == "echo: Hello world!"
    assert [b["model"] for b in creates(vertex_emulator)] == [f"publishers/google/models/{FLASH}"]
