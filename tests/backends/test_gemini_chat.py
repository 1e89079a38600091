"""Gemini chat lines on Vertex (issue 26, part 2): conversion both ways, from Google's documented examples.

Fast: no emulator. The round trips through the Vertex emulator are in
tests/backends/test_vertex_gemini.py.
"""

from __future__ import annotations

import re
from datetime import date

import pandas as pd
import pytest

from pdbatch import models
from pdbatch.backends import _gemini_chat
from pdbatch.errors import ConfigError
from pdbatch.models import parse_vertex, resolve_vertex

FLASH = parse_vertex("gemini-3.5-flash")


def line(body: dict, custom_id: str = "row-0") -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


# ------------------------------------------------------------ requests
def test_the_documented_chef_example_becomes_a_gemini_request_line():
    # SPEC.md "Input request lines" (OpenAI) and Google's BigQuery batch example (Gemini): the same request.
    body = {"model": "google/gemini-3.5-flash",
            "messages": [{"role": "system", "content": "You are a chef."},
                         {"role": "user", "content": "Give me a recipe for banana bread."}],
            "max_tokens": 1000, "temperature": 0.9, "top_p": 1, "seed": 7, "stop": "END", "reasoning_effort": "low"}
    assert _gemini_chat.request_line(FLASH, line(body)) == {
        "key": "row-0",
        "request": {
            "contents": [{"role": "user", "parts": [{"text": "Give me a recipe for banana bread."}]}],
            "systemInstruction": {"parts": [{"text": "You are a chef."}]},
            "generationConfig": {"maxOutputTokens": 1000, "temperature": 0.9, "topP": 1, "seed": 7,
                                 "stopSequences": ["END"], "thinkingConfig": {"thinkingLevel": "LOW"}},
        },
    }


def test_assistant_turns_become_model_turns_and_text_parts_are_joined():
    body = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                         {"role": "user", "content": [{"type": "text", "text": "How "}, {"type": "text",
                                                                                        "text": "are you?"}]}]}
    request = _gemini_chat.request_line(FLASH, line(body))["request"]
    assert request["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]},
                                   {"role": "model", "parts": [{"text": "Hello"}]},
                                   {"role": "user", "parts": [{"text": "How are you?"}]}]
    assert "generationConfig" not in request and "systemInstruction" not in request


def test_a_json_schema_becomes_response_json_schema():
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["pos", "neg"]}},
              "required": ["label"], "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}}
    body = {"messages": [{"role": "user", "content": "Great!"}], "response_format": fmt}
    config = _gemini_chat.request_line(FLASH, line(body))["request"]["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    body["response_format"] = {"type": "json_object"}
    assert _gemini_chat.request_line(FLASH, line(body))["request"]["generationConfig"] == {
        "responseMimeType": "application/json"}


@pytest.mark.parametrize(("body", "message"), [
    ({"logprobs": True}, r"row 'row-0': body field\(s\) logprobs cannot be sent to google/gemini-3.5-flash"),
    ({"tools": [{"type": "function"}]}, r"body field\(s\) tools cannot be sent"),
    ({"n": 2}, r"n=2: pdbatch keeps one answer per row"),
    ({"reasoning_effort": "none"}, r"reasoning_effort='none': Gemini's thinking levels are minimal, low"),
    ({"response_format": {"type": "grammar"}}, r"response_format type 'grammar' has no Gemini equivalent"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     r"messages\[0\]: content part of type 'image_url' is not converted"),
    ({"messages": [{"role": "tool", "content": "42"}]}, r"messages\[0\]: role 'tool' has no Gemini equivalent"),
])
def test_what_gemini_cannot_take_is_refused_naming_the_field_and_row(body, message):
    body = {"messages": [{"role": "user", "content": "Hi"}], **body}
    with pytest.raises(ConfigError, match=message):
        _gemini_chat.request_line(FLASH, line(body))


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"logprobs": True}, "logprobs", r"Gemini batch lines have no equivalent"),
    ({"n": 2}, "n", r"pdbatch keeps one answer per row"),
    ({"reasoning_effort": "none"}, "reasoning_effort", r"Gemini's thinking levels are minimal"),
    ({"response_format": {"type": "grammar"}}, "response_format", r"type 'grammar' has no Gemini equivalent"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format",
     r"json_schema.schema must be a JSON schema object"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages",
     r"^messages\[0\]: content part of type 'image_url' is not converted"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages", r"^messages\[0\]: role 'tool' has no Gemini"),
    ({"messages": [{"role": "system", "content": "Be brief."}]}, "messages", r"^a Gemini request needs a user"),
])
def test_what_the_conversion_would_refuse_is_named_before_it_by_unsupported(body, field, message):
    # A request file's line is asked with its whole body (builders/linecheck.model_problem): everything
    # request_line would refuse at submit time is named here first, so that it is that line's error alone.
    body = {"messages": [{"role": "user", "content": "Hi"}], **body}
    with pytest.raises(ConfigError):
        _gemini_chat.request_line(FLASH, line(body))
    refused = _gemini_chat.unsupported(body)
    assert list(refused) == [field]
    assert re.search(message, refused[field]), refused
    assert not refused[field].startswith("row")  # a line's error is on its row already


def test_a_body_gemini_takes_is_refused_nothing():
    body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                         {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]}],
            "max_tokens": 9, "stop": ["x"], "n": 1, "reasoning_effort": "low",
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}}
    _gemini_chat.request_line(FLASH, line(body))
    assert _gemini_chat.unsupported(body) == {}


