"""Ask Vertex AI's Model Garden whether it serves a publisher model, once per session.

The catalog in :mod:`pdbatch.models` carries dates, but Google retires models
on its own schedule: the live ``GET publishers/<p>/models/<id>`` (REST
``/v1/{name=publishers/*/models/*}``, ``ModelGardenServiceClient.get_publisher_model``)
is the final word. A 404 there means a job for the model would fail at
creation, so the model is refused before anything is staged. Answers are
kept for the life of the process: the list of live models does not change
between two calls in one notebook session, and asking costs a round trip.
"""

from __future__ import annotations

from typing import Any

from ._gcp import retrying

__all__ = ["remember", "served"]

#: (endpoint, resource) -> True (served) or False (404), for this process.
_ANSWERS: dict[tuple[str, str], bool] = {}


def served(client: Any, endpoint: str, resource: str) -> tuple[bool | None, str]:
    """Whether Model Garden serves ``resource`` (``publishers/<p>/models/<id>``) at ``endpoint``.

    Returns
    -------
    (bool or None, str)
        True or False, or None when the service could not say (no permission
        to read Model Garden, an outage); and the service's words.
    """
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as aexc

    key = (endpoint, resource)
    if key in _ANSWERS:
        return _ANSWERS[key], "answered earlier in this session"
    try:
        retrying(lambda: client.get_publisher_model(name=resource))
    except gexc.NotFound as exc:
        _ANSWERS[key] = False
        return False, str(getattr(exc, "message", None) or exc)
    except (gexc.GoogleAPICallError, gexc.RetryError, aexc.GoogleAuthError, OSError) as exc:
        # Reading Model Garden needs its own permission; users who may create
        # jobs without it are not stopped here: job creation will decide.
        return None, f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
    _ANSWERS[key] = True
    return True, "served"


def remember(endpoint: str, resource: str, *, served_now: bool) -> None:
    """Record what job creation just learnt about ``resource`` (a 404 there means it is gone)."""
    _ANSWERS[(endpoint, resource)] = served_now
