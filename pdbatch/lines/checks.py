"""The checks of request body fields, and OpenAI's chat and embeddings fields with theirs.

Each kind declares its body fields with these checks (:mod:`pdbatch.lines.kinds`);
:mod:`pdbatch.lines.params` runs them. Kept apart from both so that a kind
declared elsewhere can build its own fields from the same checks.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable
from typing import Any

__all__ = ["CHAT_FIELDS", "EMBEDDINGS_FIELDS", "Check", "boolean", "integer", "kind_of", "number", "one_of",
           "only", "refused"]

#: A check takes a field's value and returns what is wrong with it, or None.
Check = Callable[[Any], "str | None"]


def kind_of(value: Any) -> str:
    return type(value).__name__


def _not_a(v: Any) -> str:
    return f", not a {kind_of(v)}"


def number(lo: float, hi: float) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not lo <= float(v) <= hi:
            wrong_type = isinstance(v, bool) or not isinstance(v, numbers.Real)
            return f"must be a number from {lo:g} to {hi:g}" + (_not_a(v) if wrong_type else "")
        return None

    return check


#: The integers a request body can carry: JSON writers and the services read 64 bits (orjson's range).
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def integer(lo: int | None = None, hi: int | None = None, *, nullable: bool = False) -> Check:
    """A check for an integer from ``lo`` to ``hi`` (None: no bound), or None when ``nullable``."""

    def check(v: Any) -> str | None:
        if v is None and nullable:
            return None
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            return "must be an integer" + _not_a(v)
        if not _INT_MIN <= int(v) <= _INT_MAX:
            return "must be an integer from -2**63 to 2**64-1: a request body holds 64-bit integers"
        if (lo is not None and int(v) < lo) or (hi is not None and int(v) > hi):
            bounds = f"at least {lo}" if hi is None else f"from {lo} to {hi}"
            return f"must be an integer {bounds}"
        return None

    return check


def boolean(v: Any) -> str | None:
    """A check for True or False."""
    return None if isinstance(v, bool) else "must be True or False" + _not_a(v)


def one_of(choices: tuple[str, ...] = ()) -> Check:
    """A check for a string, one of ``choices`` when given."""

    def check(v: Any) -> str | None:
        if not isinstance(v, str) or (choices and v not in choices):
            want = f"one of {', '.join(map(repr, choices))}" if choices else "a string"
            return f"must be {want}"
        return None

    return check


def _object(v: Any) -> str | None:
    return None if isinstance(v, dict) else "must be a dict" + _not_a(v)


def _stop(v: Any) -> str | None:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(s, str) and s for s in items):
        return "must be a non-empty string or a list of them"
    return None


def _logit_bias(v: Any) -> str | None:
    if not isinstance(v, dict):
        return "must be a dict of token id to a bias from -100 to 100" + _not_a(v)
    for token, bias in v.items():
        if not re.fullmatch(r"\d+", str(token)):
            return f"keys must be token ids (integers), got {token!r}"
        if number(-100, 100)(bias):
            return f"biases must be numbers from -100 to 100, got {bias!r} for token {token}"
    return None


_FORMAT_TYPES = ("text", "json_object", "json_schema")


def _response_format(v: Any) -> str | None:
    if not isinstance(v, dict) or v.get("type") not in _FORMAT_TYPES:
        return ("must be {'type': 'text' | 'json_object' | 'json_schema', ...}; "
                "for JSON answers of a given shape pass schema=<JSON schema or pydantic model>")
    if v["type"] == "json_schema":
        spec = v.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict) or not spec.get("name"):
            return ("of type 'json_schema' needs json_schema={'name': ..., 'schema': {...}}; "
                    "schema=<JSON schema> builds it for you")
    return None


def only(allowed: Any, reason: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v is None or v == allowed else reason

    return check


def refused(reason: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v is None else reason

    return check


_TOOLS = ("pdbatch keeps each answer's message text, so tool calls would be lost; "
          "for structured answers use schema=")

#: OpenAI's chat-completions body fields (besides model and messages).
CHAT_FIELDS: dict[str, Check] = {
    "max_tokens": integer(1, nullable=True),
    "max_completion_tokens": integer(1, nullable=True),
    "temperature": number(0, 2),
    "top_p": number(0, 1),
    "frequency_penalty": number(-2, 2),
    "presence_penalty": number(-2, 2),
    "seed": integer(),
    "stop": _stop,
    "logit_bias": _logit_bias,
    "response_format": _response_format,
    "n": only(1, "must be 1: pdbatch keeps one answer per row (for several samples, repeat the rows "
                  "or run again with other seeds)"),
    "logprobs": only(False, "not supported: the result frame has no column for log-probabilities"),
    "top_logprobs": only(0, "not supported: the result frame has no column for log-probabilities"),
    "stream": only(False, "must be False: batch jobs do not stream"),
    "stream_options": refused("not supported: batch jobs do not stream"),
    "tools": refused(f"not supported: {_TOOLS}"),
    "tool_choice": refused(f"not supported: {_TOOLS}"),
    "parallel_tool_calls": refused(f"not supported: {_TOOLS}"),
    "functions": refused(f"not supported: {_TOOLS}"),
    "function_call": refused(f"not supported: {_TOOLS}"),
    "modalities": only(["text"], "must be ['text']: the result frame holds text answers"),
    "audio": refused("not supported: the result frame holds text answers"),
    "prediction": _object,
    "reasoning_effort": one_of(("none", "minimal", "low", "medium", "high")),
    "verbosity": one_of(("low", "medium", "high")),
    "web_search_options": _object,
    "service_tier": one_of(),
    "user": one_of(),
    "safety_identifier": one_of(),
    "prompt_cache_key": one_of(),
    "metadata": _object,
    "store": boolean,
}

#: OpenAI's embeddings body fields (besides model and input).
EMBEDDINGS_FIELDS: dict[str, Check] = {
    "dimensions": integer(1),
    "encoding_format": only("float", "must be 'float': pdbatch reads embeddings as lists of floats"),
    "user": one_of(),
}
