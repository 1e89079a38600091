"""Anthropic batch lines: OpenAI chat request lines in, Message Batch requests out, and results back.

The core writes and reads OpenAI lines; Anthropic's Message Batches API takes
``{"custom_id", "params"}`` requests whose ``params`` are Messages API
parameters (API reference, "Create a Message Batch",
platform.claude.com/docs/en/api/messages/batches/create), and returns one
result per request, ``{"custom_id", "result": {"type": "succeeded" |
"errored" | "canceled" | "expired", ...}}``, in any order (API reference,
"Retrieve Message Batch results"). The Anthropic backend converts both ways
here, at its boundary, and refuses (naming the field) what has no Messages
equivalent before anything is sent.

What maps (Messages API reference, ``messages.create`` parameters, as the
``anthropic`` SDK's ``MessageCreateParams`` types them):

* ``system``/``developer`` messages -> ``system``; user/assistant messages as they are
  (text, or OpenAI text parts -> Anthropic text blocks);
* ``max_tokens`` / ``max_completion_tokens`` -> ``max_tokens`` (required by Anthropic:
  a line without one gets pdbatch's default cap, :data:`~pdbatch.lines.params.DEFAULT_MAX_TOKENS`);
* ``temperature`` (Anthropic: 0 to 1), ``top_p``, ``stop`` -> ``stop_sequences``;
* ``response_format`` ``json_schema`` -> ``output_config.format`` ``{"type": "json_schema",
  "schema": ...}`` (structured outputs: generally available on the Claude API, doc
  "Structured outputs", platform.claude.com/docs/en/build-with-claude/structured-outputs; the
  batch guide: "Any request you can make to the Messages API can be included in a batch").
  ``json_object`` has no Anthropic equivalent (it takes a schema only): refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..lines.batchoutput import CANCELLED, EXPIRED
from ..lines.params import DEFAULT_MAX_TOKENS
from ._textmessages import read_messages, read_response_format

__all__ = ["CUSTOM_ID", "SUPPORTED", "check_custom_id", "request", "result_line", "unsupported"]

#: API reference, Create a Message Batch, requests[].custom_id: "minLength: 1, maxLength: 64,
#: pattern: ^[a-zA-Z0-9_-]{1,64}$".
CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_SIMPLE = {"temperature": "temperature", "top_p": "top_p"}
#: The chat body fields an Anthropic batch request can carry (the rest are refused, named).
SUPPORTED = frozenset({*_SIMPLE, "model", "messages", "max_tokens", "max_completion_tokens", "stop",
                       "response_format", "n"})
#: Messages API ``stop_reason`` -> OpenAI ``finish_reason`` (doc "Handling stop reasons").
FINISH = {"end_turn": "stop", "max_tokens": "length", "stop_sequence": "stop", "tool_use": "tool_calls",
          "pause_turn": "stop", "refusal": "content_filter", "model_context_window_exceeded": "length"}
#: Anthropic error types -> the HTTP status the API gives them (API reference, "Errors").
_HTTP = {"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
         "permission_error": 403, "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429,
         "api_error": 500, "overloaded_error": 529}


def check_custom_id(custom_id: Any) -> None:
    """Refuse a ``custom_id`` Anthropic would refuse, naming it and the fix (pdbatch never renames ids)."""
    if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
        raise ConfigError(
            f"custom_id {custom_id!r}: Anthropic's Message Batches take 1 to 64 characters of letters, digits, "
            f"'_' and '-' only (API reference, Create a Message Batch); rename it in the request file "
            f"(answers are joined by custom_id, so pdbatch does not rename it for you)"
        )


def unsupported(params: Mapping[str, Any]) -> dict[str, str]:
    """The chat body fields among ``params`` an Anthropic batch request cannot carry, each with why."""
    out = {name: f"the Messages API has no equivalent (pdbatch converts {', '.join(sorted(SUPPORTED - {'model'}))})"
           for name in params if name not in SUPPORTED}
    if params.get("n") not in (None, 1):
        out["n"] = "Anthropic returns one answer per request; leave n out"
    temperature = params.get("temperature")
    if isinstance(temperature, (int, float)) and not 0 <= temperature <= 1:
        out["temperature"] = "Anthropic's temperature ranges from 0 to 1 (OpenAI's goes to 2)"
    # A request file's line brings its own messages and response_format: what the
    # conversion (request) would refuse is said here, so that it is that line's error.
    for name, convert in (("messages", _messages), ("response_format", _output_config)):
        if params.get(name) is not None and name not in out:
            try:
                convert(params[name], None)
            except ConfigError as exc:
                out[name] = str(exc)
    return out


def _messages(messages: Any, row: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Anthropic ``messages`` and system texts of OpenAI ``messages``."""
    turns, system = read_messages(messages, row, "Anthropic")
    # a string stays a string; text parts stay Anthropic text blocks, one each
    return [{"role": role, "content": content if isinstance(content, str)
             else [{"type": "text", "text": t} for t in content]} for role, content in turns], system


