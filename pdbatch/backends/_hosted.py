"""What the hosted batch backends (OpenAI, Anthropic) share: the client, which addresses may get the key, errors.

Both official SDKs are generated the same way: a client taking ``api_key``,
``base_url``, ``timeout`` and ``max_retries``, and the same exception classes
(``AuthenticationError``, ``PermissionDeniedError``, ``NotFoundError``,
``RateLimitError``, ``APIStatusError``, ``APIConnectionError``,
``APITimeoutError`` under one base class). So one :class:`Provider` record (the
SDK's module, the environment variables, the provider's words) and the code
here serve both; the backends keep only what their APIs do differently.

The API key is a secret that must never reach a job folder, a manifest, a
repr or an error message. It is read by the client from ``api_key=`` or the
provider's variable and kept only in the client object; every message built
from what the service said goes through :func:`scrub`, because OpenAI's own
401 answer quotes part of the key ("Incorrect API key provided:
sk-pr***...abcd").

Where the key is sent is a setting (``base_url``) that is saved with each job
so that ``pdbatch.attach`` can rebuild the backend. A manifest is a file anyone
with access to the folder may have edited, so a ``base_url`` read from one is
used only when it is the provider's own API over HTTPS or the address this
session is configured with (``configure(openai={"base_url": ...})``,
``PDBATCH_OPENAI_BASE_URL`` or ``OPENAI_BASE_URL``, and the same for
Anthropic): a crafted one would otherwise send the key to another host.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from .. import config
from ..errors import BackendError, ConfigError, JobNotFoundError, MissingDependencyError
from ..models import Kind
from .base import Backend

__all__ = ["HostedBackend", "Provider", "ambiguous", "check_saved_base_url", "message", "official", "require_sdk",
           "scrub", "status_of", "translate"]

#: Anything shaped like an OpenAI or Anthropic key (whole, or masked as OpenAI's 401 message masks it).
_KEY_SHAPE = re.compile(r"sk-[A-Za-z0-9_*.\-]{3,}")


@dataclass(frozen=True)
class Provider:
    """One hosted service as its backend and its messages name it.

    Parameters
    ----------
    name : str
        The provider and its backend class ("OpenAI"); settings are ``PDBATCH_<NAME>_*``.
    sdk : str
        The official client's module ("openai"), also the pip extra that installs it.
    base_error : str
        The SDK's base exception class ("OpenAIError").
    official_base_url : str
        The provider's own API, the client's default.
    key_env, base_url_env : str
        The variables the SDK reads the key and the address from.
    owner : str
        What a key belongs to ("project", "workspace").
    batch : str
        What one job is called ("batch", "message batch").
    api : str
        The batch API's name ("Batch API", "Message Batches API").
    make_client : callable
        ``(api_key, base_url, timeout, max_retries) -> client``; a missing key is a :class:`ConfigError`.
    """

    name: str
    sdk: str
    base_error: str
    official_base_url: str
    key_env: str
    base_url_env: str
    owner: str
    batch: str
    api: str
    make_client: Callable[[str | None, str | None, float, int], Any]

    def module(self) -> Any:
        """The SDK module (imported on first use: ``import pdbatch`` must not need it)."""
        return importlib.import_module(self.sdk)


def require_sdk(p: Provider) -> None:
    """Check that ``p``'s SDK is installed, or say which extra installs it (without importing it)."""
    try:
        found = importlib.util.find_spec(p.sdk) is not None
    except (ImportError, ValueError):  # ValueError: a module blocked in sys.modules
        found = False
    if not found:
        raise MissingDependencyError(p.sdk, p.sdk, f"The {p.name} backend")


def scrub(text: str, key: str | None) -> str:
    """``text`` without the API key, whole or masked: safe for a message, a log or a job folder."""
    if key:
        text = text.replace(key, "[API key]")
    return _KEY_SHAPE.sub("[API key]", text)


