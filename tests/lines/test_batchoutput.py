"""OpenAI batch output lines: checked against the format as OpenAI and vLLM document it.

``check_documented`` encodes the field table of OpenAI's Batch API reference
("The request output object": ``id`` string, ``custom_id`` string,
``response`` object or null with ``status_code`` integer, ``request_id``
string and ``body`` map, ``error`` object or null with ``code`` and
``message`` strings). The answers fed in are the documentation's own example
lines (OpenAI's reference, vLLM's run-batch results) and the shapes the
backends write, never lines made by pdbatch's writer.
"""

from __future__ import annotations

import orjson
import pytest

import pdbatch
from pdbatch.lines.batchoutput import FAILED, INVALID, answer, output_line, write_output

# OpenAI's Batch API reference, "The request output object", its example
OPENAI_OUTPUT = ('{"id": "batch_req_wnaDys", "custom_id": "request-2", "response": {"status_code": 200, '
                 '"request_id": "req_c187b3", "body": {"id": "chatcmpl-9758Iw", "object": "chat.completion", '
                 '"created": 1711475054, "model": "gpt-4o-mini", "choices": [{"index": 0, "message": {"role": '
                 '"assistant", "content": "2 + 2 equals 4."}, "finish_reason": "stop"}], "usage": {"prompt_tokens": '
                 '24, "completion_tokens": 15, "total_tokens": 39}, "system_fingerprint": null}}, "error": null}')
# vLLM's run-batch documentation: a chat result (the completion right in response) and an embeddings result
VLLM_CHAT = ('{"id":"vllm-383d1c59835645aeb2e07d004d62a826","custom_id":"request-1","response":{"id":'
             '"cmpl-61c020e54b964d5a98fa7527bfcdd378","object":"chat.completion","created":1715633336,"model":'
             '"meta-llama/Meta-Llama-3-8B-Instruct","choices":[{"index":0,"message":{"role":"assistant","content":'
             '"Hello! It\'s great to meet you!"},"logprobs":null,"finish_reason":"stop","stop_reason":null}],'
             '"usage":{"prompt_tokens":25,"total_tokens":56,"completion_tokens":31}},"error":null}')
VLLM_EMBEDDING = ('{"id":"vllm-db0f71f7dec244e6bce530e0b4ef908b","custom_id":"request-1","response":{"status_code":'
                  '200,"request_id":"vllm-batch-3580bf4d4ae54d52b67eee266a6eab20","body":{"id":"embd-33ac2efa",'
                  '"object":"list","created":444647,"model":"intfloat/e5-mistral-7b-instruct","data":[{"index":0,'
                  '"object":"embedding","embedding":[0.016204833984375,0.0092010498046875,0.0018358230590820312]}],'
                  '"usage":{"prompt_tokens":8,"total_tokens":8,"completion_tokens":0}}},"error":null}')
# vLLM's make_error_request_output: a 400 envelope with no body, the error as a string
VLLM_ERROR = ('{"id":"vllm-1","custom_id":"request-3","response":{"status_code":400,"request_id":"vllm-batch-2",'
              '"body":null},"error":"The model does not support Embeddings API"}')
# The local worker's and Vertex's shape (status empty on success), and Model Garden's (error "", id)
VERTEX_OK = ('{"custom_id": "row-0", "status": "", "processed_time": "2026-11-30T10:00:00Z", "response": '
             '{"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": '
             '"positive"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 12, "completion_tokens": 1}}}')
VERTEX_FAILED = ('{"custom_id": "row-1", "status": "invalid request: temperature=9: must be a number from 0 to 2", '
                 '"processed_time": "2026-11-30T10:00:00Z"}')
GARDEN_OK = ('{"custom_id": "row-2", "error": "", "id": "4c1f7e0e-6a8f-4d2b-9c1e-1a2b3c4d5e6f", "response": '
             '{"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": '
             '"negative"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 1}}}')


