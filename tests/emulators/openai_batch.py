"""In-process emulator of OpenAI's Batch API (files + batches), for the real ``openai`` client.

Written from OpenAI's API reference (REF = https://platform.openai.com/docs/api-reference):
REF/files/create, REF/files/retrieve-contents, REF/batch/create, REF/batch/retrieve,
REF/batch/list, REF/batch/cancel, REF/batch/object, REF/batch/request-input,
REF/batch/request-output, and the Batch guide (GUIDE =
https://platform.openai.com/docs/guides/batch). What it serves::

    POST /v1/files                      multipart: file, purpose
    GET  /v1/files/{id}                 the file object
    GET  /v1/files/{id}/content         the bytes
    POST /v1/batches                    create
    GET  /v1/batches?after=&limit=      list, newest first
    GET  /v1/batches/{id}               retrieve
    POST /v1/batches/{id}/cancel        cancel

A batch moves validating -> in_progress -> finalizing -> completed on a
background thread, one ``step`` seconds apart (``pace`` rows answered per step,
``hold_after`` rows at most until released), or fails validation with
``errors.data`` as OpenAI reports bad lines. Answers are synthetic: "echo:
<last user message>" for chat, a hash vector for embeddings, and a minimal
instance of the schema for ``response_format`` json_schema (:mod:`.openai_lines`): the emulator
emulates the service, not a model. Output lines are shuffled. Tests steer it:

* ``emu.fail_when(custom_id, body) -> str | None``: that row answers HTTP 400;
* ``emu.expire(batch_id)``: the 24 h window ends now (answered rows in the
  output file, the rest ``batch_expired`` in the error file);
* ``emu.faults["create"] = "500" | "hang"``: the next create makes the batch,
  then answers 500 / stalls past the client's timeout (an ambiguous create);
  ``"503-before"``: it answers 503 without making one;
* ``emu.requests``: (method, path, headers) of every call.
"""
from __future__ import annotations

import email.parser
import email.policy
import json
import time
import urllib.parse
import uuid
from typing import Any

from ._http import BatchHttpEmulator
from .openai_lines import MAX_LINES, answer, check_lines

# REF/batch/create, "endpoint": the endpoints a batch may run.
ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations")
# REF/files/create, "purpose": one of these.
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
# REF/batch/create, input_file_id: "up to 50,000 requests, and can be up to 200 MB in size" (MAX_LINES too).
MAX_BYTES = 200 * 1024 * 1024
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
# REF/batch/request-output and GUIDE ("Batch expiration", "Cancelling a batch"): the error lines of
# requests a batch never ran.
EXPIRED = ("batch_expired", "This request could not be executed before the completion window expired.")
CANCELLED = ("batch_cancelled", "This request was not executed because the batch was cancelled.")


