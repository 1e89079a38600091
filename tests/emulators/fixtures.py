"""pytest fixtures for the emulators. In the main conftest:

    pytest_plugins = ["tests.emulators.fixtures"]

Servers start once per session; the public fixtures are function-scoped so
each test gets the environment variables set for it alone and restored after:

    gcs_emulator   -> GcsEmulator(url, port, project, .client())
                      with STORAGE_EMULATOR_HOST pointing at a Fence that answers
                      the bucket IAM calls fake-gcs-server lacks (fence.gcs_iam),
                      as an owner of the bucket sees them; gcs_policies (bucket ->
                      policy) sets a bucket's IAM policy
    gcs_least_privilege -> the same bucket store seen through a Fence that
                      answers 403 to bucket metadata (storage.buckets.get) and its
                      IAM policy, as for a user with Storage Object Admin / Object
                      User only;
                      STORAGE_EMULATOR_HOST points at the fence
    bq_emulator    -> BigQueryEmulator(url, port, project, kind, grpc_port, .client())
                      with BIGQUERY_EMULATOR_HOST=url during the test; url is a
                      Fence that refuses Parquet loads into JSON columns, as
                      BigQuery does
    vertex_emulator-> a fresh VertexEmulator(url, project, faults, requests, jobs, ...)
                      wired to both, step 0.1 s, stopped after the test
    gcs_bucket     -> name of a new, empty bucket on gcs_emulator
    bq_dataset     -> "project.dataset" of a new, empty dataset in us-central1 on bq_emulator
    openai_emulator-> a fresh OpenAIBatchEmulator (in-process, step 0.05 s) with
                      OPENAI_API_KEY and OPENAI_BASE_URL set to it during the test
    anthropic_emulator -> a fresh AnthropicBatchEmulator (in-process, step 0.05 s) with
                      ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL set to it during the test

If setup.sh was not run, they fail, or skip when PDBATCH_ALLOW_SKIP=1.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os

import pytest

from ._proc import EmulatorNotInstalled
from .anthropic_batch import AnthropicBatchEmulator
from .bigquery import start_bigquery
from .fence import OBJECT_ROLE_LACKS, Fence, bigquery_json_loads, deny_gcs, gcs_iam
from .gcs import start_gcs
from .openai_batch import OpenAIBatchEmulator
from .vertex import VertexEmulator

PROJECT = "test-project"
_counter = itertools.count(1)


def _missing(exc: Exception):
    if os.environ.get("PDBATCH_ALLOW_SKIP") == "1":
        pytest.skip(f"emulator not installed ({exc})")
    pytest.fail(f"emulator not installed: {exc}\n(set PDBATCH_ALLOW_SKIP=1 to skip instead)",
                pytrace=False)


@contextlib.contextmanager
def _serve(start):
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(start(project=PROJECT))
        except EmulatorNotInstalled as exc:
            _missing(exc)
        yield server


@pytest.fixture(scope="session")
def _gcs_server():
    with _serve(start_gcs) as server:
        yield server


@pytest.fixture(scope="session")
def _bq_server():
    with _serve(start_bigquery) as server:
        yield server


@pytest.fixture(scope="session")
def _bq_fence(_bq_server):
    # The emulators accept a Parquet load into a JSON column; BigQuery does not.
    with Fence(_bq_server.url, bigquery_json_loads) as fence:
        yield fence


_POLICIES: dict[str, dict] = {}


@pytest.fixture(scope="session")
def _gcs_fence(_gcs_server):
    with Fence(_gcs_server.url, deny_gcs(*OBJECT_ROLE_LACKS), gcs_iam(set(OBJECT_ROLE_LACKS), _POLICIES)) as fence:
        yield fence


@pytest.fixture(scope="session")
def _gcs_owner_fence(_gcs_server):
    with Fence(_gcs_server.url, gcs_iam(set(), _POLICIES)) as fence:
        yield fence


@pytest.fixture
def gcs_policies():
    """Bucket -> IAM policy JSON ({"bindings": [...]}) the fences answer; emptied after the test."""
    yield _POLICIES
    _POLICIES.clear()


@pytest.fixture
def gcs_emulator(_gcs_server, _gcs_owner_fence, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", _gcs_owner_fence.url)
    return _gcs_server


@pytest.fixture
def gcs_least_privilege(gcs_emulator, _gcs_fence, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", _gcs_fence.url)
    return dataclasses.replace(gcs_emulator, url=_gcs_fence.url)


@pytest.fixture
def bq_emulator(_bq_server, _bq_fence, monkeypatch):
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", _bq_fence.url)
    return dataclasses.replace(_bq_server, url=_bq_fence.url)


@pytest.fixture
def vertex_emulator(gcs_emulator, bq_emulator):
    with VertexEmulator(gcs_url=gcs_emulator.url, bq_url=bq_emulator.url,
                        project=PROJECT, step=0.1) as emu:
        yield emu


@pytest.fixture
def gcs_bucket(gcs_emulator) -> str:
    name = f"bucket-{os.getpid()}-{next(_counter)}"
    gcs_emulator.client().create_bucket(name)
    return name


@pytest.fixture
def bq_dataset(bq_emulator) -> str:
    """A dataset in us-central1, where the tests' jobs run: job and dataset must share a region."""
    from google.cloud import bigquery

    dataset_id = f"{bq_emulator.project}.ds_{os.getpid()}_{next(_counter)}"
    dataset = bigquery.Dataset(dataset_id)
    dataset.location = "us-central1"
    bq_emulator.client().create_dataset(dataset)
    return dataset_id


@pytest.fixture
def openai_emulator(monkeypatch):
    with OpenAIBatchEmulator(step=0.05) as emu:
        monkeypatch.setenv("OPENAI_API_KEY", emu.api_key)
        monkeypatch.setenv("OPENAI_BASE_URL", emu.url)
        for name in list(os.environ):
            if name.startswith("PDBATCH_OPENAI_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("PDBATCH_OPENAI_POLL_SECONDS", "0.05")  # the emulator answers in tenths of seconds
        yield emu


@pytest.fixture
def anthropic_emulator(monkeypatch):
    with AnthropicBatchEmulator(step=0.05) as emu:
        monkeypatch.setenv("ANTHROPIC_API_KEY", emu.api_key)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.url)
        for name in list(os.environ):
            if name.startswith("PDBATCH_ANTHROPIC_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("PDBATCH_ANTHROPIC_POLL_SECONDS", "0.05")  # the emulator answers in tenths of seconds
        yield emu
