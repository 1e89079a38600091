"""Anthropic plumbing for :mod:`pdbatch.backends.anthropic`: the client, which addresses may get the key, errors.

As for OpenAI (:mod:`._openai_client`): the key (``ANTHROPIC_API_KEY``, sent
as the ``x-api-key`` header with ``anthropic-version``: API reference,
"Overview") lives only in the client object; every message built from what
the service said goes through :func:`~._openai_client.scrub`; a ``base_url``
read from a job folder is used only when it is Anthropic's own API over HTTPS
or the address this session is configured with.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ..errors import BackendError, ConfigError, JobNotFoundError, MissingDependencyError
from ._openai_client import scrub

__all__ = ["OFFICIAL_BASE_URL", "ambiguous", "check_saved_base_url", "import_anthropic", "make_client",
           "message", "official", "status_of", "translate"]

OFFICIAL_BASE_URL = "https://api.anthropic.com"


def import_anthropic() -> None:
    """Check that the ``anthropic`` package is installed, or say which extra installs it (without importing it)."""
    try:
        found = importlib.util.find_spec("anthropic") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingDependencyError("anthropic", "anthropic", "The Anthropic backend")


def official(base_url: str | None) -> bool:
    """True for Anthropic's own API (the client's default when ``base_url`` is None)."""
    if base_url is None:
        return True
    try:
        url = urlsplit(base_url)
        port = url.port
    except ValueError:
        return False
    return (url.scheme == "https" and url.hostname == "api.anthropic.com" and port in (None, 443)
            and not url.username and not url.password and not url.query and not url.fragment)


def check_saved_base_url(saved: str | None, configured: str | None) -> None:
    """Refuse a ``base_url`` read from a job folder that would send the key to an address nobody chose."""
    if official(saved) or (saved is not None and configured is not None
                           and saved.rstrip("/") == configured.rstrip("/")):
        return
    raise ConfigError(
        f"the job's saved settings send Anthropic calls, with your API key, to {saved!r}, which is neither "
        f"{OFFICIAL_BASE_URL} nor the base_url this session is configured with; pdbatch does not send your key "
        f"to an address read from a job folder, which anyone who can write to it may have changed. If you trust "
        f"it, set ANTHROPIC_BASE_URL (or PDBATCH_ANTHROPIC_BASE_URL) to it, or pass the backend again: "
        f"pdbatch.attach(job_id, backend=pdbatch.backends.Anthropic(base_url={saved!r}))"
    )


def make_client(api_key: str | None, base_url: str | None, timeout: float, max_retries: int) -> Any:
    """An ``anthropic.Anthropic`` client; a missing key is a :class:`ConfigError` that names the variable."""
    import anthropic

    if not (api_key or os.environ.get("ANTHROPIC_API_KEY")):
        raise ConfigError("the Anthropic backend needs an API key: set ANTHROPIC_API_KEY, or pass "
                          "Anthropic(api_key=...) (never saved with the job)")
    return anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an ``anthropic`` error, None when no answer came (timeout, connection)."""
    return getattr(exc, "status_code", None)


def ambiguous(exc: BaseException) -> bool:
    """True when a POST may have been acted on although no success came back (timeout, lost line, 5xx)."""
    import anthropic

    if isinstance(exc, (anthropic.APITimeoutError, anthropic.APIConnectionError)):
        return True
    code = status_of(exc)
    return code is not None and code >= 500


def message(exc: BaseException, key: str | None) -> str:
    body = getattr(exc, "body", None)
    detail = None
    if isinstance(body, dict):  # {"type": "error", "error": {"type": ..., "message": ...}}
        inner = body.get("error")
        detail = inner.get("message") if isinstance(inner, dict) else body.get("message")
    code = status_of(exc)
    text = str(detail or exc)
    return scrub(f"HTTP {code}: {text}" if code else text, key)


@contextlib.contextmanager
def translate(action: str, *, key: str | None, where: str, job_id: str | None = None) -> Iterator[None]:
    """Turn ``anthropic`` exceptions into pdbatch errors that say what to check, with the key scrubbed out."""
    import anthropic

    # ``from None`` throughout: the client's exception holds the request, whose x-api-key header is the key.
    try:
        yield
    except (ConfigError, BackendError, JobNotFoundError):
        raise
    except anthropic.AuthenticationError as exc:
        raise BackendError(f"{action} failed: the API key was refused ({message(exc, key)}). Check "
                           f"ANTHROPIC_API_KEY (or Anthropic(api_key=...)) for {where}.") from None
    except anthropic.PermissionDeniedError as exc:
        raise BackendError(f"{action} failed: permission denied ({message(exc, key)}). Check that the key's "
                           f"workspace may use the Message Batches API at {where}.") from None
    except anthropic.NotFoundError as exc:
        if job_id is not None:
            raise JobNotFoundError(f"Anthropic has no message batch {job_id!r} at {where} ({message(exc, key)}); "
                                   f"check that the key belongs to the workspace that created it.") from None
        raise BackendError(f"{action} failed: not found ({message(exc, key)}) at {where}.") from None
    except anthropic.RateLimitError as exc:
        raise BackendError(f"{action} failed: rate limited or over the batch queue limit ({message(exc, key)}); "
                           f"try again later, or send fewer requests at once.") from None
    except anthropic.APIStatusError as exc:
        raise BackendError(f"{action} failed ({message(exc, key)}) at {where}.") from None
    except anthropic.APIConnectionError as exc:
        raise BackendError(f"{action} failed: no answer from {where} ({message(exc, key)}); check the network "
                           f"and ANTHROPIC_BASE_URL.") from None
    except anthropic.AnthropicError as exc:
        raise BackendError(f"{action} failed: {message(exc, key)}") from None
