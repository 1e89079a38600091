"""The emulators, driven by the real Google client libraries."""
from __future__ import annotations

import contextlib
import json
import time
import warnings

import pandas as pd
import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage

from .fake_model import embed

CHAT_MODEL = "publishers/openai/models/gpt-oss-120b-maas"  # served in us-central1, where these jobs run
EMBED_MODEL = "publishers/google/models/gemini-embedding-001"
RETIRED_MODEL = "publishers/meta/models/llama-3.3-70b-instruct-maas"
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED",
            "JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED"}


def chat_line(i: int, text: str | None = None) -> dict:
    return {"custom_id": f"row-{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "openai/gpt-oss-120b-maas", "max_tokens": 50,
                     "messages": [{"role": "system", "content": "You are terse."},
                                  {"role": "user", "content": text or f"review number {i}"}]}}


def upload_jsonl(client: storage.Client, bucket: str, name: str, lines: list[dict]) -> str:
    client.bucket(bucket).blob(name).upload_from_string(
        "".join(json.dumps(line) + "\n" for line in lines))
    return f"gs://{bucket}/{name}"


def read_output_dir(client: storage.Client, directory: str) -> tuple[list[str], list[dict]]:
    bucket, prefix = directory[len("gs://"):].split("/", 1)
    blobs = sorted(client.list_blobs(bucket, prefix=prefix.rstrip("/") + "/"), key=lambda b: b.name)
    rows = [json.loads(line) for b in blobs for line in b.download_as_text().splitlines() if line]
    return [b.name.rsplit("/", 1)[-1] for b in blobs], rows


