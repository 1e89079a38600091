"""OpenAI plumbing for :mod:`pdbatch.backends.openai`: the client, which addresses may get the key, errors.

The API key is a secret that must never reach a job folder, a manifest, a
repr or an error message. It is read by the ``openai`` client from
``api_key=`` or ``OPENAI_API_KEY`` and kept only in the client object; every
message built from what the service said goes through :func:`scrub`, because
OpenAI's own 401 answer quotes part of the key ("Incorrect API key provided:
sk-pr***...abcd").

Where the key is sent is a setting (``base_url``) that is saved with each job
so that ``pdbatch.attach`` can rebuild the backend. A manifest is a file anyone
with access to the folder may have edited, so a ``base_url`` read from one is
used only when it is OpenAI's own API over HTTPS or the address this session
is configured with (``configure(openai={"base_url": ...})``,
``PDBATCH_OPENAI_BASE_URL`` or ``OPENAI_BASE_URL``): a crafted one would
otherwise send the key to another host.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ..errors import BackendError, ConfigError, JobNotFoundError, MissingDependencyError

__all__ = ["OFFICIAL_BASE_URL", "check_saved_base_url", "import_openai", "scrub", "translate"]

OFFICIAL_BASE_URL = "https://api.openai.com/v1"
#: Anything shaped like an OpenAI key (whole, or masked as the 401 message masks it).
_KEY_SHAPE = re.compile(r"sk-[A-Za-z0-9_*.\-]{3,}")


def import_openai() -> None:
    """Check that the ``openai`` package is installed, or say which extra installs it (without importing it)."""
    try:
        found = importlib.util.find_spec("openai") is not None
    except (ImportError, ValueError):  # ValueError: a module blocked in sys.modules
        found = False
    if not found:
        raise MissingDependencyError("openai", "openai", "The OpenAI backend")


def scrub(text: str, key: str | None) -> str:
    """``text`` without the API key, whole or masked: safe for a message, a log or a job folder."""
    if key:
        text = text.replace(key, "[API key]")
    return _KEY_SHAPE.sub("[API key]", text)


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.rstrip("/") == b.rstrip("/")


def official(base_url: str | None) -> bool:
    """True for OpenAI's own API (the client's default when ``base_url`` is None)."""
    if base_url is None:
        return True
    try:
        url = urlsplit(base_url)
        port = url.port
    except ValueError:
        return False
    return (url.scheme == "https" and url.hostname == "api.openai.com" and port in (None, 443)
            and not url.username and not url.password and not url.query and not url.fragment)


def check_saved_base_url(saved: str | None, configured: str | None) -> None:
    """Refuse a ``base_url`` read from a job folder that would send the key to an address nobody chose.

    Parameters
    ----------
    saved : str or None
        The ``base_url`` in the job's manifest.
    configured : str or None
        The one this session is configured with (``configure``, ``PDBATCH_OPENAI_BASE_URL``,
        ``OPENAI_BASE_URL``), which the user chose.

    Raises
    ------
    ConfigError
        The address is not trusted; the message says how to proceed.
    """
    if official(saved) or _same(saved, configured):
        return
    raise ConfigError(
        f"the job's saved settings send OpenAI calls, with your API key, to {saved!r}, which is neither "
        f"{OFFICIAL_BASE_URL} nor the base_url this session is configured with; pdbatch does not send your "
        f"key to an address read from a job folder, which anyone who can write to it may have changed. If you "
        f"trust it, set OPENAI_BASE_URL (or PDBATCH_OPENAI_BASE_URL) to it, or pass the backend again: "
        f"pdbatch.attach(job_id, backend=pdbatch.backends.OpenAI(base_url={saved!r}))"
    )


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


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an ``openai`` error, None when no answer came (timeout, connection)."""
    return getattr(exc, "status_code", None)


def ambiguous(exc: BaseException) -> bool:
    """True when a POST may have been acted on although no success came back (timeout, lost line, 5xx)."""
    import openai

    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    code = status_of(exc)
    return code is not None and code >= 500


def _message(exc: BaseException, key: str | None) -> str:
    body = getattr(exc, "body", None)
    detail = body.get("message") if isinstance(body, dict) else None
    text = str(detail or exc)
    code = status_of(exc)
    return scrub(f"HTTP {code}: {text}" if code else text, key)


@contextlib.contextmanager
def translate(action: str, *, key: str | None, where: str, job_id: str | None = None) -> Iterator[None]:
    """Turn ``openai`` exceptions into pdbatch errors that say what to check, with the key scrubbed out.

    Parameters
    ----------
    action : str
        What was being done ("uploading the requests").
    key : str or None
        The API key in use, removed from every message.
    where : str
        The address the calls go to, shown in the message.
    job_id : str, optional
        For calls about one batch: a 404 then means :class:`JobNotFoundError`.
    """
    import openai

    # ``from None`` throughout: the client's exception quotes the key (a 401) and holds the request,
    # whose Authorization header is the key; chained, a traceback would print them.
    try:
        yield
    except (ConfigError, BackendError, JobNotFoundError):
        raise
    except openai.AuthenticationError as exc:
        raise BackendError(
            f"{action} failed: the API key was refused ({_message(exc, key)}). Check OPENAI_API_KEY (or "
            f"OpenAI(api_key=...)) for {where}."
        ) from None
    except openai.PermissionDeniedError as exc:
        raise BackendError(f"{action} failed: permission denied ({_message(exc, key)}). Check that the key's "
                           f"project may use the Batch API at {where}.") from None
    except openai.NotFoundError as exc:
        if job_id is not None:
            raise JobNotFoundError(f"OpenAI has no batch {job_id!r} at {where} ({_message(exc, key)}); check "
                                   f"that the key belongs to the project that created it.") from None
        raise BackendError(f"{action} failed: not found ({_message(exc, key)}) at {where}.") from None
    except openai.RateLimitError as exc:
        raise BackendError(f"{action} failed: rate limited or over the batch queue limit "
                           f"({_message(exc, key)}); try again later, or send fewer requests at once.") from None
    except openai.APIStatusError as exc:
        raise BackendError(f"{action} failed ({_message(exc, key)}) at {where}.") from None
    except openai.APIConnectionError as exc:
        raise BackendError(f"{action} failed: no answer from {where} ({_message(exc, key)}); check the "
                           f"network and OPENAI_BASE_URL.") from None
    except openai.OpenAIError as exc:
        raise BackendError(f"{action} failed: {_message(exc, key)}") from None
