"""A job folder must not redirect credentials: attach checks the Vertex endpoint it reads there."""

import http.server
import threading

import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import Vertex
from pdbatch.errors import ConfigError
from pdbatch.store import jobdir

JOB = "projects/p/locations/us-central1/batchPredictionJobs/123"


@pytest.fixture(autouse=True)
def no_emulator(monkeypatch):
    for name in ("STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST", "PDBATCH_VERTEX_API_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def saved_job(**settings) -> str:
    """A Vertex job folder as a submit would leave it, with ``settings`` changed (as an attacker could)."""
    record = jobdir.Manifest(
        id=JOB, parts=[JOB], backend="vertex", model="meta/llama-3.3-70b-instruct-maas", kind="chat", n_rows=1,
        backend_settings={"project": "p", "location": "us-central1", "staging": "gs://my-bucket/x/",
                          "api_endpoint": None, "poll_seconds": 0.01, **settings},
    )
    jobdir.save(record, pd.DataFrame({"t": ["a"]}))
    return JOB


@pytest.mark.parametrize("endpoint", [
    None,
    "us-central1-aiplatform.googleapis.com",
    "https://europe-west4-aiplatform.googleapis.com",
    "https://aiplatform.googleapis.com/",
    "aiplatform.us.rep.googleapis.com",
    "US-CENTRAL1-AIPLATFORM.googleapis.com:443",
])
def test_google_endpoints_are_taken_from_the_job_folder(endpoint):
    job = pdbatch.attach(saved_job(api_endpoint=endpoint))
    assert job.backend.api_endpoint == endpoint


@pytest.mark.parametrize("endpoint", [
    "https://attacker.invalid",
    "attacker.invalid",
    "http://us-central1-aiplatform.googleapis.com",
    "https://us-central1-aiplatform.googleapis.com.attacker.invalid",
    "https://attacker.invalid/us-central1-aiplatform.googleapis.com",
    "https://us-central1-aiplatform.googleapis.com@attacker.invalid",
    "https://attacker.invalid#-aiplatform.googleapis.com",
    "https://attacker.invalid\\@us-central1-aiplatform.googleapis.com",
    "https://us-central1-aiplatform.googleapis.com:8443",
    "https://aiplatform.googleapis.com.",
    "https://127.0.0.1:8443",
    "http://127.0.0.1:8080",  # loopback, but no emulator variable is set
    "http://10.0.0.5:8080",
    ["not", "a", "string"],
])
def test_other_endpoints_in_a_job_folder_are_refused_with_what_to_do(endpoint):
    job_id = saved_job(api_endpoint=endpoint)
    with pytest.raises(ConfigError, match="not a Google endpoint") as info:
        pdbatch.attach(job_id)
    assert "give it again: pdbatch.attach(job_id, backend=pdbatch.backends.Vertex(project='p'" in str(info.value)
    assert "PDBATCH_VERTEX_API_ENDPOINT" in str(info.value)


def test_a_location_that_would_change_the_default_host_is_refused():
    with pytest.raises(ConfigError, match="not a Vertex AI region"):
        pdbatch.attach(saved_job(location="attacker.invalid/#"))


def test_the_user_can_vouch_for_an_endpoint(monkeypatch):
    job_id = saved_job(api_endpoint="https://vertex-proxy.corp.example")
    # passed again with the backend
    vx = Vertex(project="p", api_endpoint="https://vertex-proxy.corp.example")
    assert pdbatch.attach(job_id, backend=vx).backend is vx
    # or configured for the session
    monkeypatch.setenv("PDBATCH_VERTEX_API_ENDPOINT", "https://vertex-proxy.corp.example")
    assert pdbatch.attach(job_id).backend.api_endpoint == "https://vertex-proxy.corp.example"
    monkeypatch.setenv("PDBATCH_VERTEX_API_ENDPOINT", "https://another.example")
    with pytest.raises(ConfigError, match="not a Google endpoint"):
        pdbatch.attach(job_id)


@pytest.mark.parametrize("variable", ["STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST"])
def test_a_loopback_emulator_is_accepted_while_an_emulator_variable_is_set(monkeypatch, variable):
    job_id = saved_job(api_endpoint="http://127.0.0.1:8080")
    monkeypatch.setenv(variable, "http://127.0.0.1:9023")
    assert pdbatch.attach(job_id).backend.api_endpoint == "http://127.0.0.1:8080"
    # https to loopback would carry the user's token to whatever listens there
    with pytest.raises(ConfigError, match="not a Google endpoint"):
        pdbatch.attach(saved_job(api_endpoint="https://localhost:8443"))


def test_a_refused_endpoint_is_never_contacted():
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # the http.server API
            seen.append(dict(self.headers))
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        job_id = saved_job(api_endpoint=f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(ConfigError):
            pdbatch.attach(job_id).refresh()
    finally:
        server.shutdown()
        server.server_close()
    assert seen == []
