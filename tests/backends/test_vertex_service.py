"""Vertex AI as it really is in late 2026 (issue 10): what the real service refuses, the emulators refuse.

Each test runs the real google-cloud clients against the emulators, made as
strict as the service: only live models are served, Cloud Storage is seen
with object rights only, BigQuery refuses Parquet loads into JSON columns.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from google.cloud import bigquery

from pdbatch import models
from pdbatch.backends import _create
from pdbatch.backends.vertex import Vertex
from pdbatch.errors import BackendError, ConfigError, JobPausedError
from tests.backends.test_vertex import creates, make
from tests.backends.test_vertex import quick_retries as _quick_retries
from tests.backends.test_vertex import vx as _vx
from tests.emulators.fake_model import embed
from tests.emulators.fence import Fence, deny_gcs, gcs_iam

ROOT = Path(__file__).resolve().parents[2]
quick_retries, vx = _quick_retries, _vx  # the same fixtures as tests/backends/test_vertex.py
PROMPT = "Summarize: {text}"
CHAT = "gpt-oss-120b-maas"
RETIRED = "llama-3.3-70b-instruct-maas"


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"text": [f"review number {i}" for i in range(5)], "stars": [5, 4, 3, 2, 1]})


def garden_gets(emu) -> list[str]:
    return [r.path for r in emu.requests if r.method == "GET" and "/publishers/" in r.path]


def objects(gcs_emulator, bucket: str) -> list[str]:
    return [b.name for b in gcs_emulator.client().list_blobs(bucket)]


def staged_lines(gcs_emulator, body: dict) -> list[dict]:
    [uri] = body["inputConfig"]["gcsSource"]["uris"]
    bucket, name = uri[len("gs://"):].split("/", 1)
    text = gcs_emulator.client().bucket(bucket).blob(name).download_as_text()
    return [json.loads(line) for line in text.splitlines()]


def echoed(frame: pd.DataFrame) -> list[str]:
    return [f"echo: Summarize: {t}" for t in frame.text]


# ------------------------------------------------------------ 1. model lifecycle
@pytest.mark.slow
def test_retired_model_is_refused_before_anything_is_sent(vx, vertex_emulator, gcs_emulator, gcs_bucket, frame):
    with pytest.raises(ConfigError) as err:
        frame.llama.batch_predict(PROMPT, model=RETIRED, backend=vx, progress=False)
    message = str(err.value)
    assert "retired meta/llama-3.3-70b-instruct-maas on 2026-10-21" in message
    assert "llama-4-scout-17b-16e-instruct-maas" in message and "gpt-oss-120b-maas" in message
    assert vertex_emulator.requests == [] and objects(gcs_emulator, gcs_bucket) == []
    # written as a full path, with another publisher spelling, it is the same model
    with pytest.raises(ConfigError, match="retired"):
        vx.model_name(f"publishers/meta/models/{RETIRED}", "chat")


@pytest.mark.slow
def test_deprecated_model_runs_with_a_warning(vx, vertex_emulator, frame, monkeypatch):
    monkeypatch.setattr(models, "today", lambda: date(2026, 8, 1))  # deprecated, not yet retired
    vertex_emulator.live_models.add(f"publishers/meta/models/{RETIRED}")
    with pytest.warns(models.DeprecatedModelWarning, match="retired on 2026-10-21"):
        out = frame.llama.batch_predict(PROMPT, model=RETIRED, backend=vx, progress=False)
    assert out.response.tolist() == echoed(frame)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qwen/qwen9-coder-maas", "publishers/qwen/models/qwen9-coder-maas"])
def test_unknown_model_is_asked_of_model_garden(vx, vertex_emulator, gcs_emulator, gcs_bucket, frame, name):
    with pytest.raises(ConfigError, match=r"does not offer publishers/qwen/models/qwen9-coder-maas.*not found"):
        frame.llama.batch_predict(PROMPT, model=name, backend=vx, progress=False)
    assert garden_gets(vertex_emulator) == ["/v1/publishers/qwen/models/qwen9-coder-maas"]
    assert creates(vertex_emulator) == [] and objects(gcs_emulator, gcs_bucket) == []


@pytest.mark.slow
def test_a_new_model_the_catalog_does_not_know_runs(vx, vertex_emulator, frame):
    vertex_emulator.live_models.add("publishers/google/models/gemma-9-maas")
    out = frame.llama.batch_predict(PROMPT, model="google/gemma-9-maas", backend=vx, progress=False)
    assert out.response.tolist() == echoed(frame)
    assert creates(vertex_emulator)[0]["model"] == "publishers/google/models/gemma-9-maas"


@pytest.mark.slow
def test_live_service_overrules_a_stale_catalog_once_per_session(vertex_emulator, gcs_least_privilege, gcs_emulator,
                                                                 gcs_bucket, frame):
    vx = make(vertex_emulator, f"gs://{gcs_bucket}/pdbatch/", location="us-east5")
    maverick = "llama-4-maverick-17b-128e-instruct-maas"
    vertex_emulator.live_models.discard(f"publishers/meta/models/{maverick}")  # retired after the catalog
    for _ in range(2):
        with pytest.raises(ConfigError, match=f"does not offer publishers/meta/models/{maverick}"):
            frame.llama.batch_predict(PROMPT, model=maverick, backend=vx, progress=False)
    assert len(garden_gets(vertex_emulator)) == 1  # the answer is kept for the session
    assert creates(vertex_emulator) == [] and objects(gcs_emulator, gcs_bucket) == []


@pytest.mark.slow
def test_model_retired_between_lookup_and_creation(vx, vertex_emulator, frame, monkeypatch):
    # Model Garden said yes, then job creation answers 404: the same clear message.
    real = vertex_emulator._create

    def retire_then_create(*args):
        vertex_emulator.live_models.discard(f"publishers/openai/models/{CHAT}")
        return real(*args)

    monkeypatch.setattr(vertex_emulator, "_create", retire_then_create)
    with pytest.raises(ConfigError, match=f"does not offer publishers/openai/models/{CHAT}.*job creation"):
        frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, progress=False)


@pytest.mark.slow
def test_default_chat_model_is_live(vx, vertex_emulator, frame):
    out = frame.llama.batch_predict(PROMPT, backend=vx, progress=False)
    assert out.response.tolist() == echoed(frame)
    assert creates(vertex_emulator)[0]["model"] == f"publishers/openai/models/{CHAT}"


# ------------------------------------------------------------ 2. embeddings
@pytest.mark.slow
def test_embeddings_default_to_gemini_embedding_lines(vx, vertex_emulator, gcs_emulator, frame):
    out = frame.llama.embed("{text}", backend=vx, progress=False)
    assert out.error.isna().all(), out.error.tolist()
    for text, vector in zip(frame.text, out.embedding, strict=True):
        np.testing.assert_allclose(vector, embed(text), rtol=1e-6)
    [body] = creates(vertex_emulator)
    assert body["model"] == "publishers/google/models/gemini-embedding-001"
    lines = staged_lines(gcs_emulator, body)
    assert lines[0] == {"key": "row-0", "request": {"content": {"parts": [{"text": "review number 0"}]}}}


@pytest.mark.slow
def test_embedding_options_and_failed_rows(vx, vertex_emulator, gcs_emulator, frame):
    vertex_emulator.faults.row_errors = lambda record: record.get("key") == "row-3"
    out = frame.llama.embed("{text}", backend=vx, progress=False, dimensions=4, input_type="query")
    assert out.error.notna().tolist() == [False, False, False, True, False]
    assert "Injected row error" in out.error.iloc[3] and out.embedding.iloc[3] is None
    assert [len(v) for v in out.embedding.drop(index=3)] == [4, 4, 4, 4]
    config = staged_lines(gcs_emulator, creates(vertex_emulator)[0])[0]["request"]["embed_content_config"]
    assert config == {"output_dimensionality": 4, "task_type": "RETRIEVAL_QUERY"}


@pytest.mark.slow
def test_embeddings_in_the_us_multi_region_use_gemini_embedding_2(vertex_emulator, gcs_least_privilege,
                                                                 gcs_bucket, frame):
    vx = make(vertex_emulator, f"gs://{gcs_bucket}/p/", location="us")
    out = frame.llama.embed("{text}", backend=vx, progress=False)
    assert out.error.isna().all()
    assert creates(vertex_emulator)[0]["model"] == "publishers/google/models/gemini-embedding-2"
    with pytest.raises(ConfigError, match="gemini-embedding-2 runs batch jobs only in us, eu"):
        frame.llama.embed("{text}", model="gemini-embedding-2",
                          backend=make(vertex_emulator, f"gs://{gcs_bucket}/p/"), progress=False)


@pytest.mark.slow
def test_embeddings_refuse_what_gemini_batch_cannot_take(vertex_emulator, gcs_least_privilege, gcs_bucket,
                                                         bq_dataset, frame):
    with pytest.raises(ConfigError, match="Cloud Storage only"):
        frame.llama.embed("{text}", backend=make(vertex_emulator, f"bq://{bq_dataset}"), progress=False)
    vx = make(vertex_emulator, f"gs://{gcs_bucket}/p/")
    # refused by pdbatch.lines.params before the Gemini conversion sees it
    with pytest.raises(ConfigError, match="'temperature' is a field of chat requests, not embeddings"):
        frame.llama.embed("{text}", backend=vx, progress=False, temperature=0.5)
    tokyo = make(vertex_emulator, f"gs://{gcs_bucket}/p/", location="asia-northeast1")
    with pytest.raises(ConfigError, match=r"no Vertex embeddings model runs batch jobs in 'asia-northeast1'.*"
                                          r"backend='local' \(multilingual-e5-small\)"):
        frame.llama.embed("{text}", backend=tokyo, progress=False)
    assert vertex_emulator.requests == []


# ------------------------------------------------------------ 3. BigQuery JSON loads
@pytest.mark.slow
def test_passthrough_loads_a_json_column_as_bigquery_accepts(vertex_emulator, bq_emulator, bq_dataset):
    # The fence in front of the BigQuery emulator refuses a Parquet load into a JSON column.
    frame = pd.DataFrame({
        "text": ["a", "b", "c"], "score": [0.5, float("nan"), 2.0], "n": [1, 2, 3],
        "when": pd.to_datetime(["2026-01-01 00:00", "2026-06-30 12:00", None], utc=True), "ok": [True, False, True],
    })
    vx = make(vertex_emulator, f"bq://{bq_dataset}")
    job = frame.llama.submit("Say {text}", model=CHAT, backend=vx, passthrough=True, progress=False)
    out = job.wait(progress=False).result()
    assert out.response.tolist() == ["echo: Say a", "echo: Say b", "echo: Say c"]
    client = bq_emulator.client()
    table = creates(vertex_emulator)[0]["inputConfig"]["bigquerySource"]["inputUri"][len("bq://"):]
    assert {f.name: f.field_type for f in client.get_table(table).schema}["body"] == "JSON"
    rows = {r["custom_id"]: r for r in client.list_rows(table)}
    assert rows["row-1"]["score"] is None and rows["row-2"]["when"] is None and rows["row-1"]["ok"] is False
    assert rows["row-1"]["when"].isoformat().startswith("2026-06-30T12:00")


# ------------------------------------------------------------ 4. least-privilege buckets
@pytest.mark.slow
@pytest.mark.parametrize(("denied", "fails_at", "preflight"), [
    ("storage.objects.list", "checking the staging bucket", True),
    # the preflight's testIamPermissions finds it before anything is uploaded ...
    ("storage.objects.create", "the caller lacks storage.objects.create on it", True),
    # ... and without the preflight, the upload names it
    ("storage.objects.create", "uploading the requests", False)])
def test_missing_storage_permission_is_named(vertex_emulator, gcs_emulator, gcs_bucket, frame, monkeypatch,
                                             denied, fails_at, preflight):
    lacks = {"storage.buckets.get", "storage.buckets.getIamPolicy", denied}
    with Fence(gcs_emulator.url, deny_gcs(*lacks), gcs_iam(lacks)) as fence:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", fence.url)
        vx = make(vertex_emulator, f"gs://{gcs_bucket}/p/", preflight=preflight)
        with pytest.raises((BackendError, ConfigError)) as err:
            frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, progress=False)
    assert fails_at in str(err.value) and denied in str(err.value) and f"gs://{gcs_bucket}" in str(err.value)
    assert creates(vertex_emulator) == []


# ------------------------------------------------------------ 5. never two billed jobs
@pytest.mark.slow
@pytest.mark.parametrize("after", [500, 503, "drop", 3.0])
def test_ambiguous_create_failure_adopts_the_job(vx, vertex_emulator, frame, monkeypatch, after):
    monkeypatch.setattr(_create, "CREATE_TIMEOUT", 0.5)  # 3.0: the create stalls past it
    vertex_emulator.faults.create_then = [after]
    out = frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, progress=False)
    assert len(vertex_emulator.jobs) == 1
    assert out.response.tolist() == echoed(frame)
    [listing] = [r for r in vertex_emulator.requests_to("GET", "/batchPredictionJobs") if "filter" in r.query]
    [run] = {j.spec["labels"]["pdbatch_run"] for j in vertex_emulator.jobs.values()}
    # a filter the service accepts: the emulator refuses a hyphenated label key, as AIP-160 may
    assert listing.query["filter"] == [f'labels.pdbatch_run="{run}"']


@pytest.mark.slow
def test_failed_lookup_says_where_the_job_may_be(vx, vertex_emulator, frame, monkeypatch):
    from tests.emulators.vertex import ApiError

    def unavailable(*args):
        raise ApiError(503, "The service is currently unavailable.")

    monkeypatch.setattr(vertex_emulator, "_list", unavailable)
    vertex_emulator.faults.create_then = [500]
    with pytest.raises(BackendError, match=r'A job may be running: list it with filter labels\.pdbatch_run="'):
        frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, progress=False)
    assert len(vertex_emulator.jobs) == 1 and len(creates(vertex_emulator)) == 1  # not created twice


@pytest.mark.slow
def test_ambiguous_failure_then_no_job_creates_one(vx, vertex_emulator, frame):
    vertex_emulator.faults.create_errors = [500]  # refused before acting: nothing to adopt
    out = frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, progress=False)
    assert out.response.tolist() == echoed(frame) and len(vertex_emulator.jobs) == 1
    assert len(creates(vertex_emulator)) == 2


@pytest.mark.slow
def test_several_parts_each_created_once(vertex_emulator, gcs_least_privilege, gcs_bucket):
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(6)]})
    vx = make(vertex_emulator, f"gs://{gcs_bucket}/p/", max_requests_per_file=2, max_requests_per_job=2)
    vertex_emulator.faults.create_then = [500, "drop", 503]
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False)
    assert len(job.ids) == 3 and len(vertex_emulator.jobs) == 3
    parts = sorted(j.spec["labels"]["pdbatch_part"] for j in vertex_emulator.jobs.values())
    assert parts == ["1", "2", "3"]
    assert job.wait(progress=False).result().response.tolist() == [f"echo: Summarize: t{i}" for i in range(6)]


# ------------------------------------------------------------ 6. locations
def test_multi_regions_use_their_own_hosts():
    from google.auth.credentials import AnonymousCredentials

    # the real client, built as for the real service (no request is sent)
    hosts = {loc: Vertex(project="p", location=loc, credentials=AnonymousCredentials())._jobs(loc)._transport._host
             for loc in ("us", "eu", "us-central1")}
    assert hosts == {"us": "https://aiplatform.us.rep.googleapis.com",
                     "eu": "https://aiplatform.eu.rep.googleapis.com",
                     "us-central1": "https://us-central1-aiplatform.googleapis.com"}


@pytest.mark.slow
def test_dataset_and_job_regions_compared_as_written(vertex_emulator, bq_emulator, frame):
    client = bq_emulator.client()
    ds = bigquery.Dataset(f"{bq_emulator.project}.us_{os.getpid()}")
    ds.location = "US"
    client.create_dataset(ds)
    staging = f"bq://{bq_emulator.project}.{ds.dataset_id}"
    with pytest.raises(ConfigError, match="is in US, but the Vertex AI job runs in us-central1"):
        frame.llama.submit(PROMPT, model=CHAT, backend=make(vertex_emulator, staging), progress=False)
    assert creates(vertex_emulator) == [] and list(client.list_tables(ds)) == []
    # a model the catalog does not place (the service decides) runs where the US dataset is
    vertex_emulator.live_models.add("publishers/google/models/gemma-9-maas")
    out = frame.llama.batch_predict(PROMPT, model="google/gemma-9-maas",
                                    backend=make(vertex_emulator, staging, location="us"), progress=False)
    assert out.response.tolist() == echoed(frame)


# ------------------------------------------------------------ 7. states
@pytest.mark.slow
def test_paused_job_stops_the_wait(vx, vertex_emulator, frame):
    vertex_emulator.faults.pause = True
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False)
    with pytest.raises(JobPausedError, match=r"JOB_STATE_PAUSED.*result\(partial=True\)") as err:
        job.wait(timeout=120, progress=False)
    assert err.value.state == "JOB_STATE_PAUSED" and err.value.job_id == job.id
    vertex_emulator.faults.pause = False  # resumed on the service
    vertex_emulator.wait_for_state(job.id, "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED")
    assert job.wait(progress=False).result().response.tolist() == echoed(frame)


# ------------------------------------------------------------ 8. output shapes
@pytest.mark.slow
@pytest.mark.parametrize("shape", ["gemini", "model_garden"])
@pytest.mark.parametrize("where", ["gcs", "bigquery"])
def test_both_output_shapes(vertex_emulator, gcs_least_privilege, gcs_bucket, bq_emulator, bq_dataset, frame,
                            shape, where):
    vertex_emulator.output_shape = shape
    vertex_emulator.faults.row_errors = {"row-2"}
    output = f"gs://{gcs_bucket}/out/" if where == "gcs" else f"bq://{bq_dataset}"
    vx = make(vertex_emulator, f"gs://{gcs_bucket}/p/", output=output)
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False).wait(progress=False)
    out = job.result()
    assert out.error.notna().tolist() == [False, False, True, False, False]
    assert "Injected row error" in out.error.iloc[2]
    assert out.response.drop(index=2).tolist() == echoed(frame.drop(index=2))
    if where == "bigquery":
        table = job.status.output[len("bq://"):]
        names = {f.name for f in bq_emulator.client().get_table(table).schema}
        assert "id" in names and ("error" if shape == "model_garden" else "status") in names


@pytest.mark.slow
def test_passthrough_error_column_is_reserved(vertex_emulator, bq_emulator, bq_dataset, frame):
    vx = make(vertex_emulator, f"bq://{bq_dataset}")
    notes = frame.assign(error=["none", "late", "none", "none", "none"])
    with pytest.raises(ConfigError, match=r"\['error'\].*rename_reserved=True"):
        notes.llama.submit(PROMPT, model=CHAT, backend=vx, passthrough=True, overwrite=True, progress=False)
    assert creates(vertex_emulator) == []
    job = notes.llama.submit(PROMPT, model=CHAT, backend=vx, passthrough=True, overwrite=True,
                             rename_reserved=True, progress=False)
    out = job.wait(progress=False).result()
    assert out.error.isna().all() and out.response.tolist() == echoed(frame)
    rows = {r["custom_id"]: r for r in bq_emulator.client().list_rows(job.status.output[len("bq://"):])}
    assert rows["row-1"]["input_error"] == "late"


# ------------------------------------------------------------ 9. structured output
@pytest.mark.slow
def test_schema_references_are_written_out(vx, vertex_emulator, gcs_emulator, frame):
    from pydantic import BaseModel

    class Topic(BaseModel):
        name: str
        weight: int

    class Review(BaseModel):
        summary: str
        main: Topic
        others: list[Topic]

    assert "$defs" in Review.model_json_schema()
    out = frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, schema=Review, progress=False)
    assert out.error.isna().all(), out.error.tolist()
    assert out.main.iloc[0] == {"name": "echo: Summarize: review number 0", "weight": 1}
    sent = staged_lines(gcs_emulator, creates(vertex_emulator)[0])[0]["body"]["response_format"]
    text = json.dumps(sent)
    assert "$defs" not in text and "$ref" not in text
    assert sent["json_schema"]["schema"]["properties"]["main"]["properties"]["weight"]["type"] == "integer"


@pytest.mark.slow
def test_recursive_schema_is_refused(vx, vertex_emulator, frame):
    schema = {"type": "object", "properties": {"tree": {"$ref": "#/$defs/Node"}},
              "$defs": {"Node": {"type": "object", "properties": {
                  "label": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}}}
    with pytest.raises(ConfigError, match=r"recursive \(Node -> Node\)"):
        frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, schema=schema, progress=False)
    assert vertex_emulator.requests == []


# ------------------------------------------------------------ 10. small things
def test_prices_are_for_live_models_only():
    from pdbatch.pricing import ONLINE_PRICES, PRICES_AS_OF

    assert PRICES_AS_OF.startswith("2026-11-30")
    for name in ONLINE_PRICES:
        assert models.VERTEX_MODELS[name].status() != "retired", name
    for names in models.VERTEX_DEFAULTS.values():
        assert all(n in ONLINE_PRICES for n in names)


def test_docs_and_notebooks_name_no_retired_model():
    retired = [m for m, spec in models.VERTEX_MODELS.items() if spec.status() == "retired"]
    docs = sorted((ROOT / "docs").glob("*.md"))
    assert docs, "the reference pages moved out of the README live in docs/"
    for path in [ROOT / "README.md", *docs, *sorted((ROOT / "notebooks").glob("*.ipynb"))]:
        text = path.read_text()
        # The docs may name a retired model only where they explain retirement.
        named = [m for m in retired if m in text.replace(f"`{RETIRED}` (retired", "")]
        assert named == [], f"{path.name} names retired models {named}"
