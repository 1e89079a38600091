"""OpenAI chat lines <-> Anthropic Message Batch requests and results (no server: pure conversion).

Result lines are shaped as the API reference's "Retrieve Message Batch results" examples.
"""

from __future__ import annotations

import json

import pytest

from pdbatch.backends import _anthropic_lines as al
from pdbatch.errors import ConfigError
from pdbatch.results.parse import parse_lines

LINE = {"custom_id": "row-0", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "claude-haiku-4-5", "max_completion_tokens": 64, "top_p": 0.9, "stop": "END",
                 "messages": [{"role": "system", "content": "Be brief."},
                              {"role": "developer", "content": [{"type": "text", "text": "No lists."}]},
                              {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                              {"role": "assistant", "content": "Hello"},
                              {"role": "user", "content": "Bye"}]}}


def test_a_chat_line_becomes_messages_params():
    assert al.request(LINE) == {"custom_id": "row-0", "params": {
        "model": "claude-haiku-4-5", "max_tokens": 64, "top_p": 0.9, "stop_sequences": ["END"],
        "system": "Be brief.\n\nNo lists.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                     {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]}}


@pytest.mark.parametrize("field, value, says", [
    ("seed", 1, "no equivalent"), ("n", 2, "one answer"), ("temperature", 2.0, "0 to 1"),
    ("response_format", {"type": "json_object"}, "json_object"), ("logprobs", True, "no equivalent"),
    ("messages", [{"role": "tool", "content": "x"}], "role 'tool'"),
    ("messages", [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "image_url"),
])
def test_what_anthropic_cannot_take_is_named(field, value, says):
    assert says in al.unsupported({field: value})[field]
    with pytest.raises(ConfigError, match="row 'row-0'"):
        al.request({**LINE, "body": {**LINE["body"], field: value}})


def test_nothing_is_refused_that_converts():
    assert al.unsupported({k: v for k, v in LINE["body"].items()}) == {}


@pytest.mark.parametrize("custom_id", ["a.b", "x" * 65, "", "ünï", 7])
def test_custom_ids_outside_anthropics_pattern_are_refused(custom_id):
    with pytest.raises(ConfigError, match="1 to 64 characters"):
        al.check_custom_id(custom_id)
    al.check_custom_id("request_1-" + "x" * 54)  # 64 of the allowed characters


@pytest.mark.parametrize("stop, finish", [("end_turn", "stop"), ("max_tokens", "length"),
                                          ("stop_sequence", "stop"), ("refusal", "content_filter")])
def test_a_succeeded_result_is_an_openai_answer(stop, finish):
    line = al.result_line({"custom_id": "row-3", "result": {"type": "succeeded", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}],
        "stop_reason": stop, "usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 5}}}})
    parsed = parse_lines([json.dumps(line).encode()])
    row = parsed.iloc[0]
    assert (row["custom_id"], row["response"], row["finish_reason"]) == ("row-3", "Hello there", finish)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (15, 3)
    assert row["error"] is None or row["error"] != row["error"]


@pytest.mark.parametrize("result, error", [
    ({"type": "errored", "error": {"type": "error", "error": {"type": "invalid_request_error",
                                                              "message": "max_tokens: Field required"}}},
     "HTTP 400: invalid_request_error: max_tokens: Field required"),
    ({"type": "errored", "error": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}},
     "HTTP 529: overloaded_error: Overloaded"),
    ({"type": "expired"}, "batch_expired: "),
    ({"type": "canceled"}, "batch_cancelled: "),
])
def test_other_results_are_the_rows_errors(result, error):
    line = al.result_line({"custom_id": "row-1", "result": result})
    row = parse_lines([json.dumps(line).encode()]).iloc[0]
    assert row["custom_id"] == "row-1" and row["error"].startswith(error)
