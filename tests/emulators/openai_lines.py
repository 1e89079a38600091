"""What the OpenAI Batch API emulator reads and writes: request lines checked as OpenAI checks them, synthetic answers.

REF = https://platform.openai.com/docs/api-reference, GUIDE = https://platform.openai.com/docs/guides/batch.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

# REF/batch/create, input_file_id: "The file can contain up to 50,000 requests".
MAX_LINES = 50_000
Problem = tuple[str, "int | None", str, "str | None"]  # code, line, message, param (REF/batch/object, errors)


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def check_lines(content: bytes, endpoint: str,
                max_lines: int = MAX_LINES) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The request lines of an input file, and what is wrong with them as a failed batch's ``errors.data`` lists it.

    REF/batch/request-input (custom_id, method POST, url, body), GUIDE ("Batch status": failed when the
    input file fails validation). The codes are those the service reports: invalid_json_line,
    duplicate_custom_id, url_mismatch, model_mismatch, empty_file, too_many_tasks.
    """
    errors: list[Problem] = []
    requests: list[dict[str, Any]] = []
    seen: set[Any] = set()
    models: set[Any] = set()
    lines = content.splitlines()
    for n, raw in enumerate(lines, 1):
        try:
            line = json.loads(raw)
            if not isinstance(line, dict):
                raise ValueError
        except ValueError:
            errors.append(("invalid_json_line", n, "This line is not parseable as valid JSON.", None))
            continue
        for field in ("custom_id", "method", "url", "body"):
            if field not in line:
                errors.append(("missing_required_parameter", n, f"Missing required parameter: '{field}'.",
                               field))
        if "custom_id" in line:
            if line["custom_id"] in seen:
                errors.append(("duplicate_custom_id", n, "The custom_id for this request is a duplicate "
                               "of another request. The custom_id parameter must be unique for each "
                               "request in a batch.", "custom_id"))
            seen.add(line["custom_id"])
        if "method" in line and line["method"] != "POST":  # REF/batch/request-input: "only POST"
            errors.append(("invalid_request", n, "Only the POST method is supported.", "method"))
        if "url" in line and line["url"] != endpoint:
            errors.append(("url_mismatch", n, f"The provided URL '{line['url']}' does not match the "
                           f"batch endpoint '{endpoint}'.", "url"))
        if isinstance(line.get("body"), dict):
            models.add(line["body"].get("model"))
            if len(models) > 1:  # GUIDE: "each input file can only include requests to a single model"
                errors.append(("model_mismatch", n, "The provided model does not match the model of "
                               "other requests in the batch.", "body.model"))
                models = {line["body"].get("model")}
        requests.append(line)
    if not lines:
        errors.append(("empty_file", None, "The batch input file is empty.", None))
    if len(lines) > max_lines:
        errors.append(("too_many_tasks", None, f"The batch input file has {len(lines)} requests, over the "
                       f"{max_lines} maximum.", None))
    return requests, errors


def answer(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    """A synthetic answer in the endpoint's response shape (REF/chat/object, REF/embeddings/object, ...)."""
    model = body.get("model")
    if endpoint == "/v1/embeddings":
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        data = [{"object": "embedding", "index": i,
                 "embedding": [b / 255 for b in hashlib.sha256(str(x).encode()).digest()[:8]]}
                for i, x in enumerate(inputs)]
        n = sum(len(str(x).split()) for x in inputs)
        return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": n, "total_tokens": n}}
    if endpoint == "/v1/responses":
        text = f"echo: {body.get('input')}"
        return {"id": _id("resp"), "object": "response", "status": "completed", "model": model,
                "output": [{"type": "message", "role": "assistant",
                            "content": [{"type": "output_text", "text": text}]}],
                "usage": {"input_tokens": 1, "output_tokens": len(text.split()), "total_tokens": 1}}
    last = (body.get("messages") or [{}])[-1].get("content")
    text = f"echo: {last}"
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        text = json.dumps(_instance((fmt.get("json_schema") or {}).get("schema") or {}, str(last)))
    elif fmt.get("type") == "json_object":
        text = json.dumps({"echo": last})
    prompt = sum(len(str(m.get("content")).split()) for m in body.get("messages") or [])
    return {"id": _id("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": len(text.split()),
                      "total_tokens": prompt + len(text.split())}}


def _instance(schema: dict[str, Any], text: str) -> Any:
    """The smallest value that satisfies ``schema`` (strings echo the prompt): what Structured Outputs guarantees."""
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return _instance(schema["anyOf"][0], text)
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        return {k: _instance(v, text) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return text
