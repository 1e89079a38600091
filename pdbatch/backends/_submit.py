"""A frame's Vertex AI jobs: the request files staged, then one batch prediction job per group of them.

Everything that can refuse the call does so before anything is staged or
created: the staging and output URIs, the model's lifecycle and region, Model
Garden's answer, the places' rights and region, the preflight. Then each group
of files (at most ``max_requests_per_job`` lines) is staged as its job is about
to be created (:mod:`._staging`, :mod:`._create`). :mod:`._tables` creates a
table's jobs with the same :func:`check_served` and :func:`create`.
"""

from __future__ import annotations

import functools
import secrets
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError
from ..models import (
    Kind,
    VertexModel,
    batch_location,
    online_only_message,
    parse_vertex,
    retired_message,
    unavailable_message,
)
from . import _garden, _gcp, _gemini_chat, _gemini_embed, _preflight, _setup, _staging
from ._create import create_all, create_job
from ._gcp import BqUri, parse_uri, translate
from ._job_resource import job_resource

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Submitter", "check_served", "create", "submit"]


class Submitter(_preflight.Vertex, Protocol):
    """What submitting uses of :class:`~.vertex.Vertex` (named here, not imported: vertex imports this)."""

    location: str | None
    preflight: bool
    max_requests_per_job: int

    def cancel(self, job_id: str) -> None: ...


def submit(vx: Submitter, files: list[Path], *, model: str, kind: Kind, display_name: str,
           extra_columns: pa.Table | None = None) -> list[str]:
    """Stage ``files`` and create their jobs (see :meth:`.vertex.Vertex.submit`); returns the jobs' names."""
    if not vx.staging:
        raise ConfigError(
            "Vertex needs staging= to submit: 'gs://bucket/prefix/' or "
            "'bq://project.dataset' (or PDBATCH_VERTEX_STAGING)"
        )
    staging = parse_uri(vx.staging, "staging")
    output = parse_uri(vx.output, "output") if vx.output else None
    if extra_columns is not None and not isinstance(staging, BqUri):
        raise ConfigError(
            "passthrough=True needs BigQuery input: use staging='bq://project.dataset' "
            "(JSONL files in Cloud Storage carry only the request lines)"
        )
    # Everything that can refuse the call does so before anything is staged or created.
    spec = parse_vertex(model, kind)
    if spec.status() == "retired":
        raise ConfigError(retired_message(spec, vx.location))
    if not spec.batch:
        raise ConfigError(online_only_message(spec))
    location = batch_location(spec, vx.location)
    if spec.wire == "gemini-embedding":
        _gemini_embed.prepare(spec, files, staging, output)
    elif spec.wire == "gemini-chat":
        _gemini_chat.prepare(spec, files, staging, output)
    elif spec.reasoning:
        _setup.reasoning_defaults(files)
    check_served(vx, spec, location)
    where = functools.partial(vx._where, location=location)
    clients: dict[str, Any] = {"storage": vx._storage, "bigquery": vx._bigquery, "where": where}
    _staging.preflight(staging, output, location=location, served=spec.locations, **clients)
    if vx.preflight:
        _preflight.before_submit(vx, spec, location)
    groups = _staging.group(files, [_staging.count_lines(f) for f in files], vx.max_requests_per_job)
    run = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)

    def jobs() -> Iterator[dict[str, Any]]:  # each part staged as its job is about to be created
        start = 0
        for i, (group, count) in enumerate(groups, 1):
            part = f"part-{i:03d}" if len(groups) > 1 else ""
            extra = extra_columns.slice(start, count) if extra_columns is not None else None
            start += count
            source = _staging.stage(group, staging, run, part, extra, **clients)
            dest = _staging.destination(staging, output, run, part)
            name = display_name if len(groups) == 1 else f"{display_name} ({i}/{len(groups)})"
            yield job_resource(name, spec, source, dest, count, run, str(i))

    return create_all(jobs(), lambda job: create(vx, job, spec, location), vx.cancel)


def check_served(vx: Submitter, spec: VertexModel, location: str) -> None:
    """Ask Model Garden whether the model is live (once per session): the catalog may be out of date."""
    with translate("connecting to Vertex AI", where=vx._where(location=location)):
        garden = vx._client("ModelGardenServiceClient", location)
    answer, detail = _garden.served(garden, vx._endpoint(location), spec.resource)
    if answer is False:
        raise ConfigError(unavailable_message(spec, location, f"Model Garden: {detail}"))
    if answer is None and not spec.catalogued:
        warnings.warn(
            f"could not ask Model Garden whether it serves {spec.resource} ({detail}); submitting "
            f"anyway: job creation will tell",
            UserWarning,
            stacklevel=3,
        )

def create(vx: Submitter, job: dict[str, Any], spec: VertexModel, location: str) -> str:
    from google.api_core import exceptions as gexc

    parent = f"projects/{vx.project}/locations/{location}"
    client = vx._jobs(location)
    with translate(
        f"creating the batch prediction job for {spec.resource}",
        where=vx._where("the model's availability in that region", location=location),
    ):
        try:
            return create_job(client, parent, job)
        except gexc.NotFound as exc:
            if "model" not in _gcp._msg(exc).lower():
                raise
            _garden.remember(vx._endpoint(location), spec.resource, served_now=False)
            raise ConfigError(
                unavailable_message(spec, location, f"job creation: {_gcp._msg(exc)}")
            ) from exc
        except (gexc.BadRequest, gexc.FailedPrecondition) as exc:
            _setup.refusal(exc, spec, vx.project)
            raise
