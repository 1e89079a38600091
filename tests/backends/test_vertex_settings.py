"""What Vertex refuses before it talks to Google: missing settings, bad URIs, a missing package (no emulator)."""

from __future__ import annotations

import sys

import pytest

import pdbatch
from pdbatch.backends.uris import BqUri, parse_uri
from pdbatch.backends.vertex import Vertex
from pdbatch.builders.sqlbuild import TableRef
from pdbatch.errors import ConfigError, MissingDependencyError


def test_missing_project(monkeypatch):
    for name in ("PDBATCH_VERTEX_PROJECT", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="needs a Google Cloud project"):
        Vertex(location="us-central1")


def test_global_location_runs_batch_jobs_only_for_models_that_list_it():
    vx = Vertex(project="p", location="global")  # gemini-embedding-2 runs batch jobs there
    assert vx.model_name(None, "embeddings") == "google/gemini-embedding-2"
    assert vx._endpoint("global") == "aiplatform.googleapis.com"
    with pytest.raises(ConfigError, match=r"only in us-central1.*location is 'global'"):
        vx.model_name("gpt-oss-120b-maas", "chat")


def test_no_location_means_each_model_its_own_and_preflight_is_a_setting(monkeypatch):
    vx = Vertex(project="p")
    assert vx.location is None and vx.settings()["location"] is None and vx.preflight is True
    monkeypatch.setenv("PDBATCH_VERTEX_PREFLIGHT", "0")
    assert Vertex(project="p").preflight is False and Vertex(project="p", preflight=True).preflight is True
    monkeypatch.setenv("PDBATCH_VERTEX_PREFLIGHT", "maybe")
    with pytest.raises(ConfigError, match=r"preflight='maybe'.*PDBATCH_VERTEX_PREFLIGHT=1 or 0"):
        Vertex(project="p")


@pytest.mark.parametrize(
    "uri",
    ["s3://bucket/x", "gs://", "bucket/prefix", "bq://onlyproject", "bq://p.d.t.x", "bq://p.d.t"],
)
def test_bad_staging_uri(uri):
    with pytest.raises(ConfigError, match="staging="):
        Vertex(project="p", staging=uri)


@pytest.mark.parametrize("uri", ["s3://bucket/x", "bq://onlyproject"])
def test_bad_output_uri(uri):
    with pytest.raises(ConfigError, match="output="):
        Vertex(project="p", staging="gs://my-bucket/p/", output=uri)


def test_one_bq_grammar_for_the_vertex_settings_and_the_table_jobs():
    # a domain-scoped project id (example.com:proj) is a real one: the settings read it as the table jobs do
    vx = Vertex(project="p", staging="bq://example.com:proj.ds", output="bq://example.com:proj.ds.answers")
    assert parse_uri(vx.staging, "staging") == BqUri("example.com:proj", "ds")
    assert parse_uri(vx.output, "output") == BqUri("example.com:proj", "ds", "answers")
    assert TableRef.parse(vx.output) == TableRef("example.com:proj", "ds", "answers")
    # a dataset id is letters, digits and underscores: both refuse a dash before anything is sent
    with pytest.raises(ConfigError, match="staging="):
        Vertex(project="p", staging="bq://p.my-ds")
    with pytest.raises(ConfigError, match=r"bq://project\.dataset\.table"):
        TableRef.parse("bq://p.my-ds.t")


@pytest.mark.parametrize("key", ["max_requests_per_file", "max_bytes_per_file", "max_requests_per_job"])
def test_limits_must_be_positive(key):
    with pytest.raises(ConfigError, match=f"{key}=0"):
        Vertex(project="p", **{key: 0})


def test_bad_transport():
    with pytest.raises(ConfigError, match="api_transport='http'"):
        Vertex(project="p", api_transport="http")


def test_missing_google_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.cloud.aiplatform_v1", None)
    with pytest.raises(MissingDependencyError, match=r"pdbatch\[vertex\]"):
        Vertex(project="p")


def test_settings_come_from_configure_then_the_environment(monkeypatch):
    monkeypatch.setenv("PDBATCH_VERTEX_LOCATION", "europe-west4")
    monkeypatch.setenv("PDBATCH_VERTEX_MAX_REQUESTS_PER_JOB", "50")
    assert Vertex(project="p").location == "europe-west4"
    pdbatch.configure(vertex={"location": "us-east5"})
    vx = Vertex(project="p", max_requests_per_file=100)
    assert vx.location == "us-east5"
    # environment variables are text; one file never holds more than a job takes
    assert vx.max_requests_per_job == 50 and vx.max_requests_per_file == 50
    assert Vertex(project="p", location="asia-northeast1").location == "asia-northeast1"


@pytest.mark.parametrize(("endpoint", "emulated"), [("http://127.0.0.1:9", False), ("http://10.1.2.3:80", True)])
def test_the_online_check_goes_over_plain_http_only_to_a_loopback_emulator(monkeypatch, endpoint, emulated):
    from pdbatch.backends import _preflight
    from pdbatch.models import resolve_vertex

    for name in ("STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    if emulated:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")
    vx = Vertex(project="p", api_endpoint=endpoint)
    line, cost = _preflight._online(vx, resolve_vertex(None, "chat"), "us-central1")
    assert (line.ok, cost) == (False, 0.0) and "is plain HTTP" in line.text  # nothing was sent
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")
    line, _ = _preflight._online(Vertex(project="p", api_endpoint="http://127.0.0.1:9"),
                                 resolve_vertex(None, "chat"), "us-central1")
    assert line.ok is False and line.text.startswith("cannot reach http://127.0.0.1:9")  # sent: nobody there
