"""The Message Batches emulator refuses what Anthropic's API reference says the service refuses (real client)."""

from __future__ import annotations

import anthropic
import pytest

pytestmark = pytest.mark.slow  # starts the emulator

# The guide's example request.
REQ = {"custom_id": "my-first-request",
       "params": {"model": "claude-opus-4-6", "max_tokens": 1024,
                  "messages": [{"role": "user", "content": "Hello, world"}]}}


@pytest.fixture
def client(anthropic_emulator):
    return anthropic.Anthropic(max_retries=0)


def test_a_batch_runs_to_ended_and_its_results_match_by_custom_id(client, anthropic_emulator):
    b = client.messages.batches.create(requests=[REQ, {**REQ, "custom_id": "my-second-request"}])
    assert b.processing_status == "in_progress" and b.request_counts.processing == 2
    assert b.results_url is None and b.expires_at > b.created_at
    anthropic_emulator.wait_for(b.id, "ended")
    b = client.messages.batches.retrieve(b.id)
    assert (b.request_counts.succeeded, b.request_counts.processing) == (2, 0) and b.ended_at is not None
    results = {r.custom_id: r.result for r in client.messages.batches.results(b.id)}
    assert results["my-first-request"].type == "succeeded"
    assert results["my-first-request"].message.content[0].text == "echo: Hello, world"
    assert [x.id for x in client.messages.batches.list(limit=10)] == [b.id]


@pytest.mark.parametrize("custom_id, says", [("a" * 65, "at most 64 characters"), ("doc.1", "pattern"),
                                             ("", "pattern")])
def test_a_custom_id_outside_the_pattern_is_refused(client, anthropic_emulator, custom_id, says):
    with pytest.raises(anthropic.BadRequestError, match=says):
        client.messages.batches.create(requests=[{**REQ, "custom_id": custom_id}])
    assert not anthropic_emulator.batches


def test_duplicates_and_too_many_requests_are_refused(client, anthropic_emulator):
    with pytest.raises(anthropic.BadRequestError, match="duplicate custom_id"):
        client.messages.batches.create(requests=[REQ, REQ])
    anthropic_emulator.max_requests = 2  # as 100,001 requests would
    with pytest.raises(anthropic.BadRequestError, match="at most 2 items"):
        client.messages.batches.create(requests=[{**REQ, "custom_id": f"r{i}"} for i in range(3)])
    assert not anthropic_emulator.batches


def test_params_are_checked_per_request_when_the_batch_ends(client, anthropic_emulator):
    bad = {"custom_id": "no-cap", "params": {"model": "claude-opus-4-6",
                                             "messages": [{"role": "user", "content": "Hi"}]}}
    b = client.messages.batches.create(requests=[REQ, bad])
    anthropic_emulator.wait_for(b.id, "ended")
    results = {r.custom_id: r.result for r in client.messages.batches.results(b.id)}
    assert results["no-cap"].type == "errored"
    assert results["no-cap"].error.error.message == "max_tokens: Field required"
    assert client.messages.batches.retrieve(b.id).request_counts.errored == 1


def test_results_wait_for_the_end_and_an_ended_batch_cannot_be_cancelled(client, anthropic_emulator):
    anthropic_emulator.hold_after = 0
    b = client.messages.batches.create(requests=[REQ])
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        list(client.messages.batches.results(b.id))
    assert client.messages.batches.cancel(b.id).processing_status == "canceling"
    anthropic_emulator.wait_for(b.id, "ended")
    assert client.messages.batches.retrieve(b.id).request_counts.canceled == 1
    with pytest.raises(anthropic.BadRequestError, match="already ended"):
        client.messages.batches.cancel(b.id)


def test_a_wrong_key_is_refused(anthropic_emulator):
    with pytest.raises(anthropic.AuthenticationError, match="invalid x-api-key"):
        anthropic.Anthropic(api_key="sk-ant-wrong", max_retries=0).messages.batches.list()
