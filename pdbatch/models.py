"""Model names: the local GGUF aliases and the Vertex AI publisher-model catalog.

Users write short names; backends need precise ones. This module turns one into
the other and says, for each model, whether it answers chat completions or
embeddings, so ``df.llama.embed`` can pick ``/v1/embeddings`` by itself, and,
for Vertex models, where each stands in Google's lifecycle (live, deprecated,
retired): :func:`list_models` shows them all. The catalogs themselves, with
their sources, are data in :mod:`pdbatch._catalog`; the names are re-exported here.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._catalog import (
    BATCH_PAGE,
    CATALOG_AS_OF,
    DEPRECATIONS,
    DOCS,
    EMBEDDINGS_PAGE,
    FALLBACK_LOCATION,
    GEMINI_CHAT,
    GEMINI_LOCATIONS,
    LOCAL_ALIASES,
    LOCAL_DEFAULTS,
    LOCAL_MODELS,
    OPEN_MODELS,
    PREVIEW_GUARANTEE,
    VERTEX_DEFAULTS,
    LocalModel,
)
from .errors import ConfigError
from .lines.kinds import CHAT, EMBEDDINGS, URLS, Kind, kind_of_url

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BATCH_PAGE",
    "CATALOG_AS_OF",
    "CHAT",
    "DEPRECATIONS",
    "DOCS",
    "EMBEDDINGS",
    "EMBEDDINGS_PAGE",
    "FALLBACK_LOCATION",
    "LOCAL_ALIASES",
    "LOCAL_DEFAULTS",
    "LOCAL_MODELS",
    "PREVIEW_GUARANTEE",
    "URLS",
    "VERTEX_DEFAULTS",
    "VERTEX_MODELS",
    "DeprecatedModelWarning",
    "Kind",
    "LocalModel",
    "PreviewModelWarning",
    "VertexModel",
    "kind_of_url",
    "list_models",
    "parse_vertex",
    "resolve_local",
    "resolve_vertex",
]

# The kinds are declared in pdbatch.lines.kinds (URLS and kind_of_url are derived there); re-exported here.


# --------------------------------------------------------------------------- local
def resolve_local(name: str | None, kind: Kind) -> LocalModel:
    """Resolve a local model name, alias or GGUF path.

    Parameters
    ----------
    name : str or None
        ``None`` for the default model of ``kind``, a name from
        :data:`LOCAL_MODELS` or an alias, or a path to a ``.gguf`` file.
    kind : {"chat", "embeddings"}
        What the caller wants the model for.

    Returns
    -------
    LocalModel
    """
    if name is None:
        name = LOCAL_DEFAULTS[kind]
    name = LOCAL_ALIASES.get(name, name)
    if name in LOCAL_MODELS:
        model = LOCAL_MODELS[name]
        if model.kind != kind:
            raise ConfigError(
                f"model={name!r} is a {model.kind} model, but this call needs a {kind} model; "
                f"the local default for {kind} is {LOCAL_DEFAULTS[kind]!r}"
            )
        return model
    if name.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"model={name!r}: no GGUF file at {path}")
        return LocalModel(path.stem, kind, "llama.cpp", path=str(path.resolve()))
    raise ConfigError(_unknown(name, [*LOCAL_MODELS, *LOCAL_ALIASES], "local", "or a path to a .gguf file"))


def _unknown(name: str, known: list[str], where: str, escape: str) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"Unknown {where} model {name!r}.{hint} Known: {', '.join(sorted(known))}; {escape}."


# --------------------------------------------------------------------------- vertex
#: How a model's batch lines are written: OpenAI batch lines, Gemini embedding
#: lines ({"key", "request": {"content": ...}}) or Gemini chat lines ({"key",
#: "request": {"contents": ...}}), which the Vertex backend converts to and from
#: at its boundary.
Wire = Literal["openai", "gemini-embedding", "gemini-chat"]
Status = Literal["live", "deprecated", "retired", "unlisted", "online", "unknown"]


class DeprecatedModelWarning(UserWarning):
    """The model still runs but Google has announced the day it will be retired."""


class PreviewModelWarning(UserWarning):
    """The model is in Preview: Google guarantees it for 45 days from its launch only."""


@dataclass(frozen=True)
class VertexModel:
    """A Vertex AI publisher model (Model-as-a-Service) and where it stands in its lifecycle.

    Attributes
    ----------
    stage : str
        Launch stage as Model Garden names it (``"GA"``, ``"PREVIEW"``).
    deprecated, retired : datetime.date or None
        Announced dates (DEPRECATIONS page); a retired model fails at job creation.
    batch_listed : bool
        On the current batch prediction pages; when not, only the live service can say.
    wire : {"openai", "gemini-embedding", "gemini-chat"}
        The line format its batch jobs read and write.
    locations : tuple of str
        The locations that serve its batch jobs, the default first (empty: not
        documented; the job runs in :data:`FALLBACK_LOCATION` unless told otherwise).
    catalogued : bool
        False for a ``publishers/<p>/models/<id>`` the catalog does not know.
    batch : bool
        False for a model that runs online only ("Batch inference: Not supported"):
        refused before anything is uploaded.
    online : tuple of str
        Where it answers online requests beyond ``locations`` (``global``: never batch).
    launched : datetime.date or None
        Launch day of a Preview model: guaranteed until :attr:`available_until` only.
    reasoning : bool
        A reasoning model (it spends ``max_tokens`` on reasoning before it answers).
    """

    publisher: str
    model_id: str
    kind: Kind = CHAT
    stage: str = "GA"
    deprecated: date | None = None
    retired: date | None = None
    batch_listed: bool = True
    wire: Wire = "openai"
    locations: tuple[str, ...] = ()
    catalogued: bool = True
    batch: bool = True
    online: tuple[str, ...] = ()
    launched: date | None = None
    reasoning: bool = False

    @property
    def region(self) -> str:
        """Where its batch jobs run when no location is given: the first that serves it."""
        return self.locations[0] if self.locations else FALLBACK_LOCATION

    @property
    def available_until(self) -> date | None:
        """The last day a Preview model is guaranteed (DEPRECATIONS: 45 days from launch)."""
        return self.launched + PREVIEW_GUARANTEE if self.launched and self.stage == "PREVIEW" else None

    @property
    def resource(self) -> str:
        """The path the job resource takes: ``publishers/<publisher>/models/<id>``."""
        return f"publishers/{self.publisher}/models/{self.model_id}"

    @property
    def body_name(self) -> str:
        """The name request bodies carry: ``<publisher>/<id>``."""
        return f"{self.publisher}/{self.model_id}"

    def status(self, on: date | None = None) -> Status:
        """``"retired"``, ``"deprecated"``, ``"live"``, ``"unlisted"`` (not on the batch page),
        ``"online"`` (runs online only, no batch jobs) or ``"unknown"``."""
        on = on or today()
        if self.retired and on >= self.retired:
            return "retired"
        if self.deprecated and on >= self.deprecated:
            return "deprecated"
        if not self.catalogued:
            return "unknown"
        if not self.batch:
            return "online"
        return "live" if self.batch_listed else "unlisted"


def today() -> date:
    """The date lifecycle statuses are judged on (a function, so tests can move it)."""
    return date.today()



#: The catalog: the open models, then Google's own Gemini chat models (stable releases), from ._catalog.
VERTEX_MODELS: dict[str, VertexModel] = {e["model_id"]: VertexModel(**e) for e in OPEN_MODELS}
VERTEX_MODELS.update(
    (g.model_id, VertexModel("google", g.model_id, CHAT, wire="gemini-chat", locations=GEMINI_LOCATIONS,
                             launched=g.launched, deprecated=g.deprecated, retired=g.retired))
    for g in GEMINI_CHAT
)


def vertex_default(kind: Kind, location: str | None = None) -> str:
    """The default Vertex model of ``kind`` for batch jobs in ``location``."""
    names = VERTEX_DEFAULTS[kind]
    for name in names:
        if location is None or location in VERTEX_MODELS[name].locations:
            return name
    return names[0]


def live_models(kind: Kind, location: str | None = None) -> list[str]:
    """Catalogued models of ``kind`` listed live for batch today (and served in ``location``), the default first."""
    names = [m.model_id for m in VERTEX_MODELS.values() if m.kind == kind and m.status() == "live"
             and (location is None or location in m.locations)]
    first = vertex_default(kind, location)
    return sorted(names, key=lambda n: n != first)


def retired_message(model: VertexModel, location: str | None = None) -> str:
    """Why a retired model is refused, and what to use instead (every live model: each runs in its own region)."""
    alternatives = ", ".join(live_models(model.kind))
    return (
        f"Vertex AI retired {model.body_name} on {model.retired} (deprecated {model.deprecated}; see "
        f"{DEPRECATIONS}): batch jobs for it fail. Live {model.kind} models that can replace it: "
        f"{alternatives}. Nothing was submitted."
    )


def unavailable_message(model: VertexModel, location: str, detail: str) -> str:
    """Why the live service refused a model (Model Garden or job creation answered 404)."""
    alternatives = ", ".join(live_models(model.kind, location))
    return (
        f"Vertex AI does not offer {model.resource} in {location!r} ({detail}): it was retired, is not "
        f"available in that region, or the name is wrong. Live {model.kind} models: {alternatives}; "
        f"`pdbatch models` lists them with their dates."
    )


def resolve_vertex(name: str | None, kind: Kind | None = None, *, location: str | None = None) -> VertexModel:
    """Resolve a Vertex model written as ``id``, ``publisher/id`` or ``publishers/p/models/id``.

    A model the catalog does not know is accepted as ``publisher/id`` or a full
    path (the Vertex backend asks the live service about it before submitting);
    its kind is then taken from ``kind``. A retired model is refused; a
    deprecated one gives a :class:`DeprecatedModelWarning` with its retirement date.

    Parameters
    ----------
    name : str or None
        The model; ``None`` picks the default for ``kind`` (and ``location``).
    kind : {"chat", "embeddings"}, optional
        What the caller needs; checked against the catalog.
    location : str, optional
        Where the job would run; checked for models that run only in some locations.

    Returns
    -------
    VertexModel

    Raises
    ------
    ConfigError
        Unknown short name, retired model, wrong kind, a model that runs online
        only, or a location that does not serve the model's batch jobs.
    """
    if name is None:
        name = vertex_default(kind or CHAT, location)
    model = parse_vertex(name, kind)
    _check_lifecycle(model, location)
    if kind is not None and model.kind != kind:
        raise ConfigError(
            f"model={name!r} is a {model.kind} model, but this call needs a {kind} model "
            f"(for example {vertex_default(kind, location)!r})"
        )
    if not model.batch:
        raise ConfigError(online_only_message(model))
    if location:
        problem = location_problem(model, location)
        if problem:
            raise ConfigError(problem)
    return model


def online_only_message(model: VertexModel) -> str:
    """Why a model without batch support is refused, and which models run batch jobs."""
    return (
        f"{model.body_name} runs online only: Vertex AI does not run batch jobs for it (its model card: "
        f"\"Batch inference: Not supported\"). Models that run batch jobs: "
        f"{', '.join(live_models(model.kind))}. Nothing was submitted."
    )


def location_problem(model: VertexModel, location: str) -> str | None:
    """Why ``model``'s batch jobs cannot run in ``location`` (None: they can, or only the service knows)."""
    if model.locations and location in model.locations:
        return None
    if not model.locations and location != "global":
        return None  # not documented: the live service decides
    served = model.locations or (FALLBACK_LOCATION,)
    elsewhere = [n for n in live_models(model.kind, location) if n != model.model_id]
    instead = (f"or a model served in {location!r}: {', '.join(elsewhere)}" if elsewhere else
               f"(no Vertex {model.kind} model runs batch jobs in {location!r}; or use backend='local' "
               f"({LOCAL_DEFAULTS[model.kind]}))")
    why = ("open-model batch jobs do not run in 'global'" if not model.locations else
           f"{model.body_name} runs batch jobs only in {', '.join(served)} (its model card; see `pdbatch models`)")
    return (
        f"{why}, but this Vertex backend's location is {location!r}. Leave location out (each model then "
        f"runs where it is served: {served[0]!r} for this one) or pass Vertex(location={served[0]!r}) {instead}. "
        f"Nothing was submitted."
    )


