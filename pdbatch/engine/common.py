"""Small pieces shared by the engines: request items, batching, OpenAI response objects."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..lines.params import RESERVED, Check, check_fields, one_of

#: (custom_id, body, error): a request line as the worker read it.
Item = tuple[str, Any, "str | None"]
#: (custom_id, response, error): a finished row.
Result = tuple[str, "dict[str, Any] | None", "str | None"]


class RequestError(ValueError):
    """A request that cannot run; its message becomes the row's error."""


def check_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The body's messages, each with a role and content, or RequestError."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("invalid request: 'messages' must be a non-empty list")
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
            raise RequestError(f"invalid request: each message needs a 'role' and 'content', got {m!r:.120}")
    return messages


def batched(items: Iterator[Item], size: int, stop: Callable[[], bool]) -> Iterator[list[Item]]:
    """Chunks of ``size`` items, checking ``stop`` before each."""
    while not stop():
        chunk = list(itertools.islice(items, size))
        if not chunk:
            return
        yield chunk


def needs_grammar(body: dict[str, Any]) -> bool:
    """Whether a chat body asks for constrained decoding (JSON ``response_format`` or tools)."""
    fmt = body.get("response_format")
    return bool(body.get("tools")) or (isinstance(fmt, dict) and fmt.get("type") not in (None, "text"))


def usage(prompt_tokens: int, completion_tokens: int | None) -> dict[str, int]:
    """An OpenAI ``usage`` object."""
    out = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + (completion_tokens or 0)}
    if completion_tokens is not None:
        out["completion_tokens"] = completion_tokens
    return out


def chat_completion(custom_id: str, model: str, text: str, finish: str, prompt_tokens: int,
                    completion_tokens: int) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object for one answer."""
    return {
        "id": f"chatcmpl-{custom_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


# The body fields the local engines act on. The rest of OpenAI's fields are
# refused before a job is submitted (Local.unsupported_params) and again per
# row by the engines, rather than ignored: an ignored logit_bias or
# reasoning_effort gives answers the caller did not ask for.
LOCAL_FIELDS: dict[str, frozenset[str]] = {
    "chat": frozenset({"max_tokens", "max_completion_tokens", "temperature", "top_p", "frequency_penalty",
                       "presence_penalty", "seed", "stop", "response_format"}),
    "embeddings": frozenset({"input_type"}),
}
# Accepted and ignored: they change nothing in an answer (n, logprobs, stream
# and modalities only ever get here at their one value pdbatch.lines.params allows).
_NO_EFFECT = frozenset({"n", "logprobs", "top_logprobs", "stream", "modalities", "encoding_format", "user",
                        "safety_identifier", "prompt_cache_key", "metadata", "store"})
#: Fields the local engines add to OpenAI's: e5 embeds a query or a passage.
LOCAL_EXTRA_FIELDS: dict[str, dict[str, Check]] = {
    "chat": {},
    "embeddings": {"input_type": one_of(("query", "passage"))},
}


def local_refusals(kind: str, params: dict[str, Any]) -> dict[str, str]:
    """The fields of ``params`` the local engines cannot honour, each with why."""
    honoured = LOCAL_FIELDS[kind]
    return {
        name: f"the local engine does not use it (it acts on {', '.join(sorted(honoured))}); "
              f"drop it, or run on a backend that supports it"
        for name, value in params.items()
        if name not in honoured and name not in _NO_EFFECT and value is not None
    }


def check_body(body: dict[str, Any], kind: str) -> str | None:
    """What is wrong with a request body for the local engines (the same checks as before submitting), or None."""
    fields = {k: v for k, v in body.items() if k not in RESERVED}
    checked, problems = check_fields(fields, kind, extra_fields=LOCAL_EXTRA_FIELDS[kind])  # type: ignore[arg-type]
    if not problems:
        problems = [f"{n}={checked[n]!r}: {why}" for n, why in local_refusals(kind, checked).items()]
    return "; ".join(problems) or None
