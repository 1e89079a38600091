"""A Vertex AI batch prediction job as a resource: the body that creates one, and what its fields mean.

:func:`job_resource` is the ``BatchPredictionJob`` that :class:`~pdbatch.backends.vertex.Vertex`
creates (its labels carry the job's size and, for :mod:`._create`, which submission
it belongs to); :func:`job_status` reads one back as a :class:`~pdbatch.backends.base.JobStatus`;
:func:`location_of` takes the region out of a job's resource name, as the
regional endpoint that serves the job must be asked.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import JobNotFoundError
from ..models import VertexModel
from ._create import LABEL_PART, LABEL_RUN
from .base import STATES, JobStatus

__all__ = ["JOB_ID", "LABEL_COUNT", "job_resource", "job_status", "location_of", "output_table"]

JOB_ID = re.compile(r"^projects/([^/]+)/locations/([a-z0-9-]+)/batchPredictionJobs/([0-9A-Za-z_-]+)$")
LABEL_COUNT = "pdbatch_requests"
#: The key jobs created by pdbatch before 2026-12 carry (hyphens: see ._create).
OLD_LABEL_COUNT = "pdbatch-requests"


def location_of(job_id: str) -> str:
    """The region in a job's resource name; refuses a name that is not a Vertex AI job's."""
    m = JOB_ID.match(job_id or "")
    if not m:
        raise JobNotFoundError(
            f"{job_id!r} is not a Vertex AI job id; they look like "
            f"'projects/P/locations/L/batchPredictionJobs/N'"
        )
    return m.group(2)


def job_resource(
    display_name: str,
    spec: VertexModel,
    source: dict[str, Any],
    dest: dict[str, Any],
    count: int,
    run: str,
    part: str,
) -> dict[str, Any]:
    """The ``BatchPredictionJob`` to create: ``count`` requests read from ``source``, answers written to ``dest``.

    Parameters
    ----------
    display_name : str
        The job's name in the console (cut to the service's 128 characters).
    spec : VertexModel
        The model; its ``resource`` is what the job runs.
    source, dest : dict
        The ``input_config`` and ``output_config`` (see :mod:`._staging`).
    count : int
        Requests in the job.
    run, part : str
        The submission and which of its jobs this is.

    Returns
    -------
    dict
        The job, as ``JobServiceClient.create_batch_prediction_job`` takes it.
    """
    return {
        "display_name": display_name[:128],
        "model": spec.resource,
        "input_config": source,
        "output_config": dest,
        # The job's size, for a later process before any row is done; run and
        # part, to find the job again after a create that failed ambiguously.
        "labels": {"pdbatch": "1", LABEL_COUNT: str(count), LABEL_RUN: run.lower(), LABEL_PART: part},
    }


def job_status(job_id: str, job: Any) -> JobStatus:
    """The state, counts (``completionStats``), error and output location of ``job`` (named ``job_id``).

    Parameters
    ----------
    job_id : str
        The job's resource name, ``projects/P/locations/L/batchPredictionJobs/N``.
    job : google.cloud.aiplatform_v1.BatchPredictionJob
        The job as the service returned it.

    Returns
    -------
    JobStatus
    """
    state = getattr(job.state, "name", None)
    state = state if state in STATES else "JOB_STATE_UNSPECIFIED"
    stats = job.completion_stats
    done, failed = int(stats.successful_count), int(stats.failed_count)
    incomplete = int(stats.incomplete_count)
    label = job.labels.get(LABEL_COUNT) or job.labels.get(OLD_LABEL_COUNT)
    total = int(label) if label and label.isdigit() else (done + failed + incomplete or None)
    error = None
    if job.error and (job.error.message or job.error.code):
        error = job.error.message or f"error code {job.error.code}"
    project, location, number = JOB_ID.match(job_id).groups()  # type: ignore[union-attr]
    extra: dict[str, Any] = {"display_name": job.display_name, "incomplete": incomplete}
    for key in ("create_time", "start_time", "end_time", "update_time"):
        value = getattr(job, key, None)
        if value:
            extra[key] = value.isoformat()
    if job.partial_failures:
        extra["partial_failures"] = [p.message for p in job.partial_failures]
    return JobStatus(
        state=state,
        total=total,
        succeeded=done,
        failed=failed,
        error=error,
        output=_output_of(job),
        # The console moved Vertex AI under /agent-platform/ (sdk 2.7: jobs._Job._dashboard_uri
        # builds agent-platform/locations/L/batch-predictions/N; the docs' "Go to Batch Inference").
        console_url=(
            f"https://console.cloud.google.com/agent-platform/locations/{location}/"
            f"batch-predictions/{number}?project={project}"
        ),
        extra=extra,
    )


def output_table(dataset: str, table: str) -> str:
    """``project.dataset.table`` of a job's output table, from ``outputInfo``'s two fields."""
    # The service names the dataset as a bq:// URI and the table bare.
    dataset = dataset.removeprefix("bq://")
    return table if table.count(".") == 2 else f"{dataset}.{table}"


def _output_of(job: Any) -> str | None:
    info = job.output_info
    if info.gcs_output_directory:
        return str(info.gcs_output_directory)
    if info.bigquery_output_table:
        return "bq://" + output_table(info.bigquery_output_dataset, info.bigquery_output_table)
    return None
