"""Gemini chat batch lines: OpenAI chat request lines in, Gemini lines out, and back.

Gemini models on Vertex AI do not read OpenAI lines. Each input line holds a
``GenerateContentRequest`` under ``request`` (doc: "Batch inference from Cloud
Storage", .../models/capabilities/batch-prediction-from-cloud-storage)::

    {"key": "row-0", "request": {"contents": [{"role": "user", "parts": [{"text": "..."}]}],
                                 "systemInstruction": {"parts": [{"text": "You are a chef."}]},
                                 "generationConfig": {"temperature": 0.9, "topP": 1, "maxOutputTokens": 256}}}

and each output line echoes the input line (its extra keys too: SPEC.md "Output
lines", which is how ``key``, the row's ``custom_id``, survives; output order is
not input order) with ``status`` (empty on success), ``processed_time`` and,
on success, a ``GenerateContentResponse``::

    {"key": "row-0", "request": {...}, "status": "", "processed_time": "...",
     "response": {"candidates": [{"content": {"role": "model", "parts": [{"text": "..."}]},
                                  "finishReason": "STOP"}],
                  "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 20, ...}}}

A failed line has a non-empty ``status`` and no ``response``. The core keeps
writing and reading OpenAI lines: the Vertex backend converts them here, at
its boundary, and refuses (naming the field and the row) what has no Gemini
equivalent, before anything is uploaded.

``reasoning_effort`` becomes ``thinkingConfig.thinkingLevel``.

Structured output: ``response_format={"type": "json_schema", ...}`` becomes
``responseMimeType: "application/json"`` with ``responseJsonSchema`` (Gemini's
``GenerationConfig`` takes a JSON Schema there, "an alternative to
responseSchema", which then must be omitted; doc: Firebase AI Logic reference,
``GenerationConfig.responseJsonSchema``); pdbatch has already written out
``$defs``/``$ref`` (SPEC.md: the Gemini importer fails a job on them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigError
from ..models import VertexModel
from ._gcp import BqUri, GcsUri
from ._gemini_lines import count, rewrite
from ._textmessages import read_messages, read_response_format

__all__ = ["SUPPORTED", "from_gemini_file", "output_line", "prepare", "request_line", "to_gemini_file",
           "unsupported"]

# OpenAI chat body field -> generationConfig field (same meaning and range).
_CONFIG = {
    "max_tokens": "maxOutputTokens",
    "max_completion_tokens": "maxOutputTokens",
    "temperature": "temperature",
    "top_p": "topP",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
# reasoning_effort -> generationConfig.thinkingConfig.thinkingLevel (Vertex AI v1 API reference,
# GenerationConfig.ThinkingConfig.ThinkingLevel: MINIMAL, LOW, MEDIUM, HIGH; which a model takes
# is the service's to say). "none" has no level: refused.
_THINKING = {"minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH"}
#: The chat body fields a Gemini batch line can carry (the rest are refused, named).
SUPPORTED = frozenset({*_CONFIG, "model", "messages", "stop", "response_format", "n", "reasoning_effort"})
# Gemini's finishReason -> OpenAI's finish_reason. Blocked answers keep their text when
# there is any (finish_reason "content_filter"); without text the row is an error naming the reason.
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
           "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
           "IMAGE_SAFETY": "content_filter", "LANGUAGE": "content_filter", "OTHER": "stop",
           "MALFORMED_FUNCTION_CALL": "stop", "FINISH_REASON_UNSPECIFIED": "stop"}
_ROLES = {"user": "user", "assistant": "model"}


def unsupported(params: Mapping[str, Any]) -> dict[str, str]:
    """The chat body fields among ``params`` a Gemini request line cannot carry, each with why."""
    out = {name: f"Gemini batch lines have no equivalent (they take {', '.join(sorted(SUPPORTED - {'model'}))})"
           for name in params if name not in SUPPORTED}
    if params.get("n") not in (None, 1):
        out["n"] = "pdbatch keeps one answer per row; leave n out"
    effort = params.get("reasoning_effort")
    if effort is not None and effort not in _THINKING:
        out["reasoning_effort"] = f"Gemini's thinking levels are {', '.join(_THINKING)}"
    # A request file's line brings its own messages and response_format: what the
    # conversion (request_line) would refuse is said here, so that it is that line's error.
    for name, convert in (("messages", _contents), ("response_format", _response_format)):
        if params.get(name) is not None and name not in out:
            try:
                convert(params[name], None)
            except ConfigError as exc:
                out[name] = str(exc)
    return out


def prepare(model: VertexModel, files: list[Path], staging: GcsUri | BqUri, output: GcsUri | BqUri | None) -> None:
    """Refuse BigQuery and rewrite ``files`` as Gemini chat lines.

    Gemini batch jobs can read a table with a ``request`` column (doc: "Batch
    inference for BigQuery"), but the job and its tables must be in the same
    region, and the catalog places these models in ``global`` only, where no
    dataset lives; pdbatch's BigQuery staging also writes OpenAI ``body``
    columns. So BigQuery is refused here rather than sent to fail.
    """
    for uri, what in ((staging, "staging"), (output, "output")):
        if isinstance(uri, BqUri):
            raise ConfigError(
                f"{what}={uri}: pdbatch runs {model.body_name} from JSONL files in Cloud Storage only: its "
                f"batch jobs run in {', '.join(model.locations) or 'global'}, and a BigQuery dataset must be in "
                f"the job's region (its BigQuery staging also writes OpenAI request bodies, which Gemini "
                f"models do not read); use {what}='gs://bucket/prefix/'"
            )
    for path in files:
        to_gemini_file(model, path)


def _contents(messages: Any, row: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Gemini ``contents`` and system texts of OpenAI ``messages``; ``row`` (None: no row) starts each refusal."""
    turns, system = read_messages(messages, row, "Gemini")
    return [{"role": _ROLES[role], "parts": [{"text": content if isinstance(content, str) else "".join(content)}]}
            for role, content in turns], system


def _response_format(value: Any, row: str | None) -> dict[str, Any]:
    """Gemini generationConfig fields of an OpenAI ``response_format``; ``row`` (None: no row) starts each refusal."""
    kind, schema = read_response_format(value, row)
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if schema is not None:
        return {"responseMimeType": "application/json", "responseJsonSchema": schema}
    at = f"row {row}: " if row is not None else ""
    raise ConfigError(f"{at}response_format type {kind!r} has no Gemini equivalent "
                      f"(use 'text', 'json_object' or 'json_schema')")


def request_line(model: VertexModel, line: dict[str, Any]) -> dict[str, Any]:
    """One OpenAI chat request line as a Gemini batch input line ``{"key", "request"}``."""
    body = line.get("body") or {}
    row = repr(line.get("custom_id"))
    refused = sorted(k for k in body if k not in SUPPORTED)
    if refused:
        raise ConfigError(
            f"row {row}: body field(s) {', '.join(refused)} cannot be sent to {model.body_name}: Gemini batch "
            f"lines take {', '.join(sorted(SUPPORTED - {'model'}))} (converted to contents, systemInstruction "
            f"and generationConfig); leave the others out"
        )
    contents, system = _contents(body.get("messages"), row)
    config: dict[str, Any] = {}
    for field, target in _CONFIG.items():
        if body.get(field) is not None:
            config[target] = body[field]
    stop = body.get("stop")
    if stop is not None:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("n") not in (None, 1):
        raise ConfigError(f"row {row}: n={body['n']!r}: pdbatch keeps one answer per row; leave n out")
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in _THINKING:
            raise ConfigError(f"row {row}: reasoning_effort={effort!r}: Gemini's thinking levels are "
                              f"{', '.join(_THINKING)}")
        config["thinkingConfig"] = {"thinkingLevel": _THINKING[effort]}
    if body.get("response_format") is not None:
        config.update(_response_format(body["response_format"], row))
    request: dict[str, Any] = {"contents": contents}
    if system:
        request["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    if config:
        request["generationConfig"] = config
    return {"key": line["custom_id"], "request": request}


def to_gemini_file(model: VertexModel, path: Path) -> None:
    """Rewrite an OpenAI chat request file in place as Gemini lines; on a refusal the file is left as it was."""
    tmp = path.with_name(path.name + ".gemini")
    try:
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            for raw in src:
                if raw.strip():
                    dst.write(orjson.dumps(request_line(model, orjson.loads(raw))) + b"\n")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def output_line(obj: dict[str, Any]) -> dict[str, Any]:
    """One Gemini output line as an OpenAI-shaped one (``custom_id`` + ``chat.completion``, or ``status``)."""
    key = obj.get("key", obj.get("custom_id"))
    status = obj.get("status")
    if isinstance(status, str) and status.strip():
        return {"custom_id": key, "status": status}
    response = obj.get("response")
    if isinstance(response, str):  # a JSON column read back as text
        with contextlib.suppress(orjson.JSONDecodeError):
            response = orjson.loads(response)
    if not isinstance(response, dict):
        return {"custom_id": key, "status": f"no response in the output line: {orjson.dumps(obj)[:200]!r}"}
    candidates = response.get("candidates")
    candidate = candidates[0] if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict) \
        else {}
    parts = (candidate.get("content") or {}).get("parts") or []
    # Thinking models may return thought summaries as parts marked "thought": not the answer.
    text = "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict) and not p.get("thought"))
    reason = str(candidate.get("finishReason") or "")
    if not candidate:
        blocked = (response.get("promptFeedback") or {}).get("blockReason") or "no candidates"
        return {"custom_id": key, "status": f"Gemini returned no answer (prompt blocked: {blocked})"}
    finish = _FINISH.get(reason, "stop")
    if not text and finish == "content_filter":
        return {"custom_id": key, "status": f"Gemini stopped without an answer: finishReason {reason}"}
    usage = response.get("usageMetadata") or {}
    prompt = _count(usage.get("promptTokenCount"))
    # Thinking tokens are billed as output (and OpenAI counts reasoning in completion_tokens).
    completion = _count(usage.get("candidatesTokenCount")) + _count(usage.get("thoughtsTokenCount"))
    out = {
        "object": "chat.completion",
        "model": response.get("modelVersion"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }
    return {"custom_id": key, "response": out}


def _count(value: Any) -> int:
    """A token count written as a number or an int64 string; 0 when absent."""
    return count(value) or 0


def from_gemini_file(path: Path) -> None:
    """Rewrite a downloaded output file in place as OpenAI-shaped lines; unreadable lines are kept as they are."""
    rewrite(path, output_line)
