"""Google Cloud plumbing for the Vertex backend: imports, retries, errors (the URIs are :mod:`.uris`).

Vendor exceptions become pdbatch errors in one place, :func:`translate`, so
that every message says what to check. The Cloud Storage and BigQuery I/O
itself is :mod:`._gcp_io`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..errors import BackendError, ConfigError, JobNotFoundError, MissingDependencyError
from .uris import BqUri, GcsUri, parse_uri

__all__ = ["BqUri", "GcsUri", "import_google", "parse_uri", "retrying", "translate"]

T = TypeVar("T")


def import_google() -> None:
    """Check that the Google client libraries are installed, or say which extra installs them.

    Only found, not imported: importing them takes seconds, which building a
    backend to resolve a model name should not cost.
    """
    for module, package in (
        ("google.cloud.aiplatform_v1", "google-cloud-aiplatform"),
        ("google.cloud.storage", "google-cloud-storage"),
        ("google.cloud.bigquery", "google-cloud-bigquery"),
    ):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # ValueError: a module blocked in sys.modules
            found = False
        if not found:
            raise MissingDependencyError(package, "vertex", "The Vertex AI backend")


# ------------------------------------------------------------------ retries
def transient() -> tuple[type[BaseException], ...]:
    from google.api_core import exceptions as gexc
    from requests import exceptions as rexc

    return (
        gexc.TooManyRequests,
        gexc.ResourceExhausted,
        gexc.InternalServerError,
        gexc.BadGateway,
        gexc.ServiceUnavailable,
        gexc.GatewayTimeout,
        rexc.ConnectionError,
        rexc.Timeout,
        ConnectionResetError,
    )


#: Tries per call, and the first back-off in seconds (doubled each time, with jitter).
TRIES = 5
BACKOFF = 0.5


def retrying(fn: Callable[[], T], *, only: tuple[type[BaseException], ...] | None = None) -> T:
    """Call ``fn``, retrying rate limits (429), 5xx and connection resets with exponential back-off.

    The number of tries is bounded (:data:`TRIES`); the last error propagates.
    ``only`` narrows the retried exceptions (job creation retries only what
    cannot have created a job).
    """
    retry_on = only or transient()
    for attempt in range(TRIES):
        try:
            return fn()
        except retry_on:
            if attempt == TRIES - 1:
                raise
            time.sleep(BACKOFF * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


# ------------------------------------------------------------------- errors
@contextlib.contextmanager
def translate(
    action: str, *, where: str, job_id: str | None = None, permission: str | None = None
) -> Iterator[None]:
    """Turn Google client exceptions into pdbatch errors that say what to check.

    Parameters
    ----------
    action : str
        What was being done, e.g. ``"uploading the requests to gs://b/p/"``.
    where : str
        The settings involved (project, region, bucket, dataset), shown in the message.
    job_id : str, optional
        For calls about one job: a 404 then means :class:`JobNotFoundError`.
    permission : str, optional
        The IAM permission the call needs (and the role that grants it), named
        when the service answers 403.
    """
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as aexc

    try:
        yield
    except (ConfigError, BackendError, JobNotFoundError):
        raise
    except gexc.NotFound as exc:
        if job_id is not None:
            raise JobNotFoundError(
                f"Vertex AI has no batch prediction job {job_id!r} ({_msg(exc)}). Check the "
                f"project and region in the id, and that these credentials can see that project."
            ) from exc
        raise BackendError(
            f"{action} failed: not found ({_msg(exc)}). Check that {where} exist "
            f"and that the names are spelled right."
        ) from exc
    except (gexc.Forbidden, gexc.PermissionDenied) as exc:
        if permission is None:
            raise _denied(action, where, exc) from exc
        raise BackendError(
            f"{action} failed: permission denied ({_msg(exc)}). The credentials in use need {permission}; "
            f"ask for it, or use a bucket or dataset where you have it ({where})."
        ) from exc
    except (gexc.Unauthorized, gexc.Unauthenticated) as exc:
        raise _denied(action, where, exc) from exc
    except aexc.DefaultCredentialsError as exc:
        raise BackendError(
            f"{action} failed: no Google credentials found. Run `gcloud auth application-default "
            f"login`, set GOOGLE_APPLICATION_CREDENTIALS, or pass credentials= to Vertex(...)."
        ) from exc
    except aexc.GoogleAuthError as exc:
        raise BackendError(
            f"{action} failed: the credentials were refused ({type(exc).__name__}). "
            f"Refresh them (`gcloud auth application-default login`)."
        ) from exc
    except (gexc.BadRequest, gexc.FailedPrecondition, gexc.Conflict) as exc:
        raise BackendError(f"{action} was refused: {_msg(exc)}. Check {where}.") from exc
    except gexc.RetryError as exc:
        raise BackendError(
            f"{action} failed: the service kept failing ({exc}). Try again later."
        ) from exc
    except gexc.GoogleAPICallError as exc:
        raise BackendError(
            f"{action} failed after {TRIES} tries: {_msg(exc)}. Check {where}; "
            f"if the service is overloaded, try again later."
        ) from exc
    except OSError as exc:  # connection refused / reset once retries ran out
        raise BackendError(
            f"{action} failed: cannot reach the service ({type(exc).__name__}: "
            f"{exc}). Check the network and api_endpoint."
        ) from exc


def _denied(action: str, where: str, exc: Any) -> BackendError:
    return BackendError(
        f"{action} failed: permission denied ({_msg(exc)}). Check {where}, that the Vertex AI "
        f"API is enabled there, and that the credentials in use (Application Default "
        f"Credentials unless credentials= was given) may use them."
    )


def _msg(exc: Any) -> str:
    # .message is the service's text without the request URL (which can be long); the REST
    # transport puts "METHOD URL: " in front of it, which says nothing the caller does not know.
    text = str(getattr(exc, "message", None) or exc)
    return _REQUEST_PREFIX.sub("", text, count=1)


_REQUEST_PREFIX = re.compile(r"^(?:GET|POST|PUT|PATCH|DELETE) \S+: ")


def emulated(env: str) -> bool:
    """True when a client library is pointed at a local emulator through ``env``."""
    return bool(os.environ.get(env))
