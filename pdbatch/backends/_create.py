"""Creating a batch prediction job without ever creating (and paying for) two.

Job creation is not idempotent: a create that times out, answers 5xx or
loses its connection may have created the job anyway. Every job pdbatch
creates carries the labels ``pdbatch_run`` (one submission) and
``pdbatch_part`` (which of its jobs), so after such an ambiguous failure the
job is looked up with ``filter=labels.pdbatch_run="<run>"`` and adopted if it
exists; only when it does not is the create sent again. Rate limits (429)
are refused before the service acts, and are simply retried.

Label keys have underscores, not hyphens: list filters are AIP-160
expressions, documented as ``labels.key=value`` with no hyphenated key, and
in AIP-160 ``-`` is the negation operator, so ``labels.pdbatch-run=...`` may
be refused or read as something else. Jobs made by pdbatch before this
change carry ``pdbatch-run`` / ``pdbatch-part``; they are never looked up by
filter here, because adoption only ever concerns the job this very call just
tried to create (with the new keys). A job's size is read under either key
(:mod:`._job_resource`).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import BackendError, PdbatchError
from . import _gcp

__all__ = ["CREATE_TIMEOUT", "LABEL_PART", "LABEL_RUN", "create_job", "find_job"]

LABEL_RUN = "pdbatch_run"
LABEL_PART = "pdbatch_part"
#: Seconds a create may take before it counts as an ambiguous failure (the
#: client's own default is no timeout at all: a hung call would hang the caller).
CREATE_TIMEOUT = 120.0


def find_job(client: Any, parent: str, run: str, part: str) -> str | None:
    """The name of the job of submission ``run``, part ``part``, if the service has one."""
    request = {"parent": parent, "filter": f'labels.{LABEL_RUN}="{run}"'}

    def names() -> list[tuple[str, str]]:
        jobs = client.list_batch_prediction_jobs(request=request)
        return [(job.name, job.labels.get(LABEL_PART, "")) for job in jobs]

    for name, label in _gcp.retrying(names):
        if label == part:
            return str(name)
    return None


def create_job(client: Any, parent: str, job: dict[str, Any]) -> str:
    """Create ``job`` (whose labels name its run and part) and return its name; never two of them.

    Raises the last error when every try failed and no job was created; a
    failure of the look-up itself propagates (the job may exist: its labels
    say which).
    """
    from google.api_core import exceptions as gexc

    run, part = job["labels"][LABEL_RUN], job["labels"][LABEL_PART]
    refused = (gexc.TooManyRequests, gexc.ResourceExhausted)
    # Every other transient failure (5xx, timeouts, dropped connections) may have acted.
    ambiguous: tuple[type[BaseException], ...] = (
        *(e for e in _gcp.transient() if e not in refused), gexc.DeadlineExceeded, ConnectionError)
    for attempt in range(_gcp.TRIES):
        try:
            created = client.create_batch_prediction_job(parent=parent, batch_prediction_job=job,
                                                         timeout=CREATE_TIMEOUT)
            return str(created.name)
        except refused:
            if attempt == _gcp.TRIES - 1:
                raise
        except ambiguous as exc:
            # Wait before looking: a job created a moment ago may not be listed yet.
            time.sleep(_gcp.BACKOFF * 2**attempt * (0.5 + random.random()))
            try:
                found = find_job(client, parent, run, part)
            except (gexc.GoogleAPICallError, gexc.RetryError, OSError) as lookup:
                raise BackendError(
                    f"creating the batch prediction job failed without saying whether the job was created "
                    f"({type(exc).__name__}: {exc}), and looking it up failed too ({type(lookup).__name__}: "
                    f"{lookup}). A job may be running: list it with filter labels.{LABEL_RUN}=\"{run}\" "
                    f"(gcloud ai batch-prediction-jobs list --filter=...) and cancel it or pdbatch.attach it."
                ) from lookup
            if found is not None:
                return found
            if attempt == _gcp.TRIES - 1:
                raise
            continue
        time.sleep(_gcp.BACKOFF * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


def create_all(jobs: Iterable[dict[str, Any]], create: Callable[[dict[str, Any]], str],
               cancel: Callable[[str], None]) -> list[str]:
    """Create each job of one submission in turn; if any step fails, cancel the ones already created.

    ``jobs`` may stage each job's input as it is drawn (a generator): a
    failure there counts too. Jobs are paid for, and the caller of a failed
    submission never gets their ids, so none may be left running unseen.
    """
    ids: list[str] = []
    try:
        for job in jobs:
            ids.append(create(job))
    except BaseException:
        for job_id in ids:
            with contextlib.suppress(PdbatchError):
                cancel(job_id)
        raise
    return ids
