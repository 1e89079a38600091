"""The OpenAI Batch API emulator refuses what OpenAI's API reference says the service refuses (real client)."""

from __future__ import annotations

import io
import json

import openai
import pytest

pytestmark = pytest.mark.slow  # starts the emulator

LINE = {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Hello world!"}]}}


@pytest.fixture
def client(openai_emulator):
    return openai.OpenAI(max_retries=0)


def _upload(client, lines, name="in.jsonl", purpose="batch"):
    data = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()
    return client.files.create(file=(name, io.BytesIO(data)), purpose=purpose)


def test_a_batch_runs_through_its_states(client, openai_emulator):
    f = _upload(client, [LINE, {**LINE, "custom_id": "request-2"}])
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                              metadata={"k": "v"})
    assert b.status == "validating" and b.metadata == {"k": "v"}
    openai_emulator.wait_for(b.id, "completed")
    b = client.batches.retrieve(b.id)
    assert (b.request_counts.total, b.request_counts.completed, b.error_file_id) == (2, 2, None)
    out = [json.loads(x) for x in client.files.content(b.output_file_id).text.splitlines()]
    assert {x["custom_id"] for x in out} == {"request-1", "request-2"}
    assert out[0]["response"]["status_code"] == 200 and out[0]["error"] is None


@pytest.mark.parametrize("change, field", [
    ({"endpoint": "/v1/unknown"}, "endpoint"),
    ({"completion_window": "48h"}, "completion_window"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
])
def test_create_refuses_what_the_reference_refuses(client, change, field):
    f = _upload(client, [LINE])
    args = {"input_file_id": f.id, "endpoint": "/v1/chat/completions", "completion_window": "24h", **change}
    with pytest.raises(openai.BadRequestError) as err:
        client.batches.create(**args)
    assert err.value.body["param"] == field


def test_a_file_must_have_the_batch_purpose_and_jsonl(client):
    with pytest.raises(openai.BadRequestError):
        _upload(client, [LINE], purpose="batches")
    with pytest.raises(openai.BadRequestError):
        _upload(client, [LINE], name="in.txt")
    f = _upload(client, [LINE], purpose="user_data")
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")


def test_a_wrong_key_is_refused(openai_emulator):
    with pytest.raises(openai.AuthenticationError) as err:
        openai.OpenAI(api_key="sk-wrong-key-1234", max_retries=0).batches.list()
    assert err.value.body["code"] == "invalid_api_key"


def test_bad_lines_fail_the_batch_with_errors_data(client, openai_emulator):
    f = _upload(client, ["not json", {k: v for k, v in LINE.items() if k != "custom_id"}, LINE, LINE,
                         {**LINE, "custom_id": "x", "method": "GET"},
                         {**LINE, "custom_id": "y", "body": {**LINE["body"], "model": "gpt-4o"}}])
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    openai_emulator.wait_for(b.id, "failed")
    errors = client.batches.retrieve(b.id).errors.data
    assert [(e.line, e.code) for e in errors] == [
        (1, "invalid_json_line"), (2, "missing_required_parameter"), (4, "duplicate_custom_id"),
        (5, "invalid_request"), (6, "model_mismatch")]


def test_list_pages_with_after_and_limit(client):
    f = _upload(client, [LINE])
    made = [client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                  completion_window="24h").id for _ in range(3)]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == made[::-1][:2] and page.has_more
    assert [b.id for b in client.batches.list(limit=2, after=made[1]).data] == [made[0]]
    assert [b.id for b in client.batches.list(limit=1)] == made[::-1]  # the client follows the pages


def test_expiry_and_cancel_write_the_unrun_rows_to_the_error_file(client, openai_emulator):
    openai_emulator.hold_after = 1
    f = _upload(client, [LINE, {**LINE, "custom_id": "request-2"}])
    ids = [client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                 completion_window="24h").id for _ in range(2)]
    for i in ids:
        openai_emulator.wait_for(i, "in_progress", answered=1)
    openai_emulator.expire(ids[0])
    client.batches.cancel(ids[1])
    openai_emulator.wait_for(ids[1], "cancelled")
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(ids[1])
    for batch_id, code in zip(ids, ["batch_expired", "batch_cancelled"], strict=True):
        b = client.batches.retrieve(batch_id)
        assert b.request_counts.completed == 1 and b.output_file_id
        (line,) = [json.loads(x) for x in client.files.content(b.error_file_id).text.splitlines()]
        assert line["response"] is None and line["error"]["code"] == code


def test_more_than_50000_requests_fail_the_batch(client, openai_emulator):
    lines = [json.dumps({**LINE, "custom_id": f"r{i}"}) for i in range(50_001)]
    b = client.batches.create(input_file_id=_upload(client, lines).id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    openai_emulator.wait_for(b.id, "failed")
    assert [e.code for e in client.batches.retrieve(b.id).errors.data] == ["too_many_tasks"]
