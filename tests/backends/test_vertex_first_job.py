"""A real project's first Vertex job (issue 20): every model in its regions, the preflight, the set-up errors.

The emulators serve each model only in the locations Google's model cards give,
refuse models without batch support and models the project has not enabled, as
the service does (tests/emulators/vertex.py); `pdbatch check` and
`Vertex.check` ask them as they would ask a user's project.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pdbatch.backends import _preflight
from pdbatch.backends.vertex import Vertex
from pdbatch.cli import commands as cli
from pdbatch.errors import ConfigError
from tests.backends.test_vertex import creates, make
from tests.backends.test_vertex import quick_retries as _quick_retries

pytestmark = pytest.mark.slow
quick_retries = _quick_retries
PROMPT = "Summarize: {text}"
GPT = "publishers/openai/models/gpt-oss-120b-maas"
SCOUT = "llama-4-scout-17b-16e-instruct-maas"
ONLINE = "/endpoints/openapi/chat/completions"


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"text": [f"review number {i}" for i in range(4)]})


@pytest.fixture
def staging(gcs_least_privilege, gcs_bucket) -> str:
    return f"gs://{gcs_bucket}/pdbatch/"


def objects(gcs_emulator, bucket: str) -> list[str]:
    return [b.name for b in gcs_emulator.client().list_blobs(bucket)]


def online(emu) -> list:
    return emu.requests_to("POST", ONLINE)


# ------------------------------------------------------------ regions and defaults
def test_the_quick_start_default_runs_where_its_model_is_served(vertex_emulator, staging, frame):
    # README: Vertex(project=..., staging=...) and batch_predict with the default model, max_tokens=256
    vx = Vertex(project=vertex_emulator.project, staging=staging, api_endpoint=vertex_emulator.url,
                poll_seconds=0.05)
    out = frame.llama.batch_predict(PROMPT, backend=vx, max_tokens=256, progress=False)
    assert out.error.isna().all() and out.response.tolist() == [f"echo: Summarize: {t}" for t in frame.text]
    [job] = vertex_emulator.jobs.values()
    assert (job.spec["model"], job.location) == (GPT, "us-central1")
    # the job's own checks passed first: one online request of max_tokens=1
    [ping] = online(vertex_emulator)
    assert ping.path == "/v1/projects/test-project/locations/us-central1/endpoints/openapi/chat/completions"
    assert ping.body["model"] == "openai/gpt-oss-120b-maas" and ping.body["max_tokens"] == 1


@pytest.mark.parametrize(("model", "location", "message"), [
    (SCOUT, "us-central1", r"runs batch jobs only in us-east5.*Vertex\(location='us-east5'\)"),
    ("gemma-4-26b-a4b-it-maas", None, "runs online only.*Models that run batch jobs: gpt-oss-120b-maas"),
    ("gemma-4-26b-a4b-it-maas", "us-central1", "runs online only"),
    ("zai-org/glm-5.2-maas", "global", "runs online only"),
])
def test_refused_before_anything_is_uploaded(vertex_emulator, gcs_emulator, gcs_bucket, staging, frame, model,
                                             location, message):
    vx = make(vertex_emulator, staging, location=location)
    with pytest.raises(ConfigError, match=message):
        frame.llama.batch_predict(PROMPT, model=model, backend=vx, progress=False)
    assert vertex_emulator.requests == [] and objects(gcs_emulator, gcs_bucket) == []


def test_the_emulator_refuses_a_model_outside_its_regions_and_without_batch(vertex_emulator, staging, frame):
    # what the service answers when the catalog is not asked (a model the catalog does not place)
    vx = make(vertex_emulator, staging, location="us-central1", preflight=False)
    vertex_emulator.live_models.add("publishers/acme/models/new-maas")
    vertex_emulator.no_batch.add("publishers/acme/models/new-maas")
    with pytest.raises(ConfigError, match=r"^acme/new-maas does not run batch jobs \(Vertex AI: Do not support "
                                          r"publisher model new-maas\); it runs online only\. Models that run"):
        frame.llama.batch_predict(PROMPT, model="acme/new-maas", backend=vx, progress=False)
    assert vertex_emulator.jobs == {}


def test_gemini_embedding_2_runs_in_global_and_token_counts_arrive(vertex_emulator, gcs_emulator, staging, frame,
                                                                     tmp_path):
    vx = make(vertex_emulator, staging, location="global")
    out = frame.llama.embed("{text}", backend=vx, progress=False)
    assert out.error.isna().all()
    [job] = vertex_emulator.jobs.values()
    assert (job.spec["model"], job.location) == ("publishers/google/models/gemini-embedding-2", "global")
    # the job writes response.tokenCount as a string; pdbatch reads it as the row's prompt tokens
    [uri] = job.output_files
    bucket, name = uri[len("gs://"):].split("/", 1)
    raw = json.loads(gcs_emulator.client().bucket(bucket).blob(name).download_as_text().splitlines()[0])
    assert raw["response"]["tokenCount"] == "3" and "usageMetadata" not in raw["response"]
    [path] = vx.fetch_output(job.name, tmp_path)
    usage = [json.loads(line)["response"]["usage"] for line in path.read_text().splitlines()]
    assert usage == [{"prompt_tokens": 3, "total_tokens": 3}] * 4  # "review number N": 3 words


def test_a_dataset_where_the_model_cannot_run_says_to_change_the_dataset(vertex_emulator, bq_emulator, bq_dataset,
                                                                         frame):
    vx = make(vertex_emulator, f"bq://{bq_dataset}", location=None)  # Scout runs in us-east5, dataset in us-central1
    with pytest.raises(ConfigError, match=r"is in us-central1, but the Vertex AI job runs in us-east5.*Change the "
                                          r"dataset: use one in us-east5"):
        frame.llama.submit(PROMPT, model=SCOUT, backend=vx, progress=False)
    assert creates(vertex_emulator) == []


# ------------------------------------------------------------ the service's two set-up errors
def test_a_model_not_enabled_fails_with_one_line_saying_to_enable_it(vertex_emulator, gcs_emulator, gcs_bucket,
                                                                    staging, frame):
    vertex_emulator.not_enabled.add(GPT)
    vx = make(vertex_emulator, staging, preflight=False)  # job creation answers 400 FAILED_PRECONDITION
    with pytest.raises(ConfigError) as err:
        frame.llama.batch_predict(PROMPT, backend=vx, progress=False)
    text = str(err.value)
    assert "\n" not in text and text.startswith("project 'test-project' has not enabled openai/gpt-oss-120b-maas")
    assert ("https://console.cloud.google.com/vertex-ai/publishers/openai/model-garden/gpt-oss-120b-maas"
            "?project=test-project") in text and "click Enable" in text
    assert vertex_emulator.jobs == {}
    # with the preflight (the default), the same is found before anything is uploaded
    vertex_emulator.requests.clear()
    before = objects(gcs_emulator, gcs_bucket)
    with pytest.raises(ConfigError, match=r"\u2718 model gpt-oss-120b-maas: project 'test-project' has not enabled"):
        frame.llama.batch_predict(PROMPT, backend=make(vertex_emulator, staging), progress=False)
    assert creates(vertex_emulator) == [] and objects(gcs_emulator, gcs_bucket) == before


# ------------------------------------------------------------ the preflight
def test_pdbatch_check_finds_a_model_not_enabled_without_creating_a_job(vertex_emulator, staging, monkeypatch,
                                                                        capsys):
    for name, value in {"PDBATCH_VERTEX_PROJECT": vertex_emulator.project, "PDBATCH_VERTEX_STAGING": staging,
                        "PDBATCH_VERTEX_API_ENDPOINT": vertex_emulator.url}.items():
        monkeypatch.setenv(name, value)
    vertex_emulator.not_enabled.add(f"publishers/meta/models/{SCOUT}")
    assert cli.main(["check", "--backend", "vertex", "--model", SCOUT]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("\u2714 project: credentials resolve and project 'test-project' answers in 'us-east5'")
    assert lines[1].startswith("\u2718 model llama-4-scout-17b-16e-instruct-maas: project 'test-project' has not "
                               "enabled meta/llama-4-scout-17b-16e-instruct-maas: open https://console.cloud.google"
                               ".com/vertex-ai/publishers/meta/model-garden/")
    assert "accept its licence" in lines[1]
    assert any(line.startswith(f"\u2714 staging {staging.rstrip('/').rsplit('/', 1)[0]}") for line in lines)
    assert creates(vertex_emulator) == [] and len(online(vertex_emulator)) == 1
    # enabled: every check passes, exit 0; the service agent's access cannot be read with object rights only
    vertex_emulator.not_enabled.clear()
    assert cli.main(["check", "--backend", "vertex", "--model", SCOUT]) == 0
    out = capsys.readouterr().out
    assert "\u2718" not in out and "\u2714 model llama-4-scout-17b-16e-instruct-maas: enabled" in out
    assert "? service agent: cannot read the IAM policy" in out and _preflight.AGENT in out
    assert creates(vertex_emulator) == []


def test_submit_checks_once_and_remembers_it_under_pdbatch_home(vertex_emulator, staging, frame, pdbatch_home):
    vx = make(vertex_emulator, staging)
    for _ in range(2):
        frame.llama.batch_predict(PROMPT, backend=vx, progress=False, cache=False)
    assert len(online(vertex_emulator)) == 1  # the paid request: once per model and project
    lists = [r for r in vertex_emulator.requests_to("GET", "/batchPredictionJobs") if "filter" not in r.query]
    assert len(lists) == 1  # the free checks: once too
    remembered = json.loads((pdbatch_home / "preflight.json").read_text())
    assert set(remembered[f"test-project|us-central1|{GPT}"]) == {"free", "paid"}
    # another model is checked on its own; preflight=False asks nothing
    frame.llama.batch_predict(PROMPT, model=SCOUT, backend=make(vertex_emulator, staging, location=None),
                              progress=False)
    assert [r.path.split("/")[5] for r in online(vertex_emulator)] == ["us-central1", "us-east5"]
    (pdbatch_home / "preflight.json").unlink()
    frame.llama.batch_predict(PROMPT, backend=make(vertex_emulator, staging, preflight=False), progress=False,
                              cache=False)
    assert len(online(vertex_emulator)) == 2 and not (pdbatch_home / "preflight.json").exists()


def test_the_service_agent_of_a_bucket_in_another_project(vertex_emulator, gcs_emulator, gcs_bucket, gcs_policies):
    vx = make(vertex_emulator, f"gs://{gcs_bucket}/p/")  # the caller may read the policy (a bucket owner)
    assert "\u2714 service agent: gs://" in str(vx.check())  # the bucket's own project: the agent has access
    elsewhere = [{"role": "roles/storage.legacyBucketOwner", "members": ["projectOwner:other-project"]}]
    gcs_policies[gcs_bucket] = {"bindings": elsewhere}
    report = vx.check()
    assert not report.ok and str(report.lines[-1]).startswith(
        f"\u2718 service agent: gs://{gcs_bucket} is in another project")
    assert "Fix: grant service-PROJECT_NUMBER@gcp-sa-aiplatform.iam.gserviceaccount.com" in str(report.lines[-1])
    agent = "serviceAccount:service-123@gcp-sa-aiplatform.iam.gserviceaccount.com"
    gcs_policies[gcs_bucket] = {"bindings": [*elsewhere, {"role": "roles/storage.objectUser", "members": [agent]}]}
    assert vx.check().ok


def test_a_dataset_in_another_project_needs_the_agent(vertex_emulator, bq_dataset):
    vx = make(vertex_emulator, f"bq://{bq_dataset}")
    assert vx.check().ok
    # the same dataset seen from another project's jobs: nothing grants that project's agent
    foreign = Vertex(project="another-project", location="us-central1", staging=f"bq://{bq_dataset}",
                     api_endpoint=vertex_emulator.url)
    lines = [str(line) for line in foreign.check().lines]
    assert any(line.startswith("\u2718 service agent:") and "roles/bigquery.dataEditor" in line for line in lines)
