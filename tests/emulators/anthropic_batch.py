"""In-process emulator of Anthropic's Message Batches API, for the real ``anthropic`` client.

Written from Anthropic's API reference (REF = https://platform.claude.com/docs/en/api/messages/batches):
REF/create, REF/retrieve, REF/list, REF/cancel, REF/results, the MessageBatch object, and the
batch-processing guide (GUIDE = https://platform.claude.com/docs/en/build-with-claude/batch-processing).
What it serves::

    POST /v1/messages/batches                 create: {"requests": [{"custom_id", "params"}, ...]}
    GET  /v1/messages/batches?limit=&after_id= list, newest first
    GET  /v1/messages/batches/{id}            retrieve
    POST /v1/messages/batches/{id}/cancel     cancel
    GET  /v1/messages/batches/{id}/results    the results, JSONL (once ended)

A batch is ``in_progress`` from creation, answers ``pace`` requests per ``step`` seconds (at most
``hold_after`` until released), then ``ended``; ``cancel`` makes it ``canceling``, then ``ended``
with the unprocessed requests ``canceled``; ``expire(id)`` ends it now with them ``expired``.
Answers are synthetic ("echo: <last user message>", or a minimal instance of an
``output_config.format`` schema); result lines are shuffled. Tests steer it:

* ``emu.fail_when(custom_id, params) -> str | None``: that request is ``errored``
  (``invalid_request_error``);
* ``emu.faults["create"] = "500" | "hang"``: the next create makes the batch, then answers 500 /
  stalls past the client's timeout (an ambiguous create);
* ``emu.requests``: (method, path, headers) of every call.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import time
import urllib.parse
import uuid
from typing import Any

from ._http import BatchHttpEmulator
from .openai_lines import _instance

# REF/create: "requests ... minItems: 1, maxItems: 100000"; GUIDE, "Batch limitations": "limited
# to either 100,000 Message requests or 256 MB in size, whichever is reached first".
MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1024 * 1024
# REF/create, requests[].custom_id: "minLength: 1, maxLength: 64, pattern: ^[a-zA-Z0-9_-]{1,64}$".
CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")


class ApiError(Exception):
    """An error answer in Anthropic's shape: {"type": "error", "error": {"type", "message"}}."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.body = status, {"type": "error", "error": {"type": kind, "message": message},
                                          "request_id": f"req_{uuid.uuid4().hex[:24]}"}


def _iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


