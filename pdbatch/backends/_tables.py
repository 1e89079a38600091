"""Vertex AI jobs on BigQuery tables: a request table in, an output table out, nothing through the client.

:mod:`pdbatch.jobs.tablejob` creates the request tables next to the user's table
(``CREATE TABLE ... AS SELECT``) and names the output tables; this module
creates one batch prediction job per request table, with the same model
checks, labels and ambiguous-failure adoption (:mod:`._create`) as a frame's
jobs, and cancels the jobs already created if a later one fails.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import ConfigError
from ..models import Kind, VertexModel, batch_location, online_only_message, parse_vertex, retired_message
from ._create import create_all
from ._gcp_io import same_region
from ._job_resource import job_resource
from ._submit import Submitter, check_served, create

__all__ = ["check", "check_location", "submit"]


def check(backend: Submitter, *, model: str, kind: Kind, tables: Mapping[str, str]) -> tuple[VertexModel, str]:
    """Refuse a model that cannot run on tables and tables outside the jobs' region; the model and that region.

    The jobs run where the model is served (:func:`~pdbatch.models.batch_location`:
    the backend's ``location`` when given and served, else the model's own region).
    """
    spec = parse_vertex(model, kind)
    if spec.status() == "retired":
        raise ConfigError(retired_message(spec, backend.location))
    if not spec.batch:
        raise ConfigError(online_only_message(spec))
    if spec.wire == "gemini-chat":
        raise ConfigError(f"{spec.resource} reads Gemini request lines (a `request` column); pdbatch's table "
                          f"jobs write OpenAI request bodies, so they run the open chat models only. Run it "
                          f"on a frame with Vertex(staging='gs://bucket/prefix/') instead")
    if spec.wire == "gemini-embedding":
        raise ConfigError(f"{spec.resource} reads its own line format from Cloud Storage only; a table job "
                          f"needs a model that reads OpenAI request bodies (the open chat models)")
    location = batch_location(spec, backend.location)
    for what, where in tables.items():
        check_location(where, location, what)
    check_served(backend, spec, location)
    return spec, location


def check_location(location: str, job_location: str, what: str) -> None:
    """Refuse a table whose dataset is in another region than the jobs (see :func:`._gcp_io.same_region`)."""
    if not same_region(location or "", job_location):
        raise ConfigError(
            f"{what} is in {location or 'an unknown location'}, but the Vertex AI job runs in {job_location}; "
            f"batch prediction needs the table and the job in the same region. Copy the table to a dataset "
            f"in {job_location}, or use Vertex(location=...) matching the table's region."
        )


def submit(backend: Submitter, tables: list[tuple[str, str, int]], *, model: str, kind: Kind,
           display_name: str) -> list[str]:
    """Create one job per ``(input bq:// table, output bq:// table, rows)``; returns the job names."""
    # checked before; Model Garden's answer is cached
    spec, location = check(backend, model=model, kind=kind, tables={})
    run = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)

    def jobs() -> Iterator[dict[str, Any]]:
        for i, (source, dest, count) in enumerate(tables, 1):
            name = display_name if len(tables) == 1 else f"{display_name} ({i}/{len(tables)})"
            inp = {"instances_format": "bigquery", "bigquery_source": {"input_uri": source}}
            out = {"predictions_format": "bigquery", "bigquery_destination": {"output_uri": dest}}
            yield job_resource(name, spec, inp, out, count, run, str(i))

    return create_all(jobs(), lambda job: create(backend, job, spec, location), backend.cancel)
