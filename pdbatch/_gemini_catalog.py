"""The Gemini chat models in the Vertex catalog (:data:`pdbatch.models.VERTEX_MODELS`), with their sources.

Kept apart from :mod:`pdbatch.models` (already long), which builds its
catalog entries from :data:`GEMINI_CHAT`: plain data, so this module imports
nothing of pdbatch.

Sources (read 2026-12-06):

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

from datetime import date
from typing import NamedTuple

__all__ = ["GEMINI_BATCH_PAGE", "GEMINI_CHAT", "GEMINI_LOCATIONS", "GEMINI_VERSIONS", "GeminiModel"]

_DOCS = "https://docs.cloud.google.com/gemini-enterprise-agent-platform"
GEMINI_VERSIONS = f"{_DOCS}/models/model-versions"
GEMINI_BATCH_PAGE = f"{_DOCS}/reference/models/batch-prediction-api"
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


def _retired(model_id: str, launched: date) -> GeminiModel:
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
    _retired("gemini-2.5-pro", date(2025, 6, 17)),
    _retired("gemini-2.5-flash", date(2025, 6, 17)),
    _retired("gemini-2.5-flash-lite", date(2025, 7, 22)),
)
