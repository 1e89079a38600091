"""Gemini embedding batch lines: OpenAI embeddings lines in, Gemini lines out, and back.

The embedding models that run Vertex batch jobs today (gemini-embedding-001,
gemini-embedding-2; see :data:`pdbatch.models.EMBEDDINGS_PAGE`) do not read
OpenAI lines. Their input lines are (doc)::

    {"key": "row-0", "request": {"content": {"parts": [{"text": "Hello"}]},
                                 "embed_content_config": {"output_dimensionality": 768,
                                                          "task_type": "RETRIEVAL_DOCUMENT"}}}

and, the job being built on Gemini batch inference, each output line echoes
the input with the answer (an ``EmbedContentResponse``) and a ``status``
(empty on success)::

    {"key": "row-0", "request": {...}, "status": "",
     "response": {"embedding": {"values": [0.1, ...]}, "tokenCount": "2"}}

(the token count is ``response.tokenCount``, an int64 and so a JSON string;
``usageMetadata.promptTokenCount``, Gemini's generate shape, is read too).

``key`` is how the row's ``custom_id`` survives the round trip. The older
text-embedding shape (``"predictions": [{"embeddings": {"values": ...}}]``,
the id inside ``instance``) is read too. The core keeps writing and reading
OpenAI lines: the Vertex backend converts them here, at its boundary.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigError
from ..lines.params import Check, boolean, integer, one_of
from ..models import EMBEDDINGS_PAGE, VertexModel, parse_vertex
from ._gcp import BqUri, GcsUri
from ._gemini_lines import count, rewrite

__all__ = ["BODY_FIELDS", "from_gemini_file", "is_gemini_job", "job_wire", "prepare", "to_gemini_file",
           "unsupported"]

# OpenAI / pdbatch body field -> embed_content_config field.
_CONFIG_FIELDS = {
    "dimensions": "output_dimensionality",
    "output_dimensionality": "output_dimensionality",
    "task_type": "task_type",
    "title": "title",
    "auto_truncate": "auto_truncate",
}
# input_type (as the local e5 models take it) -> the Gemini task type it means.
_INPUT_TYPES = {"query": "RETRIEVAL_QUERY", "passage": "RETRIEVAL_DOCUMENT", "document": "RETRIEVAL_DOCUMENT"}
#: The body fields these jobs take beyond OpenAI's, for pdbatch.lines.params' check before submitting
#: (unsupported() then refuses what a given model cannot take).
BODY_FIELDS: dict[str, Check] = {
    "input_type": one_of(tuple(_INPUT_TYPES)),
    "output_dimensionality": integer(1),
    "task_type": one_of(),
    "title": one_of(),
    "auto_truncate": boolean,
}
# gemini-embedding-2 ignores these in the config (doc): they belong in the text itself.
_INLINE_ONLY = {"task_type", "title"}
_IGNORED = {"model", "input", "encoding_format", "user"}


def unsupported(model: VertexModel, params: Mapping[str, Any]) -> dict[str, str]:
    """The embeddings body fields among ``params`` ``model``'s batch lines cannot carry, each with why.

    Asked before anything is written (:meth:`Vertex.unsupported_for_model`): a
    frame's call is refused, a request file's line gets its own error.
    """
    out = {}
    for field, value in params.items():
        why = _refusal(model, field, value)
        if why is not None:
            out[field] = why
    return out


def _refusal(model: VertexModel, field: str, value: Any) -> str | None:
    """Why ``model``'s batch lines cannot carry ``field=value`` (None: they can)."""
    if field in _IGNORED:
        if field == "encoding_format" and value not in (None, "float"):
            return f"{model.body_name} batch jobs return floats only"
        return None
    if field == "input_type" and value not in _INPUT_TYPES:
        return f"use one of {sorted(_INPUT_TYPES)}"
    target = _CONFIG_FIELDS.get("task_type" if field == "input_type" else field)
    if target is None:
        return (f"no equivalent in {model.body_name} batch jobs; they take "
                f"{', '.join(sorted(set(_CONFIG_FIELDS) | {'input_type'}))}")
    if model.model_id == "gemini-embedding-2" and target in _INLINE_ONLY:
        return ("gemini-embedding-2 ignores it in batch jobs (doc); write it into the input text instead "
                "(a frame's template), e.g. 'task: search result | query: {text}'")
    return None