def _output_config(value: Any, row: str | None) -> dict[str, Any]:
    kind, schema = read_response_format(value, row)
    if kind == "text":
        return {}
    if schema is not None:
        return {"output_config": {"format": {"type": "json_schema", "schema": schema}}}
    at = f"row {row}: " if row is not None else ""
    raise ConfigError(f"{at}response_format type {kind!r} has no Anthropic equivalent: Anthropic's structured "
                      f"outputs take a JSON schema (use 'json_schema', e.g. schema=... in pdbatch, or 'text')")


def request(line: Mapping[str, Any]) -> dict[str, Any]:
    """One OpenAI chat request line as a Message Batch request ``{"custom_id", "params"}``."""
    custom_id = line.get("custom_id")
    check_custom_id(custom_id)
    body = line.get("body") or {}
    row = repr(custom_id)
    refused = unsupported({k: v for k, v in body.items() if k != "messages"})
    if refused:
        named = "; ".join(f"{k}: {why}" for k, why in sorted(refused.items()))
        raise ConfigError(f"row {row}: {named}")
    messages, system = _messages(body.get("messages"), row)
    cap = body.get("max_tokens", body.get("max_completion_tokens"))
    params: dict[str, Any] = {"model": body.get("model"), "messages": messages,
                              "max_tokens": DEFAULT_MAX_TOKENS if cap is None else cap}
    if system:
        params["system"] = "\n\n".join(system)
    for field, target in _SIMPLE.items():
        if body.get(field) is not None:
            params[target] = body[field]
    stop = body.get("stop")
    if stop is not None:
        params["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("response_format") is not None:
        params.update(_output_config(body["response_format"], row))
    return {"custom_id": custom_id, "params": params}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def result_line(obj: Mapping[str, Any]) -> dict[str, Any]:
    """One Anthropic result line as an OpenAI batch output line (answer, HTTP error, or not-run error)."""
    custom_id = obj.get("custom_id")
    found = obj.get("result")
    result: dict[str, Any] = found if isinstance(found, dict) else {}
    kind = result.get("type")
    if kind == "succeeded" and isinstance(result.get("message"), dict):
        message = result["message"]
        blocks = message.get("content") or []
        text = "".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text")
        usage = message.get("usage") or {}
        # Cache writes and reads are input tokens too (billed at their own rates: doc "Prompt caching").
        prompt = sum(_count(usage.get(k)) for k in ("input_tokens", "cache_creation_input_tokens",
                                                     "cache_read_input_tokens"))
        completion = _count(usage.get("output_tokens"))
        body = {"id": message.get("id"), "object": "chat.completion", "model": message.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": FINISH.get(str(message.get("stop_reason")), "stop")}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}}
        return {"custom_id": custom_id, "response": {"status_code": 200, "body": body}, "error": None}
    if kind == "errored":
        err = (result.get("error") or {}).get("error") or {}
        kind_of = str(err.get("type") or "api_error")
        return {"custom_id": custom_id, "error": None,
                "response": {"status_code": _HTTP.get(kind_of, 500),
                             "body": {"error": {"message": f"{kind_of}: {err.get('message') or ''}".strip(),
                                                "type": kind_of}}}}
    if kind == "expired":
        return {"custom_id": custom_id, "response": None,
                "error": {"code": EXPIRED, "message": "the batch reached its 24-hour limit before this request "
                                                      "was processed (Anthropic result type 'expired')"}}
    if kind == "canceled":
        return {"custom_id": custom_id, "response": None,
                "error": {"code": CANCELLED, "message": "the batch was cancelled before this request was "
                                                        "processed (Anthropic result type 'canceled')"}}
    return {"custom_id": custom_id, "response": None,
            "error": {"code": "unreadable_result", "message": f"unknown Anthropic result type {kind!r}"}}
