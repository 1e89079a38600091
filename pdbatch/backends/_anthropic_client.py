"""Anthropic's words for :mod:`._hosted` (the plumbing both hosted backends share), and its client.

The key (``ANTHROPIC_API_KEY``, sent as the ``x-api-key`` header with
``anthropic-version``: API reference, "Overview") lives only in the client
object; a ``base_url`` read from a job folder is used only when it is
Anthropic's own API over HTTPS or the address this session is configured
with: see :mod:`._hosted`.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from ._hosted import Provider

__all__ = ["ANTHROPIC", "make_client"]


def make_client(api_key: str | None, base_url: str | None, timeout: float, max_retries: int) -> Any:
    """An ``anthropic.Anthropic`` client; a missing key is a :class:`ConfigError` that names the variable."""
    import anthropic

    # unlike openai's, the anthropic client accepts no key and fails only at the first call
    if not (api_key or os.environ.get("ANTHROPIC_API_KEY")):
        raise ConfigError("the Anthropic backend needs an API key: set ANTHROPIC_API_KEY, or pass "
                          "Anthropic(api_key=...) (never saved with the job)")
    return anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)


ANTHROPIC = Provider(
    name="Anthropic", sdk="anthropic", base_error="AnthropicError", official_base_url="https://api.anthropic.com",
    key_env="ANTHROPIC_API_KEY", base_url_env="ANTHROPIC_BASE_URL", owner="workspace", batch="message batch",
    api="Message Batches API", make_client=make_client,
)