def official(p: Provider, base_url: str | None) -> bool:
    """True for ``p``'s own API over HTTPS (the client's default when ``base_url`` is None)."""
    if base_url is None:
        return True
    try:
        url = urlsplit(base_url)
        port = url.port
    except ValueError:
        return False
    return (url.scheme == "https" and url.hostname == urlsplit(p.official_base_url).hostname
            and port in (None, 443) and not url.username and not url.password and not url.query
            and not url.fragment)


def check_saved_base_url(p: Provider, saved: str | None, configured: str | None) -> None:
    """Refuse a ``base_url`` read from a job folder that would send the key to an address nobody chose.

    Parameters
    ----------
    p : Provider
    saved : str or None
        The ``base_url`` in the job's manifest.
    configured : str or None
        The one this session is configured with (``configure``, ``PDBATCH_<NAME>_BASE_URL``, the
        provider's own variable), which the user chose.

    Raises
    ------
    ConfigError
        The address is not trusted; the message says how to proceed.
    """
    if official(p, saved) or (saved is not None and configured is not None
                              and saved.rstrip("/") == configured.rstrip("/")):
        return
    raise ConfigError(
        f"the job's saved settings send {p.name} calls, with your API key, to {saved!r}, which is neither "
        f"{p.official_base_url} nor the base_url this session is configured with; pdbatch does not send your "
        f"key to an address read from a job folder, which anyone who can write to it may have changed. If you "
        f"trust it, set {p.base_url_env} (or PDBATCH_{p.name.upper()}_BASE_URL) to it, or pass the backend "
        f"again: pdbatch.attach(job_id, backend=pdbatch.backends.{p.name}(base_url={saved!r}))"
    )


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an SDK error, None when no answer came (timeout, connection)."""
    return getattr(exc, "status_code", None)


def ambiguous(p: Provider, exc: BaseException) -> bool:
    """True when a POST may have been acted on although no success came back (timeout, lost line, 5xx)."""
    sdk = p.module()
    if isinstance(exc, (sdk.APITimeoutError, sdk.APIConnectionError)):
        return True
    code = status_of(exc)
    return code is not None and code >= 500


def message(exc: BaseException, key: str | None) -> str:
    """What the service said, with its HTTP status, the key scrubbed out."""
    body = getattr(exc, "body", None)
    detail = None
    if isinstance(body, dict):
        # Anthropic's body is {"type": "error", "error": {"type": ..., "message": ...}}; the openai
        # client already hands over the inner {"message": ...}
        inner = body.get("error")
        detail = inner.get("message") if isinstance(inner, dict) else body.get("message")
    code = status_of(exc)
    text = str(detail or exc)
    return scrub(f"HTTP {code}: {text}" if code else text, key)


@contextlib.contextmanager
def translate(p: Provider, action: str, *, key: str | None, where: str,
              job_id: str | None = None) -> Iterator[None]:
    """Turn the SDK's exceptions into pdbatch errors that say what to check, with the key scrubbed out.

    Parameters
    ----------
    p : Provider
    action : str
        What was being done ("uploading the requests").
    key : str or None
        The API key in use, removed from every message.
    where : str
        The address the calls go to, shown in the message.
    job_id : str, optional
        For calls about one batch: a 404 then means :class:`JobNotFoundError`.
    """
    sdk = p.module()
    # ``from None`` throughout: the client's exception quotes the key (OpenAI's 401) and holds the
    # request, whose Authorization / x-api-key header is the key; chained, a traceback would print them.
    try:
        yield
    except (ConfigError, BackendError, JobNotFoundError):
        raise
    except sdk.AuthenticationError as exc:
        raise BackendError(f"{action} failed: the API key was refused ({message(exc, key)}). Check "
                           f"{p.key_env} (or {p.name}(api_key=...)) for {where}.") from None
    except sdk.PermissionDeniedError as exc:
        raise BackendError(f"{action} failed: permission denied ({message(exc, key)}). Check that the key's "
                           f"{p.owner} may use the {p.api} at {where}.") from None
    except sdk.NotFoundError as exc:
        if job_id is not None:
            raise JobNotFoundError(f"{p.name} has no {p.batch} {job_id!r} at {where} ({message(exc, key)}); "
                                   f"check that the key belongs to the {p.owner} that created it.") from None
        raise BackendError(f"{action} failed: not found ({message(exc, key)}) at {where}.") from None
    except sdk.RateLimitError as exc:
        raise BackendError(f"{action} failed: rate limited or over the batch queue limit ({message(exc, key)}); "
                           f"try again later, or send fewer requests at once.") from None
    except sdk.APIStatusError as exc:
        raise BackendError(f"{action} failed ({message(exc, key)}) at {where}.") from None
    except sdk.APIConnectionError as exc:
        raise BackendError(f"{action} failed: no answer from {where} ({message(exc, key)}); check the network "
                           f"and {p.base_url_env}.") from None
    except getattr(sdk, p.base_error) as exc:
        raise BackendError(f"{action} failed: {message(exc, key)}") from None


class HostedBackend(Backend):
    """A backend on a hosted batch API: its settings, its one SDK client, the key, errors in pdbatch's terms.

    A subclass sets :attr:`provider` and :attr:`defaults` and calls ``super().__init__`` with the API
    key and its settings (the keys of :attr:`defaults`).
    """

    provider: ClassVar[Provider]
    #: Each setting's default; ``base_url`` falls back to the provider's variable first.
    defaults: ClassVar[dict[str, Any]]
    #: Settings that must be positive whole numbers.
    _INTS: ClassVar[tuple[str, ...]] = ("max_requests_per_file", "max_bytes_per_file")

    def __init__(self, api_key: str | None, **given: Any) -> None:
        require_sdk(self.provider)
        s = {k: self._setting(k, v) for k, v in given.items()}
        self.base_url: str | None = s["base_url"]
        for key in self._INTS:
            try:
                value = int(s[key])
            except (TypeError, ValueError):
                value = 0
            if value < 1:
                raise ConfigError(f"{self.provider.name} {key}={s[key]!r}: must be a positive number")
        self.max_requests_per_file = int(s["max_requests_per_file"])
        self.max_bytes_per_file = int(s["max_bytes_per_file"])
        self.poll_seconds = float(s["poll_seconds"])
        self.timeout = float(s["timeout"])
        self._api_key = api_key
        self._client: Any = None

    @classmethod
    def _setting(cls, name: str, value: Any) -> Any:
        """Explicit argument, ``configure(<name>=...)``, ``PDBATCH_<NAME>_<SETTING>``, (the provider's
        ``*_BASE_URL``), the default."""
        # the provider's own variable (what its client reads) comes after pdbatch's own settings
        fallback = cls.defaults[name]
        default = (os.environ.get(cls.provider.base_url_env) or fallback) if name == "base_url" else fallback
        return config.backend_setting(cls.name, name, value, default)

    def settings(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this backend elsewhere (the API key excluded)."""
        return {"base_url": self.base_url, "max_requests_per_file": self.max_requests_per_file,
                "max_bytes_per_file": self.max_bytes_per_file, "poll_seconds": self.poll_seconds,
                "timeout": self.timeout}

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Self:
        """Rebuild from settings saved in a job folder, refusing a ``base_url`` nobody chose in this session."""
        check_saved_base_url(cls.provider, settings.get("base_url"), cls._setting("base_url", None))
        return cls(**settings)

    def cache_identity(self, model: str, kind: Kind) -> dict[str, Any]:
        """The server: two servers may answer differently for the same model name."""
        return {"base_url": (self.base_url or self.provider.official_base_url).rstrip("/")}

    def _where(self) -> str:
        return self.base_url or self.provider.official_base_url

    def _api(self) -> Any:
        if self._client is None:
            self._client = self.provider.make_client(self._api_key, self.base_url, self.timeout, 2)
            # closed with this backend: left to the cycle collector, a socket can be finalised before the
            # client that would close it (a ResourceWarning, and the connection held open until then)
            weakref.finalize(self, self._client.close)
        return self._client

    def _key(self) -> str | None:
        return self._api_key or (self._client.api_key if self._client is not None else None) \
            or os.environ.get(self.provider.key_env)

    def _translate(self, action: str, job_id: str | None = None) -> Any:
        return translate(self.provider, action, key=self._key(), where=self._where(), job_id=job_id)