def check_documented(line: dict) -> None:
    """The output line has exactly the documented fields, of the documented types."""
    assert set(line) == {"id", "custom_id", "response", "error"}
    assert isinstance(line["id"], str) and line["id"]
    assert isinstance(line["custom_id"], str)
    response, error = line["response"], line["error"]
    assert (response is None) != (error is None), "an answer or an error, not both"
    if response is not None:
        assert set(response) == {"status_code", "request_id", "body"}
        assert type(response["status_code"]) is int and response["status_code"] == 200
        assert isinstance(response["request_id"], str) and response["request_id"]
        assert isinstance(response["body"], dict)
    else:
        assert set(error) == {"code", "message"}
        assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]


def rewrite(raw: str, job_id: str = "local-20261130-100000-abcdef") -> dict:
    obj = orjson.loads(raw)
    body, error = answer(obj)
    return output_line(job_id, obj["custom_id"], body, None if error is None else (FAILED, error),
                       request_id=obj.get("id") if isinstance(obj.get("id"), str) else None)


@pytest.mark.parametrize("raw", [OPENAI_OUTPUT, VLLM_CHAT, VLLM_EMBEDDING, VLLM_ERROR, VERTEX_OK, VERTEX_FAILED,
                                 GARDEN_OK])
def test_every_answer_shape_becomes_a_documented_output_line(raw):
    line = rewrite(raw)
    check_documented(line)
    assert line["custom_id"] == orjson.loads(raw)["custom_id"]


def test_the_answer_is_the_backends_own_body():
    doc = orjson.loads(OPENAI_OUTPUT)
    assert rewrite(OPENAI_OUTPUT)["response"]["body"] == doc["response"]["body"]
    assert rewrite(VLLM_CHAT)["response"]["body"] == orjson.loads(VLLM_CHAT)["response"]
    assert rewrite(VERTEX_OK)["response"]["body"] == orjson.loads(VERTEX_OK)["response"]
    assert rewrite(VLLM_EMBEDDING)["response"]["body"]["data"][0]["embedding"][0] == 0.016204833984375


def test_failed_lines_carry_code_and_message():
    line = rewrite(VERTEX_FAILED)
    assert line["error"] == {"code": FAILED, "message": "invalid request: temperature=9: must be a number from 0 to 2"}
    assert rewrite(VLLM_ERROR)["error"]["message"] == "The model does not support Embeddings API"
    invalid = output_line("job", "request-9", error=(INVALID, "url '/v1/completions' is not supported"))
    check_documented(invalid)
    assert invalid["response"] is None


def test_ids_are_stable_per_job_and_line_and_the_backends_request_id_is_kept():
    a, b = rewrite(VERTEX_OK), rewrite(VERTEX_OK)
    assert a == b and a["id"].startswith("batch_req_")
    assert rewrite(VERTEX_OK, job_id="other")["id"] != a["id"]
    assert rewrite(GARDEN_OK)["response"]["request_id"] == "4c1f7e0e-6a8f-4d2b-9c1e-1a2b3c4d5e6f"
    with pytest.raises(ValueError):
        output_line("job", "x")


def test_written_output_reads_back_as_the_documented_lines_do(tmp_path):
    raws = [OPENAI_OUTPUT, VERTEX_OK, VERTEX_FAILED, GARDEN_OK, VLLM_EMBEDDING.replace("request-1", "emb-1")]
    ours = tmp_path / "ours.jsonl"
    assert write_output(ours, [rewrite(r) for r in raws]) == 5
    theirs = tmp_path / "theirs.jsonl"
    theirs.write_text("\n".join(raws) + "\n")
    mine, docs = pdbatch.read_predictions(ours), pdbatch.read_predictions(theirs)
    for col in ("response", "finish_reason", "prompt_tokens", "completion_tokens"):
        assert mine[col].tolist() == docs[col].tolist(), col
    # read back, an error shows its code first, as read_predictions shows every {code, message}
    assert mine["error"].isna().tolist() == docs["error"].isna().tolist()
    assert mine.loc["row-1", "error"] == f"{FAILED}: {docs.loc['row-1', 'error']}"
    assert mine.loc["request-2", "response"] == "2 + 2 equals 4."
    assert mine.loc["request-2", "prompt_tokens"] == 24
    assert mine.loc["emb-1", "embedding"].tolist() == docs.loc["emb-1", "embedding"].tolist()
    for line in ours.read_bytes().splitlines():
        check_documented(orjson.loads(line))