def _config(model: VertexModel, body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for field, value in body.items():
        why = _refusal(model, field, value)
        if why is not None:
            raise ConfigError(f"{field}={value!r}: {why}")
        if field in _IGNORED:
            continue
        if field == "input_type":
            field, value = "task_type", _INPUT_TYPES[value]
        config[_CONFIG_FIELDS[field]] = value
    return config


def prepare(model: VertexModel, files: list[Path], staging: GcsUri | BqUri, output: GcsUri | BqUri | None) -> None:
    """Refuse BigQuery (these jobs read and write Cloud Storage JSONL only) and rewrite ``files`` as Gemini lines."""
    for uri, what in ((staging, "staging"), (output, "output")):
        if isinstance(uri, BqUri):
            raise ConfigError(
                f"{what}={uri}: {model.body_name} batch jobs read and write JSONL files in Cloud Storage "
                f"only (BigQuery tables are not supported for Gemini embedding models, see "
                f"{EMBEDDINGS_PAGE}); use {what}='gs://bucket/prefix/'"
            )
    for path in files:
        to_gemini_file(model, path)


def job_wire(job: Any) -> str:
    """The line format a job resource's model (``[projects/P/locations/L/]publishers/p/models/id``) writes."""
    name = str(job.model or "")
    start = name.find("publishers/")
    try:
        return parse_vertex(name[start:]).wire if start >= 0 else "openai"
    except ConfigError:
        return "openai"


def is_gemini_job(job: Any) -> bool:
    """Whether a job resource's model writes Gemini embedding lines."""
    return job_wire(job) == "gemini-embedding"


def request_line(model: VertexModel, line: dict[str, Any]) -> dict[str, Any]:
    """One OpenAI embeddings request line as a Gemini embedding input line."""
    body = line.get("body") or {}
    text = body.get("input")
    if not isinstance(text, str):
        raise ConfigError(f"row {line.get('custom_id')!r}: {model.body_name} embeds one text per row, "
                          f"got input={text!r:.60}")
    request: dict[str, Any] = {"content": {"parts": [{"text": text}]}}
    try:
        config = _config(model, body)
    except ConfigError as exc:
        raise ConfigError(f"row {line.get('custom_id')!r}: {exc}") from None
    if config:
        request["embed_content_config"] = config
    return {"key": line["custom_id"], "request": request}


def to_gemini_file(model: VertexModel, path: Path) -> None:
    """Rewrite an OpenAI request file in place as Gemini embedding lines.

    Raises :class:`ConfigError` (naming the field or the row) for a body the
    model cannot take; the file is then left as it was.
    """
    tmp = path.with_name(path.name + ".gemini")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        for raw in src:
            if raw.strip():
                dst.write(orjson.dumps(request_line(model, orjson.loads(raw))) + b"\n")
    os.replace(tmp, path)


def output_line(obj: dict[str, Any]) -> dict[str, Any]:
    """One Gemini (or text-embedding) output line as an OpenAI-shaped one :mod:`pdbatch.results.parse` reads."""
    instance = obj["instance"] if isinstance(obj.get("instance"), dict) else {}
    key = obj.get("key", instance.get("key"))
    status = obj.get("status")
    if isinstance(status, str) and status.strip():
        return {"custom_id": key, "status": status}
    response = obj["response"] if isinstance(obj.get("response"), dict) else {}
    values = (response.get("embedding") or {}).get("values")
    predictions = obj.get("predictions")
    if values is None and isinstance(predictions, list) and predictions:
        values = ((predictions[0] or {}).get("embeddings") or {}).get("values")
    if values is None:
        return {"custom_id": key, "status": f"no embedding in the output line: {orjson.dumps(obj)[:200]!r}"}
    usage = response.get("usageMetadata") or response.get("usage_metadata") or {}
    tokens = count(response.get("tokenCount", response.get("token_count")))
    if tokens is None:
        tokens = count(usage.get("promptTokenCount", usage.get("prompt_token_count")))
    out: dict[str, Any] = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": values}]}
    if tokens is not None:
        out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"custom_id": key, "response": out}



def from_gemini_file(path: Path) -> None:
    """Rewrite a downloaded output file in place as OpenAI-shaped lines; unreadable lines are kept as they are."""
    rewrite(path, output_line)
