"""OpenAI's words for :mod:`._hosted` (the plumbing both hosted backends share), and its client.

The key is read by the ``openai`` client from ``api_key=`` or ``OPENAI_API_KEY``;
a ``base_url`` read from a job folder is used only when it is
``https://api.openai.com`` or the address this session is configured with
(``configure(openai={"base_url": ...})``, ``PDBATCH_OPENAI_BASE_URL`` or
``OPENAI_BASE_URL``): see :mod:`._hosted`.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ._hosted import Provider

__all__ = ["OPENAI", "make_client"]


def make_client(api_key: str | None, base_url: str | None, timeout: float, max_retries: int) -> Any:
    """An ``openai.OpenAI`` client; a missing key is a :class:`ConfigError` that names the variable."""
    import openai

    try:
        return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)
    except openai.OpenAIError as exc:
        raise ConfigError(
            "the OpenAI backend needs an API key: set OPENAI_API_KEY, or pass OpenAI(api_key=...) "
            "(never saved with the job)"
        ) from exc


OPENAI = Provider(
    name="OpenAI", sdk="openai", base_error="OpenAIError", official_base_url="https://api.openai.com/v1",
    key_env="OPENAI_API_KEY", base_url_env="OPENAI_BASE_URL", owner="project", batch="batch", api="Batch API",
    make_client=make_client,
)