def batch_location(model: VertexModel, location: str | None) -> str:
    """Where ``model``'s batch job runs: ``location`` when given (checked), else the model's own region."""
    if location is None:
        return model.region
    problem = location_problem(model, location)
    if problem:
        raise ConfigError(problem)
    return location


def parse_vertex(name: str, kind: Kind | None = None) -> VertexModel:
    """The catalog entry for ``name`` (any of the forms :func:`resolve_vertex` takes), without checks.

    A ``publisher/id`` the catalog does not know gives an uncatalogued model of ``kind``.
    """
    parts = name.strip("/").split("/")
    if len(parts) == 4 and parts[0] == "publishers" and parts[2] == "models":
        parts = [parts[1], parts[3]]
    if len(parts) == 2 and all(parts):
        known = VERTEX_MODELS.get(parts[1])
        # A retired id is refused whichever publisher it is written with.
        if known and (known.publisher == parts[0] or known.status() == "retired"):
            return known
        return VertexModel(parts[0], parts[1], kind or CHAT, stage="", batch_listed=False, catalogued=False)
    if len(parts) == 1 and name in VERTEX_MODELS:
        return VERTEX_MODELS[name]
    raise ConfigError(_unknown_vertex(parts[-1]))


def _check_lifecycle(model: VertexModel, location: str | None) -> None:
    status = model.status()
    if status == "retired":
        raise ConfigError(retired_message(model, location))
    if status == "deprecated":
        warnings.warn(
            f"{model.body_name} is deprecated since {model.deprecated} and will be retired on "
            f"{model.retired} (see {DEPRECATIONS}); move to one of: {', '.join(live_models(model.kind, location))}",
            DeprecatedModelWarning,
            stacklevel=4,
        )
    until = model.available_until
    if until and model.batch:
        passed = " (that day has passed: it may be withdrawn at any time)" if today() > until else ""
        warnings.warn(
            f"{model.body_name} is a Preview model, launched {model.launched}: Google guarantees it until "
            f"{until} only (45 days from launch, see {DEPRECATIONS}){passed}",
            PreviewModelWarning,
            stacklevel=4,
        )


