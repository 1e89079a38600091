"""What a first Vertex job needs from the project and the model, in words and in request bodies.

The service's two refusals a first job meets (SPEC.md, "What a real project
meets on its first job") become one line each, naming the fix: a model the
project has not enabled in Model Garden (400 FAILED_PRECONDITION "Project `P`
is not allowed to use Publisher Model ...": enable it, with its console link),
and a model without batch support (400 INVALID_ARGUMENT "Do not support
publisher model ..."). Reasoning models get :data:`REASONING_DEFAULTS` in their
request bodies, so that a short ``max_tokens`` still leaves room for the answer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigError
from ..models import VertexModel, live_models
from ._gcp import _msg

__all__ = ["REASONING_DEFAULTS", "garden_url", "no_batch_message", "not_enabled_message", "reasoning_defaults",
           "refusal"]

#: Body fields sent to reasoning models unless the call sets them: at low effort
#: gpt-oss reasons in tens of tokens, so a short max_tokens (which counts the
#: reasoning and the answer together) still leaves room for the answer.
REASONING_DEFAULTS = {"reasoning_effort": "low"}


def garden_url(model: VertexModel, project: str) -> str:
    """The model's Model Garden page in the Cloud console, where a project enables it."""
    return (f"https://console.cloud.google.com/vertex-ai/publishers/{model.publisher}/model-garden/"
            f"{model.model_id}?project={project}")


def not_enabled_message(model: VertexModel, project: str) -> str:
    """The service's 400 FAILED_PRECONDITION "Project ... is not allowed to use Publisher Model", in one line."""
    licence = " and accept its licence" if model.publisher == "meta" else ""
    return (
        f"project {project!r} has not enabled {model.body_name}: open {garden_url(model, project)}, click "
        f"Enable{licence}, then run again (`pdbatch check --backend vertex --model {model.model_id}` checks it "
        f"without a job). Nothing was submitted."
    )


def no_batch_message(model: VertexModel, detail: str) -> str:
    """The service's 400 "Do not support publisher model ..." (no batch jobs for it), in one line."""
    return (
        f"{model.body_name} does not run batch jobs (Vertex AI: {detail}); it runs online only. Models that "
        f"run batch jobs: {', '.join(n for n in live_models(model.kind) if n != model.model_id)}."
    )


def refusal(exc: Any, spec: VertexModel, project: str) -> None:
    """Raise the one-line :class:`ConfigError` for a set-up refusal of job creation; return for any other."""
    text = _msg(exc)
    if "is not allowed to use Publisher Model" in text:
        raise ConfigError(not_enabled_message(spec, project)) from exc
    if "Do not support publisher model" in text:
        raise ConfigError(no_batch_message(spec, text)) from exc


def reasoning_defaults(files: list[Path]) -> None:
    """Add :data:`REASONING_DEFAULTS` to the request lines that do not set those fields (in place)."""
    for path in files:
        tmp = path.with_name(path.name + ".reasoning")
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            for raw in src:
                if not raw.strip():
                    continue
                line = orjson.loads(raw)
                body = line.get("body") if isinstance(line, dict) else None
                if isinstance(body, dict) and line.get("url") == "/v1/chat/completions":
                    for key, value in REASONING_DEFAULTS.items():
                        body.setdefault(key, value)
                dst.write(orjson.dumps(line) + b"\n")
        os.replace(tmp, path)