# ------------------------------------------------------------ outputs
def test_a_documented_output_line_becomes_a_chat_completion():
    # Google's Gemini batch output: the input echoed, status "", processed_time, a GenerateContentResponse.
    raw = {"key": "row-3", "status": "", "processed_time": "2026-12-06T10:00:00.000+00:00",
           "request": {"contents": [{"role": "user", "parts": [{"text": "Why is the sky blue?"}]}]},
           "response": {"candidates": [{"avgLogprobs": -0.2, "content": {"role": "model", "parts": [
               {"text": "Because of "}, {"text": "Rayleigh scattering."}]}, "finishReason": "STOP"}],
               "modelVersion": "gemini-3.5-flash", "usageMetadata": {
                   "promptTokenCount": 6, "candidatesTokenCount": 9, "thoughtsTokenCount": 4,
                   "totalTokenCount": 19}}}
    assert _gemini_chat.output_line(raw) == {"custom_id": "row-3", "response": {
        "object": "chat.completion", "model": "gemini-3.5-flash",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Because of Rayleigh scattering."},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 6, "completion_tokens": 13, "total_tokens": 19}}}


def test_failed_lines_truncation_and_blocked_answers():
    status = 'Bad Request: {"error": {"code": 400, "message": "Invalid", "status": "INVALID_ARGUMENT"}}'
    assert _gemini_chat.output_line({"key": "a", "status": status, "request": {}}) == {"custom_id": "a",
                                                                                        "status": status}
    cut = {"key": "b", "status": "", "response": {"candidates": [
        {"content": {"parts": [{"text": "Once upon"}]}, "finishReason": "MAX_TOKENS"}]}}
    assert _gemini_chat.output_line(cut)["response"]["choices"][0]["finish_reason"] == "length"
    blocked = {"key": "c", "status": "", "response": {"candidates": [{"finishReason": "SAFETY"}]}}
    assert _gemini_chat.output_line(blocked) == {
        "custom_id": "c", "status": "Gemini stopped without an answer: finishReason SAFETY"}
    prompt_blocked = {"key": "d", "status": "", "response": {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}}
    assert "prompt blocked: PROHIBITED_CONTENT" in _gemini_chat.output_line(prompt_blocked)["status"]


# ------------------------------------------------------------ catalog and prices
def test_the_catalog_places_gemini_models_and_retires_gemini_2_5():
    flash = resolve_vertex("gemini-3.5-flash", "chat")
    assert (flash.resource, flash.wire, flash.region) == ("publishers/google/models/gemini-3.5-flash",
                                                          "gemini-chat", "global")
    assert resolve_vertex("google/gemini-3.1-flash-lite", "chat").launched == date(2026, 5, 7)
    with pytest.raises(ConfigError, match=r"Vertex AI retired google/gemini-2.5-flash on 2026-10-20.*"
                                          r"gemini-3.5-flash"):
        resolve_vertex("gemini-2.5-flash", "chat")
    with pytest.raises(ConfigError, match=r"runs batch jobs only in global.*Vertex\(location='global'\)"):
        resolve_vertex("gemini-3.5-flash", "chat", location="us-central1")
    table = models.list_models(on=date(2026, 12, 6)).set_index("name")
    assert table.loc["gemini-2.5-pro", "status"] == "retired"
    assert table.loc["gemini-3.5-flash-lite", "status"] == "live"
    assert models.list_models(on=date(2026, 9, 1)).set_index("name").loc["gemini-2.5-flash", "status"] == "live"


def test_preview_prices_gemini_where_a_price_is_known():
    from pdbatch.backends.vertex import Vertex

    df = pd.DataFrame({"t": ["good", "bad"]})
    vx = Vertex(project="p", staging="gs://my-bucket/x/", preflight=False)
    pv = df.llama.preview("{t}", model="gemini-3.5-flash-lite", backend=vx, max_tokens=10)
    # batch = half of the online $0.30 / $2.50 per million: an upper bound with max_tokens per answer
    assert pv.estimated_cost is not None and pv.estimated_cost <= (sum(pv.prompt_tokens) * 0.15 + 20 * 1.25) / 1e6
    assert pv.estimated_cost >= 20 * 1.25 / 1e6
    unknown = df.llama.preview("{t}", model="gemini-4-argon", backend=vx, max_tokens=10)
    assert unknown.estimated_cost is None and "unknown" in repr(unknown)


def test_the_backend_refuses_what_gemini_cannot_take_before_anything_is_written(tmp_path):
    from pdbatch.backends.vertex import Vertex

    df = pd.DataFrame({"t": ["good", "bad"]})
    vx = Vertex(project="p", staging="gs://my-bucket/x/", preflight=False)
    with pytest.raises(ConfigError, match=r"google/gemini-3.5-flash cannot take 2 request parameter\(s\) \(nothing "
                                          r"was sent\): logit_bias=\{'1': 5\}: Gemini batch lines have no "
                                          r"equivalent .*; user='alice': Gemini batch lines"):
        df.llama.preview("{t}", model="gemini-3.5-flash", backend=vx, logit_bias={"1": 5}, user="alice")
    # the same fields go to the open models, which take OpenAI bodies as they are
    assert df.llama.preview("{t}", model="gpt-oss-120b-maas", backend=vx, logit_bias={"1": 5}).n_requests == 2