class AnthropicBatchEmulator(BatchHttpEmulator):
    """The Message Batches API on 127.0.0.1; ``url`` is the ``base_url`` for ``anthropic.Anthropic``."""

    def __init__(self, api_key: str = "sk-ant-api03-emulator0123456789abcdefKEYtail", step: float = 0.05,
                 seed: int = 0) -> None:
        super().__init__(api_key, step, seed)
        self.max_requests = MAX_REQUESTS  # tests lower it rather than send 100,001 requests

    # ------------------------------------------------------------ controls
    def sent(self, batch_id: str) -> list[dict[str, Any]]:
        """The requests the batch was created with, as received."""
        with self._lock:
            return json.loads(json.dumps(self.batches[batch_id]["requests"]))

    def wait_for(self, batch_id: str, *statuses: str, answered: int | None = None, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                done = len(self.batches[batch_id]["done"])
            b = self.batch(batch_id)
            if b["processing_status"] in statuses and (answered is None or done >= answered):
                return b
            time.sleep(0.02)
        raise TimeoutError(f"batch {batch_id} is {self.batch(batch_id)['processing_status']}, not {statuses}")

    def expire(self, batch_id: str) -> None:
        """The 24 hours end now (GUIDE: requests not processed by then are ``expired``)."""
        with self._lock:
            job = self.batches[batch_id]
            if job["object"]["processing_status"] == "in_progress":
                self._end(job, "expired")

    # ------------------------------------------------------------ HTTP
    def handle(self, method: str, url: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, str]:
        parsed = urllib.parse.urlsplit(url)
        path, query = parsed.path, dict(urllib.parse.parse_qsl(parsed.query))
        self.requests.append((method, path, headers))
        try:
            self._auth(headers)
            parts = path.rstrip("/").split("/")[1:]
            if parts[:3] != ["v1", "messages", "batches"]:
                raise ApiError(404, f"Not found: {method} {path}", "not_found_error")
            parts = parts[3:]
            if not parts and method == "POST":
                if len(raw) > MAX_BYTES:  # GUIDE, "Batch limitations": 256 MB
                    raise ApiError(413, "Request exceeds the maximum allowed number of bytes.", "request_too_large")
                return self._create(json.loads(raw or b"{}"))
            if not parts and method == "GET":
                return 200, self._list(query), "application/json"
            if len(parts) == 1 and method == "GET":
                return 200, self.batch(self._batch(parts[0])["object"]["id"]), "application/json"
            if len(parts) == 2 and parts[1] == "cancel" and method == "POST":
                return 200, self._cancel(parts[0]), "application/json"
            if len(parts) == 2 and parts[1] == "results" and method == "GET":
                return 200, self._results(parts[0]), "application/binary"
            raise ApiError(404, f"Not found: {method} {path}", "not_found_error")
        except ApiError as err:
            return err.status, err.body, "application/json"

    def _auth(self, headers: dict[str, str]) -> None:
        # REF (Overview, "Authentication"): the key in x-api-key; the anthropic SDK 2.x sends it as
        # "Authorization: Bearer <key>", which the service takes too (that client is what drives this
        # emulator). A wrong or missing key answers 401 authentication_error "invalid x-api-key".
        # anthropic-version is required (REF, "Versions"): a date such as 2023-06-01.
        given = {k.lower(): v for k, v in headers.items()}
        key = given.get("x-api-key") or given.get("authorization", "").removeprefix("Bearer ")
        if key != self.api_key:
            raise ApiError(401, "invalid x-api-key", "authentication_error")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", given.get("anthropic-version", "")):
            raise ApiError(400, "anthropic-version: header is required", "invalid_request_error")

    # ------------------------------------------------------------ batches
    def _create(self, body: dict[str, Any]) -> tuple[int, Any, str]:
        requests = body.get("requests")
        if not isinstance(requests, list) or not 1 <= len(requests) <= self.max_requests:  # REF/create: 1..100000
            raise ApiError(400, f"requests: List should have at least 1 item and at most {self.max_requests} items")
        seen: set[str] = set()
        for i, req in enumerate(requests):
            cid = req.get("custom_id") if isinstance(req, dict) else None
            if not isinstance(cid, str) or len(cid) > 64:
                # the service's own words for a 65-character id (anthropic-sdk-python issue #984)
                raise ApiError(400, f"requests.{i}.custom_id: String should have at most 64 characters")
            if not CUSTOM_ID.fullmatch(cid):
                raise ApiError(400, f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
            if cid in seen:  # REF/create: "Must be unique for each request within the Message Batch"
                raise ApiError(400, f"requests.{i}.custom_id: duplicate custom_id {cid!r}")
            seen.add(cid)
            if not isinstance(req.get("params"), dict):
                raise ApiError(400, f"requests.{i}.params: Field required")
        now = time.time()
        batch_id = f"msgbatch_{uuid.uuid4().hex[:24]}"
        obj = {"id": batch_id, "type": "message_batch", "processing_status": "in_progress",
               "request_counts": {"processing": len(requests), "succeeded": 0, "errored": 0, "canceled": 0,
                                  "expired": 0},
               "ended_at": None, "created_at": _iso(now), "expires_at": _iso(now + 86400),
               "archived_at": None, "cancel_initiated_at": None, "results_url": None}
        with self._lock:
            self.batches[batch_id] = {"object": obj, "requests": requests, "done": [], "results": None}
        fault = self.faults.pop("create", None)
        if fault == "500":
            raise ApiError(500, "Internal server error", "api_error")
        if fault == "hang":
            time.sleep(self.hang_seconds)
        return 200, self.batch(batch_id), "application/json"

    def _batch(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            if batch_id not in self.batches:
                raise ApiError(404, f"No message batch found with id '{batch_id}'", "not_found_error")
            return self.batches[batch_id]

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        # REF/list: limit 1..1000 (default 20), after_id / before_id cursors; newest first.
        limit = int(query.get("limit", 20))
        if not 1 <= limit <= 1000:
            raise ApiError(400, "limit: Input should be between 1 and 1000")
        with self._lock:
            ordered = [self.batch(i) for i in reversed(list(self.batches))]
        if "after_id" in query:
            ids = [b["id"] for b in ordered]
            ordered = ordered[ids.index(query["after_id"]) + 1:] if query["after_id"] in ids else []
        page = ordered[:limit]
        return {"data": page, "has_more": len(ordered) > limit, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None}

    def _cancel(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            obj = self._batch(batch_id)["object"]
            # REF/cancel: "Batches may be canceled any time before processing ends".
            if obj["processing_status"] == "ended":
                raise ApiError(400, f"Batch {batch_id} has already ended and cannot be canceled.")
            obj["processing_status"] = "canceling"
            obj["cancel_initiated_at"] = obj["cancel_initiated_at"] or _iso(time.time())
            return self.batch(batch_id)

    def _results(self, batch_id: str) -> bytes:
        with self._lock:
            job = self._batch(batch_id)
            if job["results"] is None:  # REF/results: available once processing has ended
                raise ApiError(404, f"Results for batch {batch_id} are not available yet", "not_found_error")
            return b"".join(json.dumps(x).encode() + b"\n" for x in job["results"])

    # ------------------------------------------------------------ the state machine
    def _tick(self, job: dict[str, Any]) -> None:
        status = job["object"]["processing_status"]
        if status == "in_progress":
            limit = len(job["requests"])
            if self.hold_after is not None:
                limit = min(limit, self.hold_after)
            todo = job["requests"][len(job["done"]):limit]
            for req in todo[: self.pace or len(todo)]:
                job["done"].append(self._answer(req))
            if len(job["done"]) == len(job["requests"]):
                self._end(job, None)
        elif status == "canceling":
            self._end(job, "canceled")

    def _answer(self, req: dict[str, Any]) -> dict[str, Any]:
        params = req["params"]
        problem = self.fail_when(req["custom_id"], params) if self.fail_when else None
        # GUIDE: "validation of the params object for each message request is performed
        # asynchronously, and validation errors are returned when processing of the entire batch
        # has ended": a request without its required fields (REF messages: model, messages,
        # max_tokens) is an errored result, not a refused batch.
        for field in ("model", "messages", "max_tokens"):
            if field not in params:
                problem = problem or f"{field}: Field required"
        if problem:
            return {"custom_id": req["custom_id"],
                    "result": {"type": "errored", "error": {"type": "error", "request_id": None, "error": {
                        "type": "invalid_request_error", "message": problem}}}}
        return {"custom_id": req["custom_id"], "result": {"type": "succeeded", "message": _message(params)}}

    def _end(self, job: dict[str, Any], unrun: str | None) -> None:
        obj = job["object"]
        results = list(job["done"])
        answered = {x["custom_id"] for x in results}
        if unrun is not None:
            results += [{"custom_id": r["custom_id"], "result": {"type": unrun}}
                        for r in job["requests"] if r["custom_id"] not in answered]
        self._rng.shuffle(results)  # REF/results: "not guaranteed to be in the same order as requests"
        counts = obj["request_counts"]
        counts["processing"] = 0
        for kind in ("succeeded", "errored", "canceled", "expired"):
            counts[kind] = sum(1 for x in results if x["result"]["type"] == kind)
        job["results"] = results
        obj["processing_status"], obj["ended_at"] = "ended", _iso(time.time())
        obj["results_url"] = f"{self.url}/v1/messages/batches/{obj['id']}/results"


def _message(params: dict[str, Any]) -> dict[str, Any]:
    """A Message object (REF messages: id, type, role, content, model, stop_reason, usage)."""
    last = params["messages"][-1]["content"]
    text = last if isinstance(last, str) else "".join(b.get("text", "") for b in last)
    fmt = (params.get("output_config") or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        answer = json.dumps(_instance(fmt["schema"], text))
    else:
        answer = "echo: " + text
    stop = "end_turn"
    cap = params["max_tokens"]
    words = answer.split(" ")
    if len(words) > cap:
        answer, stop = " ".join(words[:cap]), "max_tokens"
    prompt = sum(len(str(m.get("content")).split()) for m in params["messages"])
    prompt += len(str(params.get("system", "")).split())
    return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": params["model"],
            "content": [{"type": "text", "text": answer}], "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": len(answer.split(" ")),
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
