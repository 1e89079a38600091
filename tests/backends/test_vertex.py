"""The Vertex AI backend, with the real Google clients against the local emulators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from google.api_core import exceptions as gexc
from google.cloud import bigquery

import pdbatch
from pdbatch.backends import _gcp
from pdbatch.backends.vertex import Vertex
from pdbatch.errors import (
    BackendError,
    ConfigError,
    JobError,
    JobNotFoundError,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "Summarize: {text}"
CHAT = "gpt-oss-120b-maas"  # the default chat model, served in us-central1
SCOUT = "llama-4-scout-17b-16e-instruct-maas"  # served in us-east5 only


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    # The real back-off starts at half a second; the emulator's errors are instant.
    monkeypatch.setattr(_gcp, "BACKOFF", 0.01)


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"text": [f"review number {i}" for i in range(6)], "stars": [5, 4, 3, 2, 1, 5]},
        index=pd.Index([f"r{i}" for i in range(6)], name="key"),
    )


def make(emu, staging: str, **kw) -> Vertex:
    kw.setdefault("location", "us-central1")
    return Vertex(project=emu.project, staging=staging, api_endpoint=emu.url, poll_seconds=0.05, **kw)


@pytest.fixture
def vx(vertex_emulator, gcs_least_privilege, gcs_bucket) -> Vertex:
    # Cloud Storage as a user with object rights only sees it: bucket metadata answers 403.
    return make(vertex_emulator, f"gs://{gcs_bucket}/pdbatch/")


def creates(emu) -> list[dict]:
    return [r.body for r in emu.requests_to("POST", "/batchPredictionJobs")]


def assert_echoed(out: pd.DataFrame, frame: pd.DataFrame) -> None:
    assert list(out.index) == list(frame.index)
    assert out.error.isna().all(), out.error.tolist()
    assert out.response.tolist() == [f"echo: Summarize: {t}" for t in frame.text]


# ------------------------------------------------------------- round trips
def test_gcs_to_gcs(vx, vertex_emulator, gcs_emulator, gcs_bucket, frame):
    out = frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, max_tokens=256, progress=False)
    assert_echoed(out, frame)
    assert out.finish_reason.eq("stop").all() and out.prompt_tokens.gt(0).all()
    [body] = creates(vertex_emulator)
    assert body["model"] == f"publishers/openai/models/{CHAT}"
    [uri] = body["inputConfig"]["gcsSource"]["uris"]
    assert uri.startswith(f"gs://{gcs_bucket}/pdbatch/") and uri.endswith(".jsonl")
    assert body["outputConfig"]["gcsDestination"]["outputUriPrefix"].startswith(
        f"gs://{gcs_bucket}/pdbatch/"
    )
    assert body["labels"]["pdbatch_requests"] == "6"
    # the staged file is what job.py wrote: one OpenAI batch line per row
    bucket, name = uri[len("gs://") :].split("/", 1)
    lines = gcs_emulator.client().bucket(bucket).blob(name).download_as_text().splitlines()
    staged = json.loads(lines[0])["body"]
    assert staged["model"] == f"openai/{CHAT}"
    # a reasoning model: low effort unless the call says otherwise, so max_tokens leaves room for the answer
    assert staged["reasoning_effort"] == "low" and staged["max_tokens"] == 256


def test_bigquery_to_bigquery_with_passthrough(vertex_emulator, bq_emulator, bq_dataset, frame):
    vx = make(vertex_emulator, f"bq://{bq_dataset}")
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, passthrough=True, progress=False)
    out = job.wait(progress=False).result()
    assert_echoed(out, frame)
    body = creates(vertex_emulator)[0]
    src = body["inputConfig"]["bigquerySource"]["inputUri"]
    dst = body["outputConfig"]["bigqueryDestination"]["outputUri"]
    assert src.startswith(f"bq://{bq_dataset}.pdbatch_") and dst.startswith(
        f"bq://{bq_dataset}.pdbatch_"
    )
    client = bq_emulator.client()
    schema = {f.name: f.field_type for f in client.get_table(src[len("bq://") :]).schema}
    # the frame's columns, not its index (reset_index() first to send it too)
    assert schema == {
        "custom_id": "STRING",
        "method": "STRING",
        "url": "STRING",
        "body": "JSON",
        "text": "STRING",
        "stars": "INTEGER",
    }
    # pass-through columns reach the output table next to the answers
    rows = {r["custom_id"]: r for r in client.list_rows(job.status.output[len("bq://") :])}
    assert rows["row-3"]["stars"] == 2 and rows["row-3"]["text"] == "review number 3"
    assert job.status.output == dst


def test_bigquery_passthrough_split_over_jobs(vertex_emulator, bq_emulator, bq_dataset, frame):
    vx = make(
        vertex_emulator, f"bq://{bq_dataset}", max_requests_per_file=2, max_requests_per_job=4
    )
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, passthrough=True, progress=False)
    assert len(job.ids) == 2
    assert_echoed(job.wait(progress=False).result(), frame)
    client = bq_emulator.client()
    stars = {}
    for body in creates(vertex_emulator):
        table = body["outputConfig"]["bigqueryDestination"]["outputUri"][len("bq://") :]
        stars.update({r["custom_id"]: r["stars"] for r in client.list_rows(table)})
    assert stars == {f"row-{i}": s for i, s in enumerate(frame.stars)}


def test_gcs_to_bigquery(vertex_emulator, gcs_bucket, bq_dataset, frame):
    vx = make(vertex_emulator, f"gs://{gcs_bucket}/in", output=f"bq://{bq_dataset}")
    out = frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, progress=False)
    assert_echoed(out, frame)
    assert creates(vertex_emulator)[0]["outputConfig"]["predictionsFormat"] == "bigquery"


def test_bigquery_to_gcs(vertex_emulator, gcs_bucket, bq_dataset, frame):
    vx = make(vertex_emulator, f"bq://{bq_dataset}", output=f"gs://{gcs_bucket}/answers/")
    out = frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, progress=False)
    assert_echoed(out, frame)
    prefix = creates(vertex_emulator)[0]["outputConfig"]["gcsDestination"]["outputUriPrefix"]
    assert prefix.startswith(f"gs://{gcs_bucket}/answers/")


def test_default_backend_from_env(vertex_emulator, gcs_bucket, monkeypatch, frame):
    monkeypatch.setenv("PDBATCH_VERTEX_PROJECT", vertex_emulator.project)
    monkeypatch.setenv("PDBATCH_VERTEX_LOCATION", "us-central1")
    monkeypatch.setenv("PDBATCH_VERTEX_STAGING", f"gs://{gcs_bucket}/env/")
    monkeypatch.setenv("PDBATCH_VERTEX_API_ENDPOINT", vertex_emulator.url)
    monkeypatch.setenv("PDBATCH_VERTEX_POLL_SECONDS", "0.05")
    out = frame.llama.batch_predict(PROMPT, model=CHAT, backend="vertex", progress=False)
    assert_echoed(out, frame)
    # configure() wins over the environment; explicit arguments win over both
    pdbatch.configure(vertex={"location": "europe-west4"})
    assert Vertex().location == "europe-west4"
    assert Vertex(location="us-east5").location == "us-east5"


# ------------------------------------------------------------------ limits
def test_chunked_into_several_files_and_jobs(vertex_emulator, gcs_bucket):
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(11)]})
    vx = make(
        vertex_emulator, f"gs://{gcs_bucket}/p", max_requests_per_file=2, max_requests_per_job=5
    )
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False)
    bodies = creates(vertex_emulator)
    assert [len(b["inputConfig"]["gcsSource"]["uris"]) for b in bodies] == [2, 2, 2]
    assert [b["labels"]["pdbatch_requests"] for b in bodies] == ["4", "4", "3"]
    assert len(job.ids) == 3 and job.id == job.ids[0]
    assert len({b["outputConfig"]["gcsDestination"]["outputUriPrefix"] for b in bodies}) == 3
    out = job.wait(progress=False).result()
    assert out.response.tolist() == [f"echo: Summarize: t{i}" for i in range(11)]
    assert job.progress["total"] == 11 and job.progress["succeeded"] == 11
    # any part's id finds the whole job
    again = pdbatch.attach(job.ids[2], backend=vx)
    assert again.ids == job.ids


def test_byte_limit_splits_files(vertex_emulator, gcs_bucket):
    frame = pd.DataFrame({"text": ["x" * 200] * 6})
    vx = make(vertex_emulator, f"gs://{gcs_bucket}/p", max_bytes_per_file=700)
    frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False).wait(progress=False)
    [body] = creates(vertex_emulator)
    assert len(body["inputConfig"]["gcsSource"]["uris"]) >= 3


# --------------------------------------------------------- jobs over time
def test_attach_from_a_new_process(
    vx, vertex_emulator, gcs_emulator, bq_emulator, frame, pdbatch_home
):
    vertex_emulator.faults.hold = True
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False)
    vertex_emulator.wait_held(job.id)
    assert job.state == "JOB_STATE_RUNNING"
    vertex_emulator.release()
    script = textwrap.dedent(f"""
        import json, pdbatch
        job = pdbatch.attach({job.id!r})
        out = job.wait(progress=False).result()
        print(json.dumps({{"state": job.status.state, "responses": out.response.tolist(),
                           "index": list(out.index), "backend": repr(job.backend)}}))
    """)
    env = {
        **os.environ,
        "PDBATCH_HOME": str(pdbatch_home),
        "STORAGE_EMULATOR_HOST": gcs_emulator.url,
        "BIGQUERY_EMULATOR_HOST": bq_emulator.url,
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["state"] == "JOB_STATE_SUCCEEDED"
    assert got["responses"] == [f"echo: Summarize: {t}" for t in frame.text]
    assert got["index"] == list(frame.index)
    assert vertex_emulator.url in got["backend"]


def test_cancel_mid_run_then_partial_result(vx, vertex_emulator, frame):
    vertex_emulator.faults.hold = True  # RUNNING after half the rows
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False)
    vertex_emulator.wait_held(job.id)
    job.cancel()
    job.wait(timeout=30, progress=False)
    assert job.status.state == "JOB_STATE_CANCELLED"
    with pytest.raises(JobError, match="CANCELLED"):
        job.result()
    out = job.result(partial=True)
    assert out.response.notna().sum() == 3
    assert out.error[out.response.isna()].str.contains("JOB_STATE_CANCELLED").all()
    assert vertex_emulator.requests_to("POST", ":cancel")
    job.cancel()  # cancelling an ended job is harmless


def test_status_fields(vx, vertex_emulator, frame):
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False).wait(progress=False)
    st = job.status
    number = job.id.rsplit("/", 1)[-1]
    assert st.console_url == (
        f"https://console.cloud.google.com/agent-platform/locations/us-central1/"
        f"batch-predictions/{number}?project={vertex_emulator.project}"
    )
    assert st.output.startswith("gs://") and st.extra["end_time"]
    assert (st.total, st.succeeded, st.failed) == (6, 6, 0)


# ------------------------------------------------------------------ faults
def test_failed_job_raises_with_its_message(vx, vertex_emulator, frame):
    vertex_emulator.faults.fail_job = "Quota exceeded for model"
    with pytest.raises(JobError, match="Quota exceeded for model") as err:
        frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, progress=False)
    assert err.value.state == "JOB_STATE_FAILED"


def test_row_errors_land_in_the_error_column(vx, vertex_emulator, frame):
    vertex_emulator.faults.row_errors = {"row-1", "row-4"}
    out = frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, progress=False)
    failed = out.error.notna()
    assert failed.tolist() == [False, True, False, False, True, False]
    assert out.error.iloc[1].startswith("Bad Request") and "Injected row error" in out.error.iloc[1]
    assert out.response[~failed].notna().all() and out.response[failed].isna().all()


def test_expired_job_gives_partial_result(vx, vertex_emulator, frame):
    vertex_emulator.faults.expire = True
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False).wait(progress=False)
    assert job.status.state == "JOB_STATE_EXPIRED" and "expired" in job.status.error
    with pytest.raises(JobError, match="EXPIRED"):
        job.result()
    out = job.result(partial=True)
    assert out.response.notna().sum() == 3 and out.error.notna().sum() == 3


def test_partially_succeeded(vx, vertex_emulator, frame):
    vertex_emulator.faults.partial = True
    vertex_emulator.faults.row_errors = {"row-0"}
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False).wait(progress=False)
    assert job.status.state == "JOB_STATE_PARTIALLY_SUCCEEDED"
    assert job.status.extra["partial_failures"]
    out = job.result()
    assert out.error.notna().tolist() == [True] + [False] * 5


@pytest.mark.parametrize("codes", [[429], [503, 503], [500, 429, 503]])
def test_transient_errors_are_retried(vx, vertex_emulator, frame, codes):
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False)
    vertex_emulator.faults.http_errors = list(codes)
    assert job.refresh().state.startswith("JOB_STATE_")
    gets = vertex_emulator.requests_to("GET", job.id.rsplit("/", 1)[-1])
    assert len(gets) == len(codes) + 1


def test_create_retries_rate_limits(vx, vertex_emulator, frame):
    vertex_emulator.faults.create_errors = [429, 503]
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False)
    assert len(creates(vertex_emulator)) == 3 and len(vertex_emulator.jobs) == 1
    assert job.wait(progress=False).result().error.isna().all()


def test_persistent_errors_are_translated(vx, vertex_emulator, frame, monkeypatch):
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False)
    vertex_emulator.faults.http_errors = [503] * _gcp.TRIES
    with pytest.raises(BackendError, match="failed after") as err:
        job.refresh()
    assert isinstance(err.value.__cause__, gexc.ServiceUnavailable)
    vertex_emulator.faults.http_errors = [403]
    with pytest.raises(BackendError, match=r"permission denied.*project 'test-project'") as err:
        job.refresh()
    assert isinstance(err.value.__cause__, (gexc.Forbidden, gexc.PermissionDenied))


def test_unreachable_endpoint(vertex_emulator):
    from tests.emulators._proc import free_port

    vx = Vertex(project="p", api_endpoint=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(BackendError, match="cannot reach the service"):
        vx.status("projects/p/locations/us-central1/batchPredictionJobs/1")


def test_unknown_job_id(vx):
    with pytest.raises(JobNotFoundError, match="no batch prediction job"):
        vx.status("projects/test-project/locations/us-central1/batchPredictionJobs/123")
    with pytest.raises(JobNotFoundError, match="not a Vertex AI job id"):
        vx.status("local-20260101-000000-abcdef")


# -------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("column", ["id", "response"])
def test_passthrough_refuses_reserved_columns(vertex_emulator, bq_dataset, frame, column):
    vx = make(vertex_emulator, f"bq://{bq_dataset}")
    bad = frame.assign(**{column: 1})
    with pytest.raises(ConfigError, match=rf"\['{column}'\].*rename_reserved=True"):
        # overwrite=True: a `response` column is also one the result would replace
        bad.llama.submit(
            PROMPT, model=CHAT, backend=vx, passthrough=True, overwrite=True, progress=False
        )
    assert vertex_emulator.requests == []


def test_passthrough_renames_reserved_columns(vertex_emulator, bq_emulator, bq_dataset, frame):
    vx = make(vertex_emulator, f"bq://{bq_dataset}")
    df = frame.assign(id=range(6))
    job = df.llama.submit(
        PROMPT, model=CHAT, backend=vx, passthrough=True, rename_reserved=True, progress=False
    )
    out = job.wait(progress=False).result()
    assert "id" in out.columns and out.error.isna().all()
    src = creates(vertex_emulator)[0]["inputConfig"]["bigquerySource"]["inputUri"][len("bq://") :]
    assert "input_id" in {f.name for f in bq_emulator.client().get_table(src).schema}


def test_passthrough_needs_bigquery_staging(vx, frame):
    with pytest.raises(ConfigError, match="passthrough=True needs BigQuery"):
        frame.llama.submit(PROMPT, model=CHAT, backend=vx, passthrough=True, progress=False)


def test_unknown_model_suggests_close_names(vx, vertex_emulator, frame):
    with pytest.raises(
        ConfigError, match=r"Did you mean 'llama-4-scout-17b-16e-instruct-maas'.*publishers/"
    ):
        frame.llama.batch_predict(PROMPT, model="llama-4-scout-17b", backend=vx, progress=False)
    assert vertex_emulator.requests == []
    # the escape hatch reaches any publisher model (the live service is asked about it at submit)
    assert vx.model_name("publishers/google/models/some-new-maas", "chat") == "google/some-new-maas"
    assert vx.model_name("google/some-new-maas", "chat") == "google/some-new-maas"


def test_region_mismatch_is_refused_before_submitting(vertex_emulator, bq_emulator, frame):
    client = bq_emulator.client()
    ds = bigquery.Dataset(f"{bq_emulator.project}.eu_{os.getpid()}")
    ds.location = "EU"
    client.create_dataset(ds)
    vx = make(vertex_emulator, f"bq://{bq_emulator.project}.{ds.dataset_id}")
    with pytest.raises(ConfigError, match="is in EU, but the Vertex AI job runs in us-central1"):
        frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False)
    assert creates(vertex_emulator) == [] and list(client.list_tables(ds)) == []


def test_missing_staging_is_refused_at_submit(monkeypatch, vertex_emulator, frame):
    # (a missing project and location="global": tests/backends/test_vertex_settings.py, no emulator needed)
    monkeypatch.delenv("PDBATCH_VERTEX_STAGING", raising=False)
    vx = Vertex(project="p", api_endpoint=vertex_emulator.url)
    with pytest.raises(ConfigError, match="needs staging="):
        frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False)


def test_missing_bucket_says_what_to_check(vertex_emulator, gcs_emulator, frame):
    vx = make(vertex_emulator, "gs://no-such-bucket-here/p/")
    with pytest.raises(BackendError, match="no-such-bucket-here"):
        frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False)


def test_no_credentials_in_manifest(vertex_emulator, gcs_bucket, frame, pdbatch_home):
    from google.oauth2.credentials import Credentials

    secret = "ya29.THIS-IS-A-SECRET-TOKEN"
    creds = Credentials(token=secret)
    vx = make(vertex_emulator, f"gs://{gcs_bucket}/p", credentials=creds)
    job = frame.llama.submit(PROMPT, model=CHAT, backend=vx, progress=False)
    # the credentials were used (the emulator saw the token) ...
    assert any(secret in str(r.headers) for r in vertex_emulator.requests)
    # ... but never saved or shown
    manifests = list(pdbatch_home.rglob("manifest.json"))
    assert manifests and all(secret not in m.read_text() for m in manifests)
    assert "credentials" not in json.loads(manifests[0].read_text())["backend_settings"]
    assert secret not in repr(vx) and secret not in repr(job)


# ---------------------------------------------------------------- notebook
def test_notebook_runs_against_the_emulators(
    vertex_emulator, gcs_least_privilege, bq_emulator, gcs_bucket, pdbatch_home, tmp_path
):
    import nbformat
    from nbclient import NotebookClient

    path = ROOT / "notebooks" / "vertex.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["pdbatch"]["requires"] == "emulators"
    assert all(
        not c.get("outputs") and c.get("execution_count") is None
        for c in nb.cells
        if c.cell_type == "code"
    )
    # The notebook's Vertex() picks these up, as it would a user's own project settings.
    env = {
        **os.environ,
        "PDBATCH_HOME": str(pdbatch_home),
        "PDBATCH_VERTEX_PROJECT": vertex_emulator.project,
        "PDBATCH_VERTEX_LOCATION": "us-central1",
        "PDBATCH_VERTEX_STAGING": f"gs://{gcs_bucket}/nb/",
        "PDBATCH_VERTEX_API_ENDPOINT": vertex_emulator.url,
        "PDBATCH_VERTEX_POLL_SECONDS": "0.1",
        "STORAGE_EMULATOR_HOST": gcs_least_privilege.url,
        "BIGQUERY_EMULATOR_HOST": bq_emulator.url,
        "PYTHONPATH": str(ROOT),
    }
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=env)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = "".join(
        str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs
    )
    assert "echo: Classify the sentiment" in shown and "JOB_STATE_SUCCEEDED" in shown
    # it starts with the check: every line passed, one online request, remembered for the jobs after it
    assert "\u2714 model gpt-oss-120b-maas: enabled for 'test-project' and served in 'us-central1'" in shown
    assert "\u2718" not in shown
    assert len(vertex_emulator.requests_to("POST", "/endpoints/openapi/chat/completions")) == 1
    assert "gemini-embedding-001" in shown and "llama-3.3" not in shown  # the live models table
    assert len(vertex_emulator.jobs) == 3  # batch_predict, submit, embed
    models = sorted(j.spec["model"] for j in vertex_emulator.jobs.values())
    assert models == ["publishers/google/models/gemini-embedding-001",
                      *["publishers/openai/models/gpt-oss-120b-maas"] * 2]


# --------------------------------------------------------- issue 6 on Vertex


def test_retry_failed_rows_on_vertex(vx, vertex_emulator, frame):
    vertex_emulator.faults.row_errors = {"row-1", "row-4"}
    out = frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, temperature=0, progress=False)
    assert out.error.notna().sum() == 2
    vertex_emulator.faults.row_errors = set()
    fixed = out.llama.retry_failed(progress=False)
    assert fixed.error.isna().all() and fixed.response.notna().all()
    assert fixed.response.iloc[0] == out.response.iloc[0], "rows that succeeded are kept"
    assert len(creates(vertex_emulator)) == 2, "one more job, for the failed rows"
    assert fixed.attrs["pdbatch_retried_from"] == out.attrs["pdbatch_job"]


def test_cache_means_a_rerun_creates_no_job(vx, vertex_emulator, frame):
    first = frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, temperature=0, progress=False)
    n_jobs = len(creates(vertex_emulator))
    again = frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, temperature=0, progress=False)
    assert len(creates(vertex_emulator)) == n_jobs
    assert again.response.tolist() == first.response.tolist()
    assert "pdbatch_job" not in again.attrs and again.attrs["pdbatch_rows"]["sent"] == 0  # no job, no folder


def test_preview_prices_a_vertex_job_without_submitting(vx, vertex_emulator, frame):
    pv = frame.llama.preview(PROMPT, model=CHAT, backend=vx, max_tokens=100, temperature=0)
    assert creates(vertex_emulator) == []
    assert pv.token_counts.startswith("estimate") and pv.estimated_cost > 0
    from pdbatch.pricing import batch_price

    inp, outp = batch_price(CHAT)
    assert pv.estimated_cost == pytest.approx((int(pv.prompt_tokens.sum()) * inp + 6 * 100 * outp) / 1e6)
    with pytest.raises(ConfigError, match="over max_cost"):
        frame.llama.batch_predict(PROMPT, model=CHAT, backend=vx, max_tokens=100, max_cost=1e-9, progress=False)
    assert creates(vertex_emulator) == []


def test_side_by_side_two_vertex_models_each_in_its_own_region(vertex_emulator, gcs_least_privilege, gcs_bucket,
                                                               frame):
    vx = make(vertex_emulator, f"gs://{gcs_bucket}/pdbatch/", location=None)
    out = frame.llama.batch_predict(PROMPT, model=[SCOUT, CHAT], backend=vx, temperature=0, progress=False)
    assert out[f"response:meta/{SCOUT}"].notna().all() and out[f"response:openai/{CHAT}"].notna().all()
    where = {j.spec["model"]: j.location for j in vertex_emulator.jobs.values()}
    assert where == {f"publishers/meta/models/{SCOUT}": "us-east5", f"publishers/openai/models/{CHAT}": "us-central1"}
