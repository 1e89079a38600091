"""OpenAI chat ``messages`` and ``response_format`` read for a provider that takes text turns only (Gemini, Anthropic).

Both conversions refuse the same things in the same words (a tool role, an
image part, fields besides role and content, no user turn); only the shape
each provider writes differs, so the reading is here once and each backend
builds its own turns from it.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError

__all__ = ["read_messages", "read_response_format"]

#: The roles turned into a provider's turns; system and developer messages become its system prompt.
ROLES = ("user", "assistant")


def _text_parts(content: Any, where: str, provider: str) -> str | list[str]:
    """A message's content: its string, or the texts of its OpenAI content parts of type "text" only."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ConfigError(f"{where}: content part of type {kind!r} is not converted for {provider} "
                                  f"(text parts only); send text")
            texts.append(str(part.get("text", "")))
        return texts
    raise ConfigError(f"{where}: content must be a string or a list of text parts, got {type(content).__name__}")


def read_messages(messages: Any, row: str | None, provider: str,
                  ) -> tuple[list[tuple[str, str | list[str]]], list[str]]:
    """The user/assistant turns (role, string or text parts) and the system texts of OpenAI ``messages``.

    Parameters
    ----------
    messages : Any
        A request body's ``messages``, unchecked.
    row : str or None
        The row's custom_id, repr-ed, to start each refusal (None: no row, a line checked alone).
    provider : str
        The provider's name in the refusals ("Gemini", "Anthropic").

    Raises
    ------
    ConfigError
        Not a non-empty list, a role other than system/developer/user/assistant, a field besides
        role, content and name, a content part that is not text, or no user/assistant turn.
    """
    at = f"row {row}: " if row is not None else ""
    if not isinstance(messages, list) or not messages:
        raise ConfigError(f"{at}messages must be a non-empty list")
    turns: list[tuple[str, str | list[str]]] = []
    system: list[str] = []
    for i, message in enumerate(messages):
        where = f"row {row}, messages[{i}]" if row is not None else f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            content = _text_parts(message.get("content"), where, provider)
            system.append(content if isinstance(content, str) else "".join(content))
            continue
        if role not in ROLES:
            raise ConfigError(f"{where}: role {role!r} has no {provider} equivalent (system, user and assistant "
                              f"messages are converted; tool calls are not)")
        extra = sorted(set(message) - {"role", "content", "name"})
        if extra:
            raise ConfigError(f"{where}: {', '.join(extra)} cannot be sent to {provider} (only role and content)")
        turns.append((role, _text_parts(message.get("content"), where, provider)))
    if not turns:
        raise ConfigError(f"{at}a{'n' if provider[0] in 'AEIOU' else ''} {provider} request needs a user message "
                          f"besides the system prompt")
    return turns, system


def read_response_format(value: Any, row: str | None) -> tuple[Any, dict[str, Any] | None]:
    """The ``type`` of an OpenAI ``response_format``, and its JSON schema when the type is ``json_schema``.

    Raises
    ------
    ConfigError
        Not an object, or a ``json_schema`` without a schema object; which types a provider
        takes is its own to say.
    """
    at = f"row {row}: " if row is not None else ""
    if not isinstance(value, dict):
        raise ConfigError(f"{at}response_format must be an object")
    kind = value.get("type")
    if kind != "json_schema":
        return kind, None
    schema = (value.get("json_schema") or {}).get("schema")
    if not isinstance(schema, dict):
        raise ConfigError(f"{at}response_format.json_schema.schema must be a JSON schema object")
    return kind, schema