@contextlib.contextmanager
def pandas_gbq_nudges():
    """google-cloud-bigquery 3.4x warns (Pending/FutureWarning) on every
    DataFrame load and to_dataframe(), pointing at pandas-gbq; the project's
    filterwarnings=error would turn that nudge into a failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (PendingDeprecationWarning, FutureWarning))
        yield


def load_df(client: bigquery.Client, df: pd.DataFrame, table: str, schema: list) -> None:
    # CSV: BigQuery fills a JSON column from CSV, Avro or NDJSON files, not from
    # the Parquet load_table_from_dataframe writes by default (the fence refuses it).
    config = bigquery.LoadJobConfig(schema=schema, source_format="CSV")
    with pandas_gbq_nudges():
        client.load_table_from_dataframe(df, table, job_config=config).result()


def wait_sdk(job, timeout: float = 30.0) -> str:
    """Poll like a caller would (each .state read is a GET); the SDK's own
    wait_for_completion() sleeps 5 s between polls and forgets EXPIRED."""
    deadline = time.monotonic() + timeout
    while job.state.name not in TERMINAL:
        assert time.monotonic() < deadline, f"still {job.state.name}"
        time.sleep(0.05)
    return job.state.name


@pytest.fixture
def sdk(vertex_emulator):
    from google.cloud import aiplatform

    aiplatform.init(project=vertex_emulator.project, location="us-central1",
                    api_endpoint=vertex_emulator.url, api_transport="rest",
                    credentials=AnonymousCredentials())
    return aiplatform


@pytest.fixture
def job_client(vertex_emulator):
    from google.cloud import aiplatform_v1

    return aiplatform_v1.JobServiceClient(
        transport="rest", client_options={"api_endpoint": vertex_emulator.url},
        credentials=AnonymousCredentials())


def parent(emu) -> str:
    return f"projects/{emu.project}/locations/us-central1"


# ------------------------------------------------------------------ storage
def test_gcs_upload_download_via_env(gcs_emulator, gcs_bucket):
    client = storage.Client(project=gcs_emulator.project)  # follows STORAGE_EMULATOR_HOST
    blob = client.bucket(gcs_bucket).blob("dir/big.bin")
    blob.chunk_size = 256 * 1024  # force a resumable, chunked upload
    payload = bytes(range(256)) * 5000
    blob.upload_from_string(payload)
    assert client.bucket(gcs_bucket).blob("dir/big.bin").download_as_bytes() == payload
    assert client.bucket(gcs_bucket).blob("dir/big.bin").download_as_bytes(start=10, end=19) == payload[10:20]
    assert [b.name for b in client.list_blobs(gcs_bucket, prefix="dir/")] == ["dir/big.bin"]


def test_bigquery_json_column_from_dataframe(bq_emulator, bq_dataset):
    client = bq_emulator.client()
    df = pd.DataFrame({"custom_id": ["a", "b"], "body": [json.dumps({"k": [1, 2]}), json.dumps({"k": "v"})],
                       "n": [1, 2]})
    schema = [bigquery.SchemaField("custom_id", "STRING"), bigquery.SchemaField("body", "JSON"),
              bigquery.SchemaField("n", "INTEGER")]
    load_df(client, df, f"{bq_dataset}.t", schema)
    assert client.get_table(f"{bq_dataset}.t").schema[1].field_type == "JSON"
    rows = {r["custom_id"]: r for r in client.query(f"SELECT * FROM `{bq_dataset}.t`").result()}
    assert rows["a"]["body"] == {"k": [1, 2]}  # parsed from result() rows
    with pandas_gbq_nudges():
        back = client.list_rows(f"{bq_dataset}.t").to_dataframe(create_bqstorage_client=False)
    # JSON text here (spacing differs between emulators): compare parsed.
    assert sorted((json.loads(b) for b in back["body"]), key=json.dumps) == [{"k": "v"}, {"k": [1, 2]}]


def test_bigquery_refuses_parquet_into_a_json_column(bq_emulator, bq_dataset):
    client = bq_emulator.client()
    df = pd.DataFrame({"custom_id": ["a"], "body": [json.dumps({"k": 1})]})
    schema = [bigquery.SchemaField("custom_id", "STRING"), bigquery.SchemaField("body", "JSON")]
    with pandas_gbq_nudges(), pytest.raises(gexc.BadRequest, match="JSON columns can be loaded from CSV"):
        client.load_table_from_dataframe(df, f"{bq_dataset}.p", job_config=bigquery.LoadJobConfig(
            schema=schema, source_format="PARQUET")).result()
    # into an existing table with a JSON column too (no schema in the load)
    client.create_table(bigquery.Table(f"{bq_dataset}.q", schema=schema))
    with pandas_gbq_nudges(), pytest.raises(gexc.BadRequest, match="column\\(s\\) body"):
        client.load_table_from_dataframe(df, f"{bq_dataset}.q").result()
    load_df(client, df, f"{bq_dataset}.q", schema)  # CSV goes through
    assert client.get_table(f"{bq_dataset}.q").num_rows == 1


def test_gcs_bucket_metadata_needs_buckets_get(gcs_least_privilege, gcs_bucket):
    client = storage.Client(project=gcs_least_privilege.project)  # through the fence
    with pytest.raises(gexc.Forbidden, match=r"storage\.buckets\.get"):
        client.get_bucket(gcs_bucket)
    client.bucket(gcs_bucket).blob("a.txt").upload_from_string("x")  # object rights work
    assert [b.name for b in client.list_blobs(gcs_bucket)] == ["a.txt"]
    assert client.bucket(gcs_bucket).blob("a.txt").download_as_text() == "x"


# ------------------------------------------------------------------ Vertex AI via the SDK
def test_sdk_gcs_round_trip(sdk, vertex_emulator, gcs_emulator, gcs_bucket):
    gcs = gcs_emulator.client()
    lines = [chat_line(i) for i in range(6)]
    src = upload_jsonl(gcs, gcs_bucket, "in/requests.jsonl", lines)
    job = sdk.BatchPredictionJob.submit(
        job_display_name="round-trip", model_name=CHAT_MODEL, instances_format="jsonl",
        predictions_format="jsonl", gcs_source=[src], gcs_destination_prefix=f"gs://{gcs_bucket}/out")
    assert job.resource_name.startswith(parent(vertex_emulator) + "/batchPredictionJobs/")
    assert wait_sdk(job) == "JOB_STATE_SUCCEEDED"

    out_dir = job.output_info.gcs_output_directory
    assert out_dir.startswith(f"gs://{gcs_bucket}/out/prediction-model-")
    names, rows = read_output_dir(gcs, out_dir)
    assert names == ["predictions.jsonl"]
    assert [r["custom_id"] for r in rows] != [f"row-{i}" for i in range(6)]  # shuffled
    by_id = {r["custom_id"]: r for r in rows}
    assert set(by_id) == {f"row-{i}" for i in range(6)}
    row = by_id["row-2"]
    assert row["status"] == "" and row["request"] == lines[2]["body"] and row["processed_time"]
    assert row["response"]["object"] == "chat.completion"
    assert row["response"]["choices"][0]["message"]["content"] == "echo: review number 2"
    assert row["response"]["usage"] == {"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10}
    stats = job._gca_resource.completion_stats
    assert (stats.successful_count, stats.failed_count, stats.incomplete_count) == (6, 0, 0)
    # The SDK's own reader follows STORAGE_EMULATOR_HOST.
    assert [b.name.rsplit("/", 1)[-1] for b in job.iter_outputs()] == ["predictions.jsonl"]

    create = vertex_emulator.requests_to("POST", "/batchPredictionJobs")[0]
    assert create.query["$alt"] == ["json;enum-encoding=int"]
    assert create.body["model"] == CHAT_MODEL
    assert create.body["inputConfig"] == {"instancesFormat": "jsonl", "gcsSource": {"uris": [src]}}
    assert create.body["outputConfig"]["gcsDestination"] == {"outputUriPrefix": f"gs://{gcs_bucket}/out"}


def test_sdk_embeddings_wildcard_and_sharded_output(vertex_emulator, gcs_emulator, gcs_bucket, sdk):
    vertex_emulator.rows_per_file = 4
    gcs = gcs_emulator.client()
    for part in range(2):
        upload_jsonl(gcs, gcs_bucket, f"in/part-{part}.jsonl", [
            {"key": f"e-{part}-{i}", "request": {"content": {"parts": [{"text": f"text {part} {i}"}]}}}
            for i in range(5)])
    job = sdk.BatchPredictionJob.submit(
        job_display_name="emb", model_name=EMBED_MODEL, instances_format="jsonl",
        predictions_format="jsonl", gcs_source=f"gs://{gcs_bucket}/in/part-*",
        gcs_destination_prefix=f"gs://{gcs_bucket}/emb/")
    assert wait_sdk(job) == "JOB_STATE_SUCCEEDED"
    names, rows = read_output_dir(gcs, job.output_info.gcs_output_directory)
    assert names == ["predictions_00001.jsonl", "predictions_00002.jsonl", "predictions_00003.jsonl"]
    assert len(rows) == 10
    row = next(r for r in rows if r["key"] == "e-1-3")
    assert row["status"] == "" and row["request"]["content"]["parts"][0]["text"] == "text 1 3"
    assert row["response"]["embedding"]["values"] == embed("text 1 3")
    assert row["response"]["tokenCount"] == "3"  # SPEC.md: response.tokenCount, an int64 string


def test_gemini_embeddings_refuse_openai_lines_and_bigquery(vertex_emulator, gcs_emulator, gcs_bucket, sdk,
                                                            bq_dataset):
    gcs = gcs_emulator.client()
    src = upload_jsonl(gcs, gcs_bucket, "in.jsonl", [
        {"custom_id": "e-0", "method": "POST", "url": "/v1/embeddings", "body": {"input": "hello"}}])
    job = sdk.BatchPredictionJob.submit(
        job_display_name="emb", model_name=EMBED_MODEL, instances_format="jsonl",
        predictions_format="jsonl", gcs_source=src, gcs_destination_prefix=f"gs://{gcs_bucket}/emb/")
    assert wait_sdk(job) == "JOB_STATE_SUCCEEDED"
    _, [row] = read_output_dir(gcs, job.output_info.gcs_output_directory)
    assert "response" not in row and "'request' object" in row["status"]
    with pytest.raises(gexc.BadRequest, match="BigQuery input and output are not supported"):
        sdk.BatchPredictionJob.submit(
            job_display_name="emb", model_name=EMBED_MODEL, instances_format="jsonl",
            predictions_format="bigquery", gcs_source=src, bigquery_destination_prefix=f"bq://{bq_dataset}")


def test_sdk_bigquery_to_bigquery(sdk, vertex_emulator, bq_emulator, bq_dataset):
    client = bq_emulator.client()
    lines = [chat_line(i) for i in range(4)]
    df = pd.DataFrame({"custom_id": [line["custom_id"] for line in lines],
                       "method": "POST", "url": "/v1/chat/completions",
                       "body": [json.dumps(line["body"]) for line in lines],
                       "review_stars": [5, 4, 3, 2]})  # pass-through column
    schema = [bigquery.SchemaField("custom_id", "STRING"), bigquery.SchemaField("method", "STRING"),
              bigquery.SchemaField("url", "STRING"), bigquery.SchemaField("body", "JSON"),
              bigquery.SchemaField("review_stars", "INTEGER")]
    load_df(client, df, f"{bq_dataset}.requests", schema)
    job = sdk.BatchPredictionJob.submit(
        job_display_name="bq", model_name=CHAT_MODEL, instances_format="bigquery",
        predictions_format="bigquery", bigquery_source=f"bq://{bq_dataset}.requests",
        bigquery_destination_prefix=f"bq://{bq_dataset}")
    assert wait_sdk(job) == "JOB_STATE_SUCCEEDED"
    info = job.output_info
    assert info.bigquery_output_dataset == f"bq://{bq_dataset}"
    assert info.bigquery_output_table.startswith("predictions_")
    table = client.get_table(f"{bq_dataset}.{info.bigquery_output_table}")
    assert {f.name: f.field_type for f in table.schema} == {
        "custom_id": "STRING", "body": "JSON", "review_stars": "INTEGER",
        "response": "JSON", "id": "STRING", "status": "STRING", "processed_time": "TIMESTAMP"}
    rows = {r["custom_id"]: r for r in client.list_rows(table)}
    assert rows["row-1"]["review_stars"] == 4 and rows["row-1"]["status"] == ""
    assert rows["row-1"]["response"]["choices"][0]["message"]["content"] == "echo: review number 1"

    # An exact output table that already exists fails the job.
    job2 = sdk.BatchPredictionJob.submit(
        job_display_name="bq-exists", model_name=CHAT_MODEL, instances_format="bigquery",
        predictions_format="bigquery", bigquery_source=f"bq://{bq_dataset}.requests",
        bigquery_destination_prefix=f"bq://{bq_dataset}.{info.bigquery_output_table}")
    assert wait_sdk(job2) == "JOB_STATE_FAILED"
    assert "already exists" in job2._gca_resource.error.message


def test_bigquery_input_with_reserved_column_fails(sdk, bq_emulator, bq_dataset):
    client = bq_emulator.client()
    client.query(f"CREATE TABLE `{bq_dataset}.bad` AS SELECT 'a' AS custom_id, "
                 "JSON '{\"messages\": []}' AS body, 1 AS id").result()
    job = sdk.BatchPredictionJob.submit(
        job_display_name="reserved", model_name=CHAT_MODEL, instances_format="bigquery",
        predictions_format="bigquery", bigquery_source=f"bq://{bq_dataset}.bad",
        bigquery_destination_prefix=f"bq://{bq_dataset}")
    assert wait_sdk(job) == "JOB_STATE_FAILED"
    assert "reserved column(s) id" in job._gca_resource.error.message


def test_sdk_cancel_mid_run_keeps_written_rows(sdk, vertex_emulator, gcs_emulator, gcs_bucket):
    gcs = gcs_emulator.client()
    src = upload_jsonl(gcs, gcs_bucket, "in.jsonl", [chat_line(i) for i in range(10)])
    vertex_emulator.faults.hold = True  # stays RUNNING after 5 of 10 rows
    job = sdk.BatchPredictionJob.submit(
        job_display_name="cancel", model_name=CHAT_MODEL, instances_format="jsonl",
        predictions_format="jsonl", gcs_source=src, gcs_destination_prefix=f"gs://{gcs_bucket}/out")
    vertex_emulator.wait_held(job.resource_name)
    assert job.state.name == "JOB_STATE_RUNNING"
    job.cancel()
    assert job.state.name in ("JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED")
    assert wait_sdk(job) == "JOB_STATE_CANCELLED"
    _, rows = read_output_dir(gcs, job.output_info.gcs_output_directory)
    assert len(rows) == 5
    stats = job._gca_resource.completion_stats
    assert (stats.successful_count, stats.incomplete_count) == (5, 5)
    assert vertex_emulator.requests_to("POST", ":cancel")[0].body == {}


# ------------------------------------------------------------------ faults
@pytest.mark.parametrize("fault, state", [
    ({"row_errors": {"row-1", "row-3"}}, "JOB_STATE_SUCCEEDED"),
    ({"partial": True, "row_errors": lambda rec: rec["custom_id"] == "row-0"},
     "JOB_STATE_PARTIALLY_SUCCEEDED"),
    ({"expire": True}, "JOB_STATE_EXPIRED"),
    ({"fail_job": "Quota exceeded for model"}, "JOB_STATE_FAILED"),
])
def test_sdk_job_faults(sdk, vertex_emulator, gcs_emulator, gcs_bucket, fault, state):
    gcs = gcs_emulator.client()
    src = upload_jsonl(gcs, gcs_bucket, "in.jsonl", [chat_line(i) for i in range(6)])
    for key, value in fault.items():
        setattr(vertex_emulator.faults, key, value)
    job = sdk.BatchPredictionJob.submit(
        job_display_name="faults", model_name=CHAT_MODEL, instances_format="jsonl",
        predictions_format="jsonl", gcs_source=src, gcs_destination_prefix=f"gs://{gcs_bucket}/out")
    assert wait_sdk(job) == state
    res = job._gca_resource
    if state == "JOB_STATE_FAILED":
        assert res.error.message == "Quota exceeded for model"
        return
    _, rows = read_output_dir(gcs, res.output_info.gcs_output_directory)
    failed = {r["custom_id"] for r in rows if r["status"]}
    if state == "JOB_STATE_EXPIRED":
        assert len(rows) == 3 and res.completion_stats.incomplete_count == 3
        return
    assert failed == ({"row-1", "row-3"} if "row_errors" in fault and not fault.get("partial") else {"row-0"})
    for r in rows:
        if r["custom_id"] in failed:
            assert "response" not in r and r["status"].startswith("Bad Request: {")
            assert json.loads(r["status"][len("Bad Request: "):])["error"]["code"] == 400
    assert res.completion_stats.failed_count == len(failed)


def test_injected_http_errors(sdk, vertex_emulator, job_client):
    vertex_emulator.faults.http_errors = [429, 404]
    with pytest.raises(gexc.TooManyRequests):
        sdk.BatchPredictionJob.list()
    with pytest.raises(gexc.NotFound):
        job_client.get_batch_prediction_job(name=parent(vertex_emulator) + "/batchPredictionJobs/1")
    assert sdk.BatchPredictionJob.list() == []
    assert len(vertex_emulator.requests) == 3


# ------------------------------------------------------------------ the GAPIC client
def test_job_service_client_lifecycle(job_client, vertex_emulator, gcs_emulator, gcs_bucket):
    from google.cloud import aiplatform_v1

    src = upload_jsonl(gcs_emulator.client(), gcs_bucket, "in.jsonl", [chat_line(0)])
    names = []
    for i in range(3):
        created = job_client.create_batch_prediction_job(parent=parent(vertex_emulator), batch_prediction_job={
            "display_name": f"gapic-{i}", "model": CHAT_MODEL,
            "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": [src]}},
            "output_config": {"predictions_format": "jsonl",
                              "gcs_destination": {"output_uri_prefix": f"gs://{gcs_bucket}/o"}}})
        assert created.state == aiplatform_v1.JobState.JOB_STATE_QUEUED
        names.append(created.name)
    for name in names:
        vertex_emulator.wait_for_state(name, "JOB_STATE_SUCCEEDED")
    got = job_client.get_batch_prediction_job(name=names[0])
    assert got.state.name == "JOB_STATE_SUCCEEDED" and got.display_name == "gapic-0"
    assert got.create_time <= got.start_time <= got.end_time

    pager = job_client.list_batch_prediction_jobs(request={
        "parent": parent(vertex_emulator), "filter": "state=JOB_STATE_SUCCEEDED", "page_size": 2})
    assert [j.name for j in pager] == names  # the pager followed nextPageToken
    listed = vertex_emulator.requests_to("GET", "/batchPredictionJobs")
    assert listed[0].query["pageSize"] == ["2"] and listed[1].query["pageToken"] == ["2"]

    with pytest.raises(gexc.BadRequest, match="cannot be cancelled"):
        job_client.cancel_batch_prediction_job(name=names[0])
    job_client.delete_batch_prediction_job(name=names[0]).result(timeout=5)
    with pytest.raises(gexc.NotFound):
        job_client.get_batch_prediction_job(name=names[0])


@pytest.mark.parametrize("patch, message", [
    ({"model": "meta/llama-4-scout-17b-16e-instruct-maas"}, "Invalid Model resource name"),
    ({"input_config": {"instances_format": "jsonl"}}, "Exactly one of input_config"),
    ({"input_config": {"instances_format": "bigquery", "gcs_source": {"uris": ["gs://bkt/x"]}}}, "jsonl"),
    ({"output_config": {"predictions_format": "jsonl",
                        "bigquery_destination": {"output_uri": "bq://p.d"}}}, "'bigquery'"),
    ({"output_config": {"predictions_format": "jsonl",
                        "gcs_destination": {"output_uri_prefix": "/local/dir"}}}, "invalid URI"),
])
def test_create_validation(job_client, vertex_emulator, patch, message):
    job = {"display_name": "bad", "model": CHAT_MODEL,
           "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": ["gs://bkt/in.jsonl"]}},
           "output_config": {"predictions_format": "jsonl",
                             "gcs_destination": {"output_uri_prefix": "gs://bkt/out"}}}
    job.update(patch)
    with pytest.raises(gexc.BadRequest, match=message):
        job_client.create_batch_prediction_job(parent=parent(vertex_emulator), batch_prediction_job=job)
    assert vertex_emulator.jobs == {}


def test_raw_wire_errors(vertex_emulator):
    """What the GAPIC client cannot send (both members of a oneof) and the
    error body shape, over plain HTTP."""
    import urllib.error
    import urllib.request

    url = f"{vertex_emulator.url}/v1/{parent(vertex_emulator)}/batchPredictionJobs?$alt=json;enum-encoding=int"
    body = {"displayName": "x", "model": CHAT_MODEL,
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://bkt/a"]},
                            "bigquerySource": {"inputUri": "bq://p.d.t"}},
            "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": "gs://bkt/o"}}}
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 400
    error = json.loads(err.value.read())["error"]
    assert error["status"] == "INVALID_ARGUMENT" and "Exactly one of input_config" in error["message"]
    assert vertex_emulator.requests[0].body == body


def test_gcs_input_bigquery_output(sdk, gcs_emulator, gcs_bucket, bq_emulator, bq_dataset):
    src = upload_jsonl(gcs_emulator.client(), gcs_bucket, "in.jsonl", [chat_line(i) for i in range(3)])
    job = sdk.BatchPredictionJob.submit(
        job_display_name="mixed", model_name=CHAT_MODEL, instances_format="jsonl",
        predictions_format="bigquery", gcs_source=src,
        bigquery_destination_prefix=f"bq://{bq_dataset}.answers")
    assert wait_sdk(job) == "JOB_STATE_SUCCEEDED"
    assert job.output_info.bigquery_output_table == "answers"
    rows = {r["custom_id"]: r for r in bq_emulator.client().list_rows(f"{bq_dataset}.answers")}
    assert rows["row-0"]["body"]["messages"][1]["content"] == "review number 0"
    assert rows["row-0"]["response"]["object"] == "chat.completion"


def test_503_retry_differs_between_gapic_and_sdk(sdk, job_client, vertex_emulator, gcs_emulator, gcs_bucket):
    # The GAPIC methods have no default retry: one 503 surfaces at once.
    vertex_emulator.faults.http_errors = [503]
    with pytest.raises(gexc.ServiceUnavailable):
        list(job_client.list_batch_prediction_jobs(parent=parent(vertex_emulator)))
    # The SDK's resource GET retries transient errors (429/500/503, ~1 s backoff).
    src = upload_jsonl(gcs_emulator.client(), gcs_bucket, "in.jsonl", [chat_line(0)])
    job = sdk.BatchPredictionJob.submit(
        job_display_name="retry", model_name=CHAT_MODEL, instances_format="jsonl",
        predictions_format="jsonl", gcs_source=src, gcs_destination_prefix=f"gs://{gcs_bucket}/o")
    vertex_emulator.faults.http_errors = [503]
    assert job.state.name.startswith("JOB_STATE_")
    gets = vertex_emulator.requests_to("GET", job.resource_name.rsplit("/", 1)[-1])
    assert len(gets) == 2  # the 503, then the retry


def test_vertexai_batch_prediction_wrapper(vertex_emulator, gcs_emulator, gcs_bucket):
    import vertexai
    from vertexai.batch_prediction import BatchPredictionJob

    src = upload_jsonl(gcs_emulator.client(), gcs_bucket, "in.jsonl", [chat_line(0)])
    vertexai.init(project=vertex_emulator.project, location="us-central1", api_endpoint=vertex_emulator.url,
                  api_transport="rest", credentials=AnonymousCredentials())
    # The wrapper wants the full publishers/... path; "meta/<id>" is refused client-side.
    job = BatchPredictionJob.submit(source_model=CHAT_MODEL, input_dataset=src,
                                    output_uri_prefix=f"gs://{gcs_bucket}/out")
    deadline = time.monotonic() + 30
    while not job.has_ended:  # cached state: only refresh() sends a GET
        assert time.monotonic() < deadline
        time.sleep(0.05)
        job.refresh()
    assert job.has_succeeded
    assert job.output_location.startswith(f"gs://{gcs_bucket}/out/prediction-model-")


# ------------------------------------------------------------------ what the real service refuses
def model_garden(emu):
    from google.cloud import aiplatform_v1

    return aiplatform_v1.ModelGardenServiceClient(
        transport="rest", client_options={"api_endpoint": emu.url}, credentials=AnonymousCredentials())


def test_only_live_models_are_served(vertex_emulator, job_client, gcs_bucket):
    garden = model_garden(vertex_emulator)
    assert garden.get_publisher_model(name=CHAT_MODEL).launch_stage.name == "GA"
    with pytest.raises(gexc.NotFound, match=r"Publisher Model `publishers/meta/models/llama-3\.3-70b"):
        garden.get_publisher_model(name=RETIRED_MODEL)
    job = {"display_name": "old", "model": RETIRED_MODEL,
           "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": [f"gs://{gcs_bucket}/in.jsonl"]}},
           "output_config": {"predictions_format": "jsonl",
                             "gcs_destination": {"output_uri_prefix": f"gs://{gcs_bucket}/out"}}}
    with pytest.raises(gexc.NotFound, match=r"Publisher Model .*llama-3\.3-70b-instruct-maas. not found"):
        job_client.create_batch_prediction_job(parent=parent(vertex_emulator), batch_prediction_job=job)
    vertex_emulator.live_models.add(RETIRED_MODEL)  # a test may bring one back
    assert garden.get_publisher_model(name=RETIRED_MODEL).name == RETIRED_MODEL
    # a Gemini embedding model runs only in its locations
    with pytest.raises(gexc.BadRequest, match="is not supported in location us-central1"):
        job_client.create_batch_prediction_job(parent=parent(vertex_emulator), batch_prediction_job={
            **job, "model": "publishers/google/models/gemini-embedding-2"})
    assert vertex_emulator.jobs == {}


def test_models_outside_their_regions_without_batch_or_not_enabled_are_refused(vertex_emulator, job_client,
                                                                               gcs_bucket):
    """SPEC.md "Models" and "What a real project meets on its first job", as the service answers them."""
    import urllib.error
    import urllib.request

    job = {"display_name": "x", "model": "publishers/meta/models/llama-4-scout-17b-16e-instruct-maas",
           "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": [f"gs://{gcs_bucket}/in.jsonl"]}},
           "output_config": {"predictions_format": "jsonl",
                             "gcs_destination": {"output_uri_prefix": f"gs://{gcs_bucket}/out"}}}

    def create(location: str = "us-central1", **patch):
        job_client.create_batch_prediction_job(parent=f"projects/{vertex_emulator.project}/locations/{location}",
                                               batch_prediction_job={**job, **patch})

    with pytest.raises(gexc.BadRequest, match="llama-4-scout-17b-16e-instruct-maas` is not supported in location"):
        create()  # Scout: us-east5 only
    with pytest.raises(gexc.BadRequest, match="Do not support publisher model gemma-4-26b-a4b-it-maas"):
        create(model="publishers/google/models/gemma-4-26b-a4b-it-maas")
    with pytest.raises(gexc.BadRequest, match="Batch prediction is not supported in location global"):
        create("global", model=CHAT_MODEL)
    vertex_emulator.not_enabled.add(CHAT_MODEL)
    with pytest.raises(gexc.BadRequest, match="Project `test-project` is not allowed to use Publisher Model"):
        create(model=CHAT_MODEL)
    assert vertex_emulator.jobs == {}
    # the online endpoint the preflight asks: the same refusals, in the Google error body
    url = (f"{vertex_emulator.url}/v1/projects/{vertex_emulator.project}/locations/us-central1/endpoints/openapi/"
           f"chat/completions")

    def ask(model: str) -> dict:
        req = urllib.request.Request(url, method="POST", headers={"Content-Type": "application/json"}, data=json.dumps(
            {"model": model, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 1}).encode())
        try:
            with urllib.request.urlopen(req) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as err:
            return json.loads(err.read())

    assert ask("openai/gpt-oss-120b-maas")["error"]["status"] == "FAILED_PRECONDITION"
    vertex_emulator.not_enabled.clear()
    answer = ask("openai/gpt-oss-120b-maas")
    assert answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] == 1
    assert "not supported in location us-central1" in ask("meta/llama-4-scout-17b-16e-instruct-maas")["error"][
        "message"]


def test_list_filters_on_labels_and_refuses_others(job_client, vertex_emulator, gcs_emulator, gcs_bucket):
    src = upload_jsonl(gcs_emulator.client(), gcs_bucket, "in.jsonl", [chat_line(0)])
    for run in ("a", "b", "a"):
        job_client.create_batch_prediction_job(parent=parent(vertex_emulator), batch_prediction_job={
            "display_name": run, "model": CHAT_MODEL, "labels": {"pdbatch_run": run},
            "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": [src]}},
            "output_config": {"predictions_format": "jsonl",
                              "gcs_destination": {"output_uri_prefix": f"gs://{gcs_bucket}/o"}}})
    for filt in ('labels.pdbatch_run="a"', "labels.pdbatch_run=a", 'labels.pdbatch_run = "a" AND display_name=a'):
        listed = job_client.list_batch_prediction_jobs(request={"parent": parent(vertex_emulator), "filter": filt})
        assert [j.display_name for j in listed] == ["a", "a"], filt
    with pytest.raises(gexc.BadRequest, match="unsupported expression"):
        list(job_client.list_batch_prediction_jobs(request={
            "parent": parent(vertex_emulator), "filter": 'labels.pdbatch_run:"a"'}))
    # AIP-160: "-" negates; no documented label key has one (SPEC.md "What a real project meets ...")
    with pytest.raises(gexc.BadRequest, match="'-' is not allowed in a label key"):
        list(job_client.list_batch_prediction_jobs(request={
            "parent": parent(vertex_emulator), "filter": 'labels.pdbatch-run="a"'}))


def test_create_can_succeed_then_fail(job_client, vertex_emulator, gcs_emulator, gcs_bucket):
    src = upload_jsonl(gcs_emulator.client(), gcs_bucket, "in.jsonl", [chat_line(0)])
    vertex_emulator.faults.create_then = [500]
    with pytest.raises(gexc.InternalServerError, match="after the job was created"):
        job_client.create_batch_prediction_job(parent=parent(vertex_emulator), batch_prediction_job={
            "display_name": "x", "model": CHAT_MODEL,
            "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": [src]}},
            "output_config": {"predictions_format": "jsonl",
                              "gcs_destination": {"output_uri_prefix": f"gs://{gcs_bucket}/o"}}})
    [job] = vertex_emulator.jobs.values()  # billed all the same
    vertex_emulator.wait_for_state(job.name, "JOB_STATE_SUCCEEDED")


def test_pause_and_model_garden_output_shape(sdk, vertex_emulator, gcs_emulator, gcs_bucket):
    gcs = gcs_emulator.client()
    src = upload_jsonl(gcs, gcs_bucket, "in.jsonl", [chat_line(i) for i in range(4)])
    vertex_emulator.faults.pause = True
    vertex_emulator.faults.row_errors = {"row-1"}
    vertex_emulator.output_shape = "model_garden"
    job = sdk.BatchPredictionJob.submit(
        job_display_name="p", model_name=CHAT_MODEL, instances_format="jsonl",
        predictions_format="jsonl", gcs_source=src, gcs_destination_prefix=f"gs://{gcs_bucket}/out")
    vertex_emulator.wait_for_state(job.resource_name, "JOB_STATE_PAUSED")
    vertex_emulator.faults.pause = False
    assert wait_sdk(job) == "JOB_STATE_SUCCEEDED"
    _, rows = read_output_dir(gcs, job.output_info.gcs_output_directory)
    by_id = {r["custom_id"]: r for r in rows}
    assert set(by_id["row-0"]) == {"custom_id", "error", "response", "id"} and by_id["row-0"]["error"] == ""
    assert "Injected row error" in by_id["row-1"]["error"] and "response" not in by_id["row-1"]


def test_schema_references_fail_the_job(sdk, vertex_emulator, gcs_emulator, gcs_bucket):
    line = chat_line(0)
    line["body"]["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {"type": "string"}}}}}
    src = upload_jsonl(gcs_emulator.client(), gcs_bucket, "in.jsonl", [line])
    job = sdk.BatchPredictionJob.submit(
        job_display_name="s", model_name=CHAT_MODEL, instances_format="jsonl",
        predictions_format="jsonl", gcs_source=src, gcs_destination_prefix=f"gs://{gcs_bucket}/out")
    assert wait_sdk(job) == "JOB_STATE_FAILED"
    assert 'Unknown name "$ref"' in job._gca_resource.error.message