def _unknown_vertex(name: str) -> str:
    retired = [i for i, m in VERTEX_MODELS.items() if m.status() == "retired"]
    live = [i for i in VERTEX_MODELS if i not in retired]
    message = _unknown(name, live, "Vertex AI",
                       "any other publisher model can be passed as 'publisher/<id>' or "
                       "'publishers/<publisher>/models/<id>' (the live service is asked about it)")
    gone = difflib.get_close_matches(name, retired, n=1, cutoff=0.6)
    if gone:
        message += f" ({gone[0]} was retired on {VERTEX_MODELS[gone[0]].retired}.)"
    return message


def list_models(on: date | None = None) -> pd.DataFrame:
    """Every model pdbatch knows, local and Vertex, with its lifecycle status.

    Parameters
    ----------
    on : datetime.date, optional
        The day to judge statuses on (default today).

    Returns
    -------
    pandas.DataFrame
        One row per model: ``backend``, ``name``, ``publisher``, ``kind``,
        ``stage``, ``deprecated``, ``retired``, ``status`` (``live``,
        ``deprecated``, ``retired``, ``unlisted``: not on the current batch
        page, the live service decides; ``online``: no batch jobs), ``default``
        and ``locations`` (where its batch jobs run, the default first).
    """
    import pandas as pd

    rows: list[dict[str, Any]] = [
        {"backend": "local", "name": m.name, "publisher": m.package or "", "kind": m.kind, "stage": "bundled",
         "deprecated": None, "retired": None, "status": "live", "default": LOCAL_DEFAULTS[m.kind] == m.name,
         "locations": ""}
        for m in LOCAL_MODELS.values()
    ]
    defaults = {n for names in VERTEX_DEFAULTS.values() for n in names}
    rows += [
        {"backend": "vertex", "name": m.model_id, "publisher": m.publisher, "kind": m.kind, "stage": m.stage,
         "deprecated": m.deprecated, "retired": m.retired, "status": m.status(on), "default": m.model_id in defaults,
         "locations": ", ".join(m.locations) if m.batch else f"online only: {', '.join(m.online) or '-'}"}
        for m in VERTEX_MODELS.values()
    ]
    return pd.DataFrame(rows)
