"""Small pieces shared by the engines: request items, batching, OpenAI response objects."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

#: (custom_id, body, error): a request line as the worker read it.
Item = tuple[str, Any, "str | None"]
#: (custom_id, response, error): a finished row.
Result = tuple[str, "dict[str, Any] | None", "str | None"]


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
