"""Which Vertex AI endpoints a job folder may name.

``attach`` rebuilds a backend from the settings saved in a job's manifest, then
signs in with Application Default Credentials. A manifest is a file anyone with
access to the folder can edit (or that came in a shared archive), so an
endpoint read from it is not trusted as such: a crafted ``api_endpoint`` would
send the user's Google token to another host. An endpoint from a job folder is
used only if it is one of Google's own Vertex AI hosts over HTTPS, the endpoint
the user configured for this session (``configure(vertex=...)`` or
``PDBATCH_VERTEX_API_ENDPOINT``), or a plain-HTTP loopback address while a
Google emulator variable is set. Plain HTTP is the only scheme accepted for
loopback because pdbatch then signs in anonymously: even a process squatting on
that port never sees a token. Anything else is refused; passing the backend
again (``attach(job_id, backend=Vertex(api_endpoint=...))``) is the user's
explicit word and bypasses this check.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError

__all__ = ["EMULATOR_VARIABLES", "check_saved_settings", "emulator_http"]

#: Set by whoever runs Google's clients against local emulators (tests, offline work).
EMULATOR_VARIABLES = ("STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST")
_GOOGLE_HOST = re.compile(r"(?:[a-z0-9-]+-aiplatform|aiplatform|aiplatform\.[a-z0-9-]+\.rep)\.googleapis\.com")
# no userinfo, query, fragment, escapes or spaces: nothing that can hide another host
_PLAIN = re.compile(r"[A-Za-z0-9.:/\[\]-]+")
_LOCATION = re.compile(r"[a-z][a-z0-9-]*")


def check_saved_settings(settings: dict[str, Any], configured_endpoint: str | None) -> None:
    """Refuse Vertex settings read from a job folder that would send credentials elsewhere.

    Parameters
    ----------
    settings : dict
        The backend settings saved in the job's manifest.
    configured_endpoint : str or None
        The endpoint this session is configured with (``configure(vertex=...)``
        or ``PDBATCH_VERTEX_API_ENDPOINT``), which the user chose.

    Raises
    ------
    ConfigError
        The endpoint is not trusted, or the location is not a region name (the
        default endpoint is built from it); the message says how to proceed.
    """
    location = settings.get("location")
    if location is not None and not (isinstance(location, str) and _LOCATION.fullmatch(location)):
        raise ConfigError(f"the job's saved settings name location={location!r}, which is not a Vertex AI "
                          f"region such as 'us-central1'; the job folder may have been edited. Pass the backend "
                          f"again: pdbatch.attach(job_id, backend=pdbatch.backends.Vertex(location=...))")
    endpoint = settings.get("api_endpoint")
    if endpoint is None or endpoint == configured_endpoint or _google(endpoint):
        return
    if _loopback_http(endpoint) and any(os.environ.get(v) for v in EMULATOR_VARIABLES):
        return
    shown = {k: settings.get(k) for k in ("project", "location")}
    args = ", ".join(f"{k}={v!r}" for k, v in shown.items() if v is not None)
    raise ConfigError(
        f"the job's saved settings send Vertex AI calls to {endpoint!r}, which is not a Google endpoint "
        f"(https://<region>-aiplatform.googleapis.com, aiplatform.googleapis.com or "
        f"aiplatform.<multi-region>.rep.googleapis.com); pdbatch does not send your credentials to an address "
        f"read from a job folder, which anyone who can write to it may have changed. If you trust it, give it "
        f"again: pdbatch.attach(job_id, backend=pdbatch.backends.Vertex({args}, api_endpoint={endpoint!r})), or "
        f"set PDBATCH_VERTEX_API_ENDPOINT to it. A local emulator at an http://127.0.0.1 address is accepted "
        f"while {' or '.join(EMULATOR_VARIABLES)} is set."
    )


def emulator_http(endpoint: str) -> bool:
    """Whether a plain-HTTP ``endpoint`` is a loopback emulator, used while an emulator variable is set."""
    return _loopback_http(endpoint) and any(os.environ.get(v) for v in EMULATOR_VARIABLES)


def _parts(endpoint: Any) -> tuple[str, str, int | None, str] | None:
    """(scheme, host, port, path) of a plain endpoint, or None for anything unusual."""
    if not isinstance(endpoint, str) or not _PLAIN.fullmatch(endpoint):
        return None
    try:
        url = urlsplit(endpoint if "://" in endpoint else "//" + endpoint)
        port = url.port
    except ValueError:
        return None
    if not url.hostname:
        return None
    return url.scheme.lower(), url.hostname.lower(), port, url.path


def _google(endpoint: Any) -> bool:
    parts = _parts(endpoint)
    if parts is None:
        return False
    scheme, host, port, path = parts
    return scheme in ("", "https") and port in (None, 443) and path in ("", "/") and bool(
        _GOOGLE_HOST.fullmatch(host))


def _loopback_http(endpoint: Any) -> bool:
    parts = _parts(endpoint)
    if parts is None or parts[0] != "http" or parts[3] not in ("", "/"):
        return False
    host = parts[1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
