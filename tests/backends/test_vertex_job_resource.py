"""The batch prediction job pdbatch creates and how it reads one back (pdbatch.backends._job_resource).

Real google-cloud-aiplatform job objects, built offline: no emulator needed.
"""

from __future__ import annotations

import datetime

import pytest
from google.cloud import aiplatform_v1 as aip

from pdbatch.backends._job_resource import job_resource, job_status, location_of
from pdbatch.backends.vertex import Vertex
from pdbatch.errors import JobNotFoundError
from pdbatch.models import parse_vertex

NAME = "projects/p/locations/europe-west4/batchPredictionJobs/42"


def test_the_created_job_carries_its_size_and_its_submission():
    spec = parse_vertex("llama-4-scout-17b-16e-instruct-maas", "chat")
    source = {"instances_format": "jsonl", "gcs_source": {"uris": ["gs://b/x.jsonl"]}}
    dest = {"predictions_format": "jsonl", "gcs_destination": {"output_uri_prefix": "gs://b/out/"}}
    job = job_resource("x" * 200, spec, source, dest, 7, "RUN-1", "2")
    assert job["model"] == spec.resource and job["input_config"] is source and job["output_config"] is dest
    assert len(job["display_name"]) == 128  # the service's limit
    # underscores: a list filter is AIP-160, where "-" negates (the adoption look-up filters on pdbatch_run)
    assert job["labels"] == {"pdbatch": "1", "pdbatch_requests": "7", "pdbatch_run": "run-1", "pdbatch_part": "2"}
    aip.BatchPredictionJob(**job)  # the client's own type takes it as it is


@pytest.mark.parametrize("size_label", ["pdbatch_requests", "pdbatch-requests"])  # and as older pdbatch wrote it
def test_a_job_reads_back_as_a_status(size_label):
    job = aip.BatchPredictionJob(
        display_name="reviews", state=aip.JobState.JOB_STATE_PARTIALLY_SUCCEEDED,
        completion_stats=aip.CompletionStats(successful_count=5, failed_count=1, incomplete_count=2),
        labels={size_label: "9"},
        output_info=aip.BatchPredictionJob.OutputInfo(bigquery_output_dataset="bq://p.ds",
                                                      bigquery_output_table="predictions_1"),
        error={"code": 3, "message": "some rows failed"},
        partial_failures=[{"code": 3, "message": "row-3: bad request"}],
        create_time=datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC),
    )
    st = job_status(NAME, job)
    assert (st.state, st.total, st.succeeded, st.failed) == ("JOB_STATE_PARTIALLY_SUCCEEDED", 9, 5, 1)
    assert st.error == "some rows failed" and st.output == "bq://p.ds.predictions_1"
    assert st.console_url == ("https://console.cloud.google.com/agent-platform/locations/europe-west4/"
                              "batch-predictions/42?project=p")
    assert st.extra["incomplete"] == 2 and st.extra["partial_failures"] == ["row-3: bad request"]
    assert st.extra["create_time"] == "2026-11-30T00:00:00+00:00"


def test_a_job_without_the_size_label_counts_what_it_has():
    job = aip.BatchPredictionJob(
        state=aip.JobState.JOB_STATE_RUNNING,
        completion_stats=aip.CompletionStats(successful_count=2, failed_count=0, incomplete_count=3),
        output_info=aip.BatchPredictionJob.OutputInfo(gcs_output_directory="gs://b/out/prediction-1"),
    )
    st = job_status(NAME, job)
    assert (st.state, st.total, st.error, st.output) == ("JOB_STATE_RUNNING", 5, None, "gs://b/out/prediction-1")


@pytest.mark.parametrize("job_id", ["local-20260101-000000-abcdef", "", "projects/p/batchPredictionJobs/1"])
def test_a_name_that_is_not_a_vertex_job_is_refused_before_any_call(job_id):
    with pytest.raises(JobNotFoundError, match="not a Vertex AI job id"):
        location_of(job_id)
    with pytest.raises(JobNotFoundError, match="not a Vertex AI job id"):
        Vertex(project="p", api_endpoint="http://127.0.0.1:9").status(job_id)
    assert location_of(NAME) == "europe-west4"


def test_a_submission_that_fails_part_way_cancels_the_jobs_it_created():
    # Vertex and BigQuery-table submissions create one paid job per part; the caller of a failed
    # submission never sees the earlier ids, so they are cancelled (a failed cancel does not hide the cause).
    from pdbatch.backends._create import create_all
    from pdbatch.errors import BackendError, PdbatchError

    created, cancelled = [], []

    def jobs():
        yield {"n": 1}
        yield {"n": 2}
        raise OSError("staging part 3 failed")

    def cancel(job_id):
        cancelled.append(job_id)
        if job_id == "job-1":
            raise BackendError("already ended")

    def create(job):
        created.append(f"job-{job['n']}")
        return created[-1]

    with pytest.raises(OSError, match="staging part 3"):
        create_all(jobs(), create, cancel)
    assert cancelled == ["job-1", "job-2"]
    assert create_all(iter([{"n": 7}]), create, cancel) == ["job-7"]
    assert issubclass(BackendError, PdbatchError)
