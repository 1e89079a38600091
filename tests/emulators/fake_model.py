"""Deterministic stand-in for the models behind Vertex AI batch prediction.

Answers one OpenAI-schema request body the way the real endpoints shape their
answers (`chat.completion`, embeddings `list`), with content that tests can
predict: chat replies "echo: <last user message>", embeddings are a small unit
vector derived from a hash of the text. Token counts are whitespace words.
"""
from __future__ import annotations

import hashlib
import json
import math
import time

CHAT_URL = "/v1/chat/completions"
EMBEDDINGS_URL = "/v1/embeddings"
EMBEDDING_DIM = 8


class RowError(Exception):
    """One request line cannot be answered; the job goes on with the others."""


def words(text: str) -> int:
    return len(text.split())


def _text(content) -> str:
    """Message content is a string or a list of OpenAI content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def chat_reply(last_user_text: str) -> str:
    return "echo: " + last_user_text


def embed(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """A unit vector from sha256(text): equal texts give equal vectors."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [digest[i % len(digest)] / 127.5 - 1.0 for i in range(dim)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


def instance(schema: dict, text: str) -> object:
    """A small value that fits a (written-out) JSON schema: strings echo the prompt."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return instance(schema["anyOf"][0], text)
    if kind == "object":
        return {k: instance(v, text) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [instance(schema.get("items") or {}, text)]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, text)


def _chat(body: dict, model: str) -> dict:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RowError("messages must be a non-empty list")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise RowError("at least one message with role 'user' is required")
    reply = chat_reply(_text(users[-1].get("content")))
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {}
        reply = json.dumps(instance(schema, reply))
    finish = "stop"
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens < words(reply):
        reply, finish = " ".join(reply.split()[:max_tokens]), "length"
    prompt = sum(words(_text(m.get("content"))) for m in messages if isinstance(m, dict))
    completion = words(reply)
    seed = json.dumps(body, sort_keys=True).encode()
    return {
        "id": "chatcmpl-" + hashlib.sha1(seed).hexdigest()[:16],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                     "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    }


def _embeddings(body: dict, model: str) -> dict:
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise RowError("input must be a string or a non-empty list of strings")
    dim = body.get("dimensions") if isinstance(body.get("dimensions"), int) else EMBEDDING_DIM
    tokens = sum(words(t) for t in inputs)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": embed(t, dim)}
                 for i, t in enumerate(inputs)],
        "model": body.get("model") or model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def gemini_embedding(record: dict) -> dict:
    """The EmbedContentResponse for one Gemini embedding batch line {"key", "request": {...}}."""
    request = record.get("request")
    if not isinstance(request, dict):
        raise RowError("each line needs a 'request' object: {\"key\": ..., \"request\": {\"content\": ...}}")
    parts = (request.get("content") or {}).get("parts")
    if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) and "text" in p for p in parts):
        raise RowError("request.content.parts must list text parts")
    text = " ".join(str(p["text"]) for p in parts)
    config = request.get("embed_content_config") or {}
    dim = config.get("output_dimensionality") or EMBEDDING_DIM
    if not isinstance(dim, int) or dim < 1:
        raise RowError(f"output_dimensionality must be a positive integer, got {dim!r}")
    tokens = words(text)
    # SPEC.md "What a real project meets on its first job" (the embeddings batch page's output
    # example): the count is response.tokenCount, an int64 and so a JSON string; no usageMetadata.
    return {"embedding": {"values": embed(text, dim)}, "tokenCount": str(tokens)}


#: GenerationConfig fields the Gemini chat stand-in reads; any other is refused on its row, as the
#: service refuses an unknown field ("Invalid JSON payload received. Unknown name ...").
GEMINI_CONFIG = {"maxOutputTokens", "temperature", "topP", "topK", "seed", "stopSequences", "presencePenalty",
                 "frequencyPenalty", "responseMimeType", "responseSchema", "responseJsonSchema", "candidateCount",
                 "thinkingConfig"}
#: ThinkingConfig.thinkingLevel values (Vertex AI v1 API reference, GenerationConfig.ThinkingConfig).
THINKING_LEVELS = {"MINIMAL", "LOW", "MEDIUM", "HIGH"}
#: A user text containing this is "blocked": the candidate ends with finishReason SAFETY and no text,
#: the shape Gemini returns for a blocked answer (so tests can reach that path).
BLOCKED = "[unsafe]"


def gemini_chat(record: dict) -> dict:
    """The GenerateContentResponse for one Gemini batch line {"key", "request": {"contents", ...}}.

    Doc ("Batch inference from Cloud Storage"): each line holds a GenerateContentRequest under
    "request"; a line without one (an OpenAI {"custom_id", "body"} line) cannot be answered.
    """
    request = record.get("request")
    if not isinstance(request, dict):
        raise RowError("each line needs a 'request' object holding a GenerateContentRequest "
                       "({\"request\": {\"contents\": [...]}}); OpenAI lines are not read by Gemini models")
    unknown = sorted(set(request) - {"contents", "systemInstruction", "system_instruction", "generationConfig",
                                     "generation_config", "safetySettings", "labels"})
    if unknown:
        raise RowError(f'Invalid JSON payload received. Unknown name "{unknown[0]}" at \'request\': '
                       f"Cannot find field.")
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents:
        raise RowError("request.contents must be a non-empty list")
    texts: list[tuple[str, str]] = []
    for c in contents:
        if not isinstance(c, dict) or c.get("role", "user") not in ("user", "model"):
            raise RowError("contents[].role must be 'user' or 'model'")
        parts = c.get("parts")
        if not isinstance(parts, list) or not all(isinstance(p, dict) and "text" in p for p in parts):
            raise RowError("contents[].parts must list text parts")
        texts.append((c.get("role", "user"), " ".join(str(p["text"]) for p in parts)))
    users = [t for role, t in texts if role == "user"]
    if not users:
        raise RowError("a request needs a user turn")
    config = request.get("generationConfig") or {}
    unknown = sorted(set(config) - GEMINI_CONFIG)
    if unknown:
        raise RowError(f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                       f"'request.generation_config': Cannot find field.")
    level = (config.get("thinkingConfig") or {}).get("thinkingLevel")
    if level is not None and level not in THINKING_LEVELS:
        raise RowError(f"Invalid value at 'request.generation_config.thinking_config.thinking_level' ({level!r})")
    if "responseJsonSchema" in config and "responseSchema" in config:
        raise RowError("responseJsonSchema and responseSchema cannot both be set")
    if ("responseJsonSchema" in config or "responseSchema" in config) \
            and config.get("responseMimeType") != "application/json":
        raise RowError("a response schema needs responseMimeType 'application/json'")
    system = " ".join(str(p.get("text", "")) for p in ((request.get("systemInstruction") or {}).get("parts") or []))
    prompt = sum(words(t) for _, t in texts) + words(system)
    usage = {"promptTokenCount": prompt}
    if BLOCKED in users[-1]:
        return {"candidates": [{"finishReason": "SAFETY"}], "usageMetadata": {**usage, "totalTokenCount": prompt}}
    reply = chat_reply(users[-1])
    schema = config.get("responseJsonSchema")
    if isinstance(schema, dict):
        reply = json.dumps(instance(schema, reply))
    finish = "STOP"
    limit = config.get("maxOutputTokens")
    if isinstance(limit, int) and limit < words(reply):
        reply, finish = " ".join(reply.split()[:limit]), "MAX_TOKENS"
    completion = words(reply)
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": reply}]}, "finishReason": finish}],
            "usageMetadata": {**usage, "candidatesTokenCount": completion, "totalTokenCount": prompt + completion},
            "modelVersion": "fake-gemini"}


def is_embedding_model(model: str) -> bool:
    return model.split("/")[-3:-2] == ["intfloat"] or "embed" in model


def respond(url: str | None, body, model: str) -> dict:
    """The response object for one request line; RowError if it is invalid.

    The service reads only `body`; which kind of answer comes back follows
    `url` when given, else the job's model (embedding models vs chat).
    """
    if not isinstance(body, dict):
        raise RowError("body must be a JSON object")
    if url is None:
        url = EMBEDDINGS_URL if is_embedding_model(model) else CHAT_URL
    if url == CHAT_URL:
        return _chat(body, model)
    if url == EMBEDDINGS_URL:
        return _embeddings(body, model)
    raise RowError(f"unsupported url {url!r}")
