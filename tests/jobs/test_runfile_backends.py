"""Request files written by hand from OpenAI's and vLLM's documentation, on the real backends.

The local llama.cpp engine (the bundled models) through the command line, and
the Vertex AI backend with the real Google clients against the emulators.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import pdbatch
from tests.backends.test_vertex import creates
from tests.backends.test_vertex import quick_retries as _quick_retries
from tests.backends.test_vertex import vx as _vx
from tests.backends.test_vertex_service import staged_lines
from tests.emulators.fake_model import embed
from tests.jobs.test_runfile import check_output_line, lines_of, write

pytestmark = pytest.mark.slow
quick_retries, vx = _quick_retries, _vx
CHAT = "gpt-oss-120b-maas"  # the default chat model, served in us-central1 like the vx fixture

# as OpenAI's guide writes them, for gpt models: the model is chosen where they run
LINES = [
    {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                                   {"role": "user", "content": "What is 2+2?"}],
              "max_tokens": 8, "temperature": 0}},
    {"custom_id": "request-2", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello world!"}],
              "max_tokens": 8, "temperature": 0}},
    {"custom_id": "request-3", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Two answers"}], "n": 2}},
    {"custom_id": "request-4", "method": "POST", "url": "/v1/embeddings",
     "body": {"model": "text-embedding-3-small", "input": "The food was delicious."}},
]


def test_local_engine_through_the_command_line(tmp_path, pdbatch_home):
    path = write(tmp_path / "requests.jsonl", LINES)
    out = tmp_path / "results.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "pdbatch.cli", "run", str(path), "--model", "chat=smollm2-135m-instruct",
         "--model", "embeddings=multilingual-e5-small", "-o", str(out), "-q"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PDBATCH_HOME": str(pdbatch_home)})
    assert proc.returncode == 1, proc.stderr  # one line failed: the exit code says so
    lines = lines_of(out)
    for line in lines:
        check_output_line(line)
    by_id = {x["custom_id"]: x for x in lines}
    for cid in ("request-1", "request-2"):
        body = by_id[cid]["response"]["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
        assert body["model"] == "smollm2-135m-instruct"
    assert by_id["request-3"]["error"]["code"] == "invalid_request" and "n=2" in by_id["request-3"]["error"]["message"]
    assert len(by_id["request-4"]["response"]["body"]["data"][0]["embedding"]) == 384
    back = pdbatch.read_predictions(out)
    assert back.loc[["request-1", "request-2"], "response"].notna().all()
    assert len(back.loc["request-4", "embedding"]) == 384


def test_vertex_runs_the_file_on_the_jobs_model(vx, vertex_emulator, gcs_emulator, tmp_path):
    path = write(tmp_path / "requests.jsonl", LINES)
    model = {"chat": CHAT, "embeddings": "gemini-embedding-001"}
    job = pdbatch.run_requests(path, model=model, backend=vx, wait=False, progress=False)
    out = job.wait(progress=False).result()
    assert out.error.isna().tolist() == [True, True, False, True], out.error.tolist()
    assert out.response[0] == "echo: What is 2+2?"
    np.testing.assert_allclose(out.embedding[3], embed("The food was delicious."), rtol=1e-6)
    bodies = {b["model"]: b for b in creates(vertex_emulator)}
    assert set(bodies) == {f"publishers/openai/models/{CHAT}", "publishers/google/models/gemini-embedding-001"}
    # one job has one model: body.model is rewritten to it
    staged = staged_lines(gcs_emulator, bodies[f"publishers/openai/models/{CHAT}"])
    assert [x["custom_id"] for x in staged] == ["request-1", "request-2"]
    assert {x["body"]["model"] for x in staged} == {f"openai/{CHAT}"}
    job.write_output(tmp_path / "out.jsonl")
    lines = lines_of(tmp_path / "out.jsonl")
    for line in lines:
        check_output_line(line)
    back = pdbatch.read_predictions(tmp_path / "out.jsonl")
    assert back.loc["request-2", "response"] == "echo: Hello world!"
    assert "n=2" in back.loc["request-3", "error"]


def test_vertex_lines_agreeing_on_a_model_need_no_model_argument(vx, vertex_emulator, tmp_path):
    lines = [{**x, "body": {**x["body"], "model": f"openai/{CHAT}"}} for x in LINES[:2]]
    out = pdbatch.run_requests(write(tmp_path / "r.jsonl", lines), backend=vx, progress=False)
    assert out.error.isna().all()
    assert [b["model"] for b in creates(vertex_emulator)] == [f"publishers/openai/models/{CHAT}"]
    gpt = write(tmp_path / "gpt.jsonl", LINES[:2])
    with pytest.raises(pdbatch.ConfigError, match=r"'gpt-4o-mini' in body.model, which the vertex backend does "
                       r"not have\. .*Known: .*gpt-oss-120b-maas.*--model NAME .*model='NAME' in Python"):
        pdbatch.run_requests(gpt, backend=vx)
    assert len(creates(vertex_emulator)) == 1  # refused before anything was created