class ApiError(Exception):
    """An error answer in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.body = status, {"error": {"message": message, "type": kind, "param": param,
                                                    "code": code}}


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class OpenAIBatchEmulator(BatchHttpEmulator):
    """The Batch API on 127.0.0.1; ``url`` is the ``base_url`` for ``openai.OpenAI``."""

    methods = ("GET", "POST", "DELETE")
    url_suffix = "/v1"

    def __init__(self, api_key: str = "sk-proj-emulator0123456789abcdefKEYtail", step: float = 0.05,
                 seed: int = 0) -> None:
        super().__init__(api_key, step, seed)
        self.max_lines = MAX_LINES  # tests lower it rather than write 50,001 lines
        self.files: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------ controls
    def wait_for(self, batch_id: str, *statuses: str, answered: int | None = None, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            b = self.batch(batch_id)
            if b["status"] in statuses and (answered is None or b["request_counts"]["completed"] >= answered):
                return b
            time.sleep(0.02)
        raise TimeoutError(f"batch {batch_id} is {self.batch(batch_id)['status']}, not {statuses}")

    def expire(self, batch_id: str) -> None:
        """The completion window ends now (GUIDE, "Batch expiration")."""
        with self._lock:
            job = self.batches[batch_id]
            if job["object"]["status"] in ("validating", "in_progress"):
                self._finish(job, "expired", EXPIRED)

    def file_text(self, file_id: str) -> str:
        return self.files[file_id]["content"].decode()

    # ------------------------------------------------------------ HTTP
    def handle(self, method: str, url: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, str]:
        parsed = urllib.parse.urlsplit(url)
        path, query = parsed.path, dict(urllib.parse.parse_qsl(parsed.query))
        self.requests.append((method, path, headers))
        try:
            self._auth(headers)
            parts = path.rstrip("/").split("/")[1:]
            if parts[:1] != ["v1"]:
                raise ApiError(404, f"Invalid URL ({method} {path})")
            parts = parts[1:]
            if parts == ["files"] and method == "POST":
                return 200, self._upload(headers, raw), "application/json"
            if len(parts) == 2 and parts[0] == "files" and method == "GET":
                return 200, self._file(parts[1])["object"], "application/json"
            if len(parts) == 3 and parts[0] == "files" and parts[2] == "content" and method == "GET":
                return 200, self._file(parts[1])["content"], "application/octet-stream"
            if parts == ["batches"] and method == "POST":
                return self._create(json.loads(raw or b"{}"))
            if parts == ["batches"] and method == "GET":
                return 200, self._list(query), "application/json"
            if len(parts) == 2 and parts[0] == "batches" and method == "GET":
                return 200, self.batch(self._batch(parts[1])["object"]["id"]), "application/json"
            if len(parts) == 3 and parts[0] == "batches" and parts[2] == "cancel" and method == "POST":
                return 200, self._cancel(parts[1]), "application/json"
            raise ApiError(404, f"Invalid URL ({method} {path})")
        except ApiError as err:
            return err.status, err.body, "application/json"

    def _auth(self, headers: dict[str, str]) -> None:
        # REF (Authentication): "Authorization: Bearer OPENAI_API_KEY"; a wrong key answers 401
        # invalid_api_key, quoting the key masked (first characters and last four).
        given = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if given == f"Bearer {self.api_key}":
            return
        key = given.removeprefix("Bearer ")
        if not key:
            raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        masked = key[:7] + "*" * max(len(key) - 11, 0) + key[-4:]
        raise ApiError(401, f"Incorrect API key provided: {masked}. You can find your API key at "
                            f"https://platform.openai.com/account/api-keys.", code="invalid_api_key")

    # ------------------------------------------------------------ files
    def _upload(self, headers: dict[str, str], raw: bytes) -> dict[str, Any]:
        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
        fields: dict[str, Any] = {}
        for part in msg.iter_parts() if msg.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            fields[name] = (part.get_filename(), part.get_payload(decode=True))
        if "file" not in fields:
            raise ApiError(400, "Missing required parameter: 'file'.", param="file")
        purpose = (fields.get("purpose") or (None, b""))[1].decode()
        if purpose not in PURPOSES:  # REF/files/create: purpose is one of PURPOSES
            raise ApiError(400, f"'{purpose}' is not one of {list(PURPOSES)} - 'purpose'", param="purpose")
        filename, content = fields["file"]
        if purpose == "batch":
            # REF/files/create: "The Batch API only supports .jsonl files up to 200 MB in size."
            if not str(filename).endswith(".jsonl"):
                raise ApiError(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
            if len(content) > MAX_BYTES:
                raise ApiError(400, "File is too large for the Batch API: the maximum is 200 MB.", param="file")
        file_id = _id("file")
        obj = {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
               "filename": filename, "purpose": purpose, "status": "processed"}
        with self._lock:
            self.files[file_id] = {"object": obj, "content": content}
        return obj

    def _file(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            if file_id not in self.files:
                raise ApiError(404, f"No such File object: {file_id}", param="id")
            return self.files[file_id]

    def _add_file(self, name: str, lines: list[dict[str, Any]]) -> str | None:
        if not lines:
            return None
        self._rng.shuffle(lines)  # REF/batch/request-output: "may not match the order of the input"
        content = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
        file_id = _id("file")
        self.files[file_id] = {"object": {"id": file_id, "object": "file", "bytes": len(content),
                                          "created_at": int(time.time()), "filename": name,
                                          "purpose": "batch_output", "status": "processed"},
                               "content": content}
        return file_id

    # ------------------------------------------------------------ batches
    def _create(self, body: dict[str, Any]) -> tuple[int, Any, str]:
        # REF/batch/create: endpoint and completion_window ("Currently only 24h is supported").
        if body.get("endpoint") not in ENDPOINTS:
            raise ApiError(400, f"Invalid value: '{body.get('endpoint')}'. Supported values are: "
                                f"{', '.join(ENDPOINTS)}.", param="endpoint")
        if body.get("completion_window") != "24h":
            raise ApiError(400, f"Invalid value: '{body.get('completion_window')}'. Supported values are: "
                                f"'24h'.", param="completion_window")
        metadata = body.get("metadata") or {}
        # REF/batch/create, metadata: 16 pairs, keys up to 64 characters, values up to 512.
        if len(metadata) > 16 or any(len(k) > 64 or not isinstance(v, str) or len(v) > 512
                                     for k, v in metadata.items()):
            raise ApiError(400, "Invalid 'metadata': at most 16 keys of 64 characters, string values of "
                                "at most 512 characters.", param="metadata")
        if self.faults.get("create") == "503-before":  # refused before acting: nothing was created
            self.faults.pop("create")
            raise ApiError(503, "The engine is currently overloaded, please try again later.", kind="server_error")
        file = self._file(str(body.get("input_file_id")))
        if file["object"]["purpose"] != "batch":
            # REF/batch/create: the input file "must be uploaded with the purpose batch".
            raise ApiError(400, f"File {file['object']['id']} was not uploaded with purpose 'batch'.",
                           param="input_file_id")
        now = int(time.time())
        batch_id = _id("batch")
        obj = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
               "input_file_id": file["object"]["id"], "completion_window": "24h", "status": "validating",
               "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
               "expires_at": now + 86400, "finalizing_at": None, "completed_at": None, "failed_at": None,
               "expired_at": None, "cancelling_at": None, "cancelled_at": None,
               "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": metadata}
        with self._lock:
            self.batches[batch_id] = {"object": obj, "requests": [], "done": [], "held": False}
        fault = self.faults.pop("create", None)
        if fault == "500":  # the server acted, then the answer was lost
            raise ApiError(500, "The server had an error while processing your request.", kind="server_error")
        if fault == "hang":
            time.sleep(self.hang_seconds)
        return 200, self.batch(batch_id), "application/json"

    def _batch(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            if batch_id not in self.batches:
                raise ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
            return self.batches[batch_id]

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        # REF/batch/list: after (a cursor: an object id), limit 1..100 (default 20); newest first.
        limit = int(query.get("limit", 20))
        if not 1 <= limit <= 100:
            raise ApiError(400, f"Invalid 'limit': integer below minimum value or above maximum ({limit}).",
                           param="limit")
        with self._lock:
            ordered = [self.batch(i) for i in reversed(list(self.batches))]
        if "after" in query:
            ids = [b["id"] for b in ordered]
            ordered = ordered[ids.index(query["after"]) + 1:] if query["after"] in ids else []
        page = ordered[:limit]
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None, "has_more": len(ordered) > limit}

    def _cancel(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._batch(batch_id)
            obj = job["object"]
            if obj["status"] not in ("validating", "in_progress", "finalizing"):
                raise ApiError(409, f"Cannot cancel a batch with status '{obj['status']}'.")
            # REF/batch/cancel: "cancelling for up to 10 minutes, before changing to cancelled".
            obj["status"], obj["cancelling_at"] = "cancelling", int(time.time())
            return self.batch(batch_id)

    # ------------------------------------------------------------ the state machine
    def _tick(self, job: dict[str, Any]) -> None:
        obj = job["object"]
        status = obj["status"]
        if status == "validating":
            self._validate(job)
        elif status == "in_progress":
            limit = len(job["requests"])
            if self.hold_after is not None:
                limit = min(limit, self.hold_after)
            todo = job["requests"][len(job["done"]):limit]
            for req in todo[: self.pace or len(todo)]:
                job["done"].append(self._answer(obj, req))
                counts = obj["request_counts"]
                counts["completed" if job["done"][-1]["response"]["status_code"] == 200 else "failed"] += 1
            if len(job["done"]) == len(job["requests"]):
                obj["status"], obj["finalizing_at"] = "finalizing", int(time.time())
        elif status == "finalizing":
            self._finish(job, "completed", None)
        elif status == "cancelling":
            self._finish(job, "cancelled", CANCELLED)

    def _validate(self, job: dict[str, Any]) -> None:
        """Check each line as OpenAI does (REF/batch/request-input, GUIDE "Batch status", failed)."""
        obj = job["object"]
        content = self.files[obj["input_file_id"]]["content"]
        requests, errors = check_lines(content, obj["endpoint"], self.max_lines)
        now = int(time.time())
        if errors:
            obj["status"], obj["failed_at"] = "failed", now
            obj["errors"] = {"object": "list", "data": [{"code": c, "line": n, "message": m, "param": p}
                                                        for c, n, m, p in errors]}
            return
        job["requests"] = requests
        obj["status"], obj["in_progress_at"] = "in_progress", now
        obj["request_counts"]["total"] = len(requests)

    def _answer(self, obj: dict[str, Any], req: dict[str, Any]) -> dict[str, Any]:
        body = req["body"]
        line = {"id": _id("batch_req"), "custom_id": req["custom_id"], "error": None}
        problem = self.fail_when(req["custom_id"], body) if self.fail_when else None
        if problem:
            # REF/batch/request-output: a request the endpoint refused keeps its HTTP status and error body.
            line["response"] = {"status_code": 400, "request_id": uuid.uuid4().hex,
                                "body": {"error": {"message": problem, "type": "invalid_request_error",
                                                   "param": None, "code": None}}}
            return line
        line["response"] = {"status_code": 200, "request_id": uuid.uuid4().hex,
                            "body": answer(obj["endpoint"], body)}
        return line

    def _finish(self, job: dict[str, Any], status: str, unrun: tuple[str, str] | None) -> None:
        obj = job["object"]
        done = job["done"]
        ok = [x for x in done if x["response"]["status_code"] == 200]
        bad = [x for x in done if x["response"]["status_code"] != 200]
        if unrun is not None:
            answered = {x["custom_id"] for x in done}
            bad += [{"id": _id("batch_req"), "custom_id": r["custom_id"], "response": None,
                     "error": {"code": unrun[0], "message": unrun[1]}}
                    for r in job["requests"] if r["custom_id"] not in answered]
        # GUIDE: answers in output_file_id, failed requests in error_file_id (either may be absent).
        obj["output_file_id"] = self._add_file("batch_output.jsonl", ok)
        obj["error_file_id"] = self._add_file("batch_errors.jsonl", bad)
        if unrun is not None:
            obj["request_counts"]["failed"] = len(bad)
        obj["status"] = status
        obj[{"completed": "completed_at", "expired": "expired_at", "cancelled": "cancelled_at"}[status]] = \
            int(time.time())

