"""Responses API lines (``/v1/responses``) in request files: run where a backend declares them, read as chat.

The answer below is the example response object of OpenAI's Responses API
reference (``output`` items of type ``message`` holding ``output_text``
parts, ``usage`` in ``input_tokens`` / ``output_tokens``), inside a batch
output line.
"""

from __future__ import annotations

import json

import pandas as pd

from pdbatch.backends import get_backend
from pdbatch.backends.openai import OpenAI
from pdbatch.builders.requestfile import INVALID_PREFIX, plan_lines
from pdbatch.lines.outputs import outcome
from pdbatch.results.parse import parse_bytes, parse_lines, typed

ANSWER = {
    "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b", "object": "response", "status": "completed",
    "model": "gpt-4.1-2025-04-14", "incomplete_details": None,
    "output": [{"type": "message", "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
                "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "In a peaceful grove beneath a silver moon...",
                             "annotations": []}]}],
    "usage": {"input_tokens": 36, "output_tokens": 87, "total_tokens": 123},
}


def _line(cid: str, body: dict, status: int = 200) -> bytes:
    return json.dumps({"id": f"batch_req_{cid}", "custom_id": cid, "error": None,
                       "response": {"status_code": status, "request_id": "req_1", "body": body}}).encode()


def test_a_responses_answer_fills_the_chat_columns_on_both_readers():
    cut = {**ANSWER, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    lines = [_line("a", ANSWER), _line("b", cut), _line("c", {"error": {"message": "bad input"}}, 400)]
    row = outcome(json.loads(lines[0]))
    assert (row.response, row.finish_reason, row.prompt_tokens, row.completion_tokens, row.error) == (
        "In a peaceful grove beneath a silver moon...", "stop", 36, 87, None)
    assert outcome(json.loads(lines[1])).finish_reason == "length"
    assert "bad input" in outcome(json.loads(lines[2])).error
    fast, reference = parse_bytes(b"\n".join(lines) + b"\n"), typed(parse_lines(lines))
    pd.testing.assert_frame_equal(fast, reference)


def test_only_a_backend_that_declares_the_endpoint_runs_its_lines(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    frame = pd.DataFrame({
        "custom_id": ["r1", "c1"], "method": ["POST", "POST"], "url": ["/v1/responses", "/v1/chat/completions"],
        "body": [{"model": "gpt-4.1-mini", "input": "Tell me a story."},
                 {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Hi"}]}]})
    planned = plan_lines(frame, OpenAI())
    assert [(g.kind, g.url, g.positions.tolist()) for g in planned.groups] == [
        ("chat", "/v1/chat/completions", [1]), ("chat", "/v1/responses", [0])]
    local = plan_lines(frame, get_backend("mock"))
    assert [g.url for g in local.groups] == ["/v1/chat/completions"]
    assert local.errors[0].startswith(INVALID_PREFIX + "url '/v1/responses' is not supported")
    empty = frame.assign(body=[{"model": "gpt-4.1-mini", "input": ""}, frame["body"][1]])
    assert "input must be" in plan_lines(empty, OpenAI()).errors[0]
