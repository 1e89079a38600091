"""``df.llama.classify``: labels checked, request bodies that ask for them, and label probabilities read back.

A classify call is an ordinary chat call with one more thing in each body;
what that is depends on what the backend declares
(:attr:`pdbatch.backends.base.Backend.scores_labels`):

- A backend that scores labels (the local engine) gets the extension field
  :data:`FIELD`: the labels, an answer prefix, and the content-free fillings
  of the same template. It answers each row with the log-probability of
  every label as the continuation of the chat-formatted prompt plus the
  prefix (a multi-token label sums its tokens'), and the same for each
  content-free filling (computed once per job).
- Any other backend gets constrained generation: ``response_format`` with a
  JSON schema whose one property is an ``enum`` of the labels. Its answer
  names the label; the probability columns are NaN.

Calibration is contextual calibration (Zhao et al. 2021, "Calibrate Before
Use"): a small model's label log-probabilities lean towards some labels
whatever the input; the mean log-probabilities it gives the template filled
with content-free inputs ("N/A", "", "[MASK]") measure that lean, and are
subtracted before the softmax over the labels. Measured on the bundled
SmolLM2-135M: README, "Labels: df.llama.classify".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..engine.score import FIELD, METHOD
from ..errors import ConfigError, InputError

__all__ = ["CONTENT_FREE", "FIELD", "MAX_LABELS", "METHOD", "LabelSpec", "add_columns", "probabilities"]

# FIELD: the request body field a label-scoring backend reads (an extension of
# OpenAI's chat body); METHOD: the scoring method, sent in every body, so that
# the response cache never mixes methods.
#: Content-free fillings of the template (Zhao et al. 2021).
CONTENT_FREE = ("N/A", "", "[MASK]")
#: More labels than this are refused: every label costs a scoring pass, and
#: nearest-label embeddings scale to many labels at one pass per row.
MAX_LABELS = 50
#: Default text put at the start of the answer before the label.
DEFAULT_PREFIX = "Answer:"


@dataclass(frozen=True)
class LabelSpec:
    """What a classify call asks for (stored in :attr:`pdbatch.call.Call.classify`).

    Attributes
    ----------
    labels : tuple of str
        The labels, as given (checked by :meth:`make`).
    output : str
        The column that gets the chosen label.
    calibrate : bool
        Subtract the content-free log-probabilities before the softmax.
    prefix : str
        Text that starts the answer, before the label (``"Answer:"``).
    """

    labels: tuple[str, ...]
    output: str = "label"
    calibrate: bool = True
    prefix: str = DEFAULT_PREFIX

    @classmethod
    def make(cls, labels: Any, *, output: Any = "label", calibrate: Any = True,
             prefix: Any = DEFAULT_PREFIX, output_name: str = "output") -> LabelSpec:
        """Check the arguments of a classify call.

        ``output_name`` is the argument ``output`` came from, as messages name
        it (a table's classify calls it ``output_column``).

        Raises
        ------
        ConfigError
            Fewer than 2 or more than :data:`MAX_LABELS` labels, a label that
            is not a non-empty string, duplicates (also labels that differ
            only in whitespace), a bad ``output`` or ``prefix``, or result
            column names that collide.
        """
        if isinstance(labels, (set, frozenset)):
            raise ConfigError("labels= must be a list (a set has no order, and the columns follow it)")
        if isinstance(labels, (str, bytes, Mapping)) or not hasattr(labels, "__iter__"):
            raise ConfigError(f"labels= must be a list of strings such as ['positive', 'negative'], "
                              f"got {type(labels).__name__}")
        labels = list(labels)
        if len(labels) < 2:
            raise ConfigError(f"labels= needs at least 2 labels, got {len(labels)}: a single label is always chosen")
        if len(labels) > MAX_LABELS:
            raise ConfigError(
                f"labels= has {len(labels)} labels, more than {MAX_LABELS}: every label is scored for every "
                f"row. For many labels embed the rows and the labels (df.llama.embed) and take the nearest label")
        seen: dict[str, str] = {}
        for i, label in enumerate(labels):
            if not isinstance(label, str):
                raise ConfigError(f"labels[{i}] = {label!r} is not a string")
            if not label.strip():
                raise ConfigError(f"labels[{i}] = {label!r} is empty; every label needs visible text")
            key = " ".join(label.split())
            if key in seen:
                same = "is repeated" if seen[key] == label else f"differs from {seen[key]!r} only in whitespace"
                raise ConfigError(f"labels[{i}] = {label!r} {same}: labels must be distinct")
            seen[key] = label
        if not isinstance(output, str) or not output:
            raise ConfigError(f"{output_name}= must be a non-empty column name, got {output!r}")
        if not isinstance(calibrate, bool):
            raise ConfigError(f"calibrate= must be True or False, got {calibrate!r}")
        if not isinstance(prefix, str):
            raise ConfigError(f"answer_prefix= must be a string, got {type(prefix).__name__}")
        spec = cls(tuple(labels), output, calibrate, prefix)
        names = spec.columns
        if len(set(names)) != len(names):
            raise ConfigError(f"{output_name}={output!r} collides with another result column ({names}); "
                              f"pick another {output_name}=")
        return spec

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> LabelSpec:
        """Rebuild from :meth:`record` (as stored in a job's manifest)."""
        return cls(tuple(data["labels"]), data.get("output", "label"), bool(data.get("calibrate", True)),
                   data.get("prefix", DEFAULT_PREFIX))

    def record(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        data = asdict(self)
        data["labels"] = list(self.labels)
        return data

    @property
    def prob_columns(self) -> list[str]:
        """``p_<label>`` for each label, in the labels' order."""
        return [f"p_{label}" for label in self.labels]

    @property
    def columns(self) -> list[str]:
        """The columns a classify result adds: the label, one probability per label, and ``error``."""
        return [self.output, *self.prob_columns, "error"]

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON schema for constrained generation: one property, an enum of the labels."""
        return {"type": "object", "properties": {"label": {"type": "string", "enum": list(self.labels)}},
                "required": ["label"], "additionalProperties": False}

    def continuation_bytes(self) -> int:
        """An upper bound of the tokens the prefix and the longest label add to a prompt.

        Byte-level tokenizers spend at least one byte per token; 4 for the
        space and any token a tokenizer adds at a boundary.
        """
        return len(self.prefix.encode()) + max(len(label.encode()) for label in self.labels) + 4


def content_free_messages(template: Any, system: str | None) -> list[list[dict[str, str]]]:
    """The chat messages of the template filled with each :data:`CONTENT_FREE` text in every field.

    Format specs are left out: ``{price:.2f}`` cannot format "N/A", and what
    counts is the template's text around the fields.
    """
    out = []
    for filler in CONTENT_FREE:
        parts = [template.literals[0]]
        for literal in template.literals[1:]:
            parts += [filler, literal]
        messages = [{"role": "user", "content": "".join(parts)}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        out.append(messages)
    return out


def scoring_field(spec: LabelSpec, template: Any, system: str | None) -> dict[str, Any]:
    """The :data:`FIELD` object a label-scoring backend reads from each body."""
    return {
        "labels": list(spec.labels),
        "prefix": spec.prefix,
        "content_free": content_free_messages(template, system) if spec.calibrate else [],
        "method": METHOD,
    }


def probabilities(logprobs: Sequence[float], content_free: Sequence[Sequence[float]]) -> np.ndarray:
    """Label probabilities: softmax of the log-probabilities minus the mean content-free ones.

    Parameters
    ----------
    logprobs : sequence of float
        Each label's log-probability after the row's prompt.
    content_free : sequence of sequences of float
        The same for each content-free filling; empty: no calibration.

    Returns
    -------
    numpy.ndarray
        One probability per label, summing to 1.
    """
    scores = np.asarray(logprobs, dtype=np.float64)
    if len(content_free):
        scores = scores - np.asarray(content_free, dtype=np.float64).mean(axis=0)
    scores = scores - scores.max()
    p = np.exp(scores)
    return p / p.sum()


def _read(text: Any, spec: LabelSpec) -> tuple[str | None, np.ndarray, str | None]:
    """One answer -> (label, probabilities or NaNs, error)."""
    nan = np.full(len(spec.labels), np.nan)
    if not isinstance(text, str):
        return None, nan, "no answer"
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None, nan, f"answer is not a label: {text[:80]!r}"
    if not isinstance(obj, dict):
        return None, nan, f"answer is not a label: {text[:80]!r}"
    scores = obj.get("logprobs")
    if scores is not None:
        cf = obj.get("content_free") or []
        n = len(spec.labels)
        ok = (isinstance(scores, list) and len(scores) == n and isinstance(cf, list)
              and all(isinstance(c, list) and len(c) == n for c in cf))
        if not ok or obj.get("labels", list(spec.labels)) != list(spec.labels):
            return None, nan, "the label scores do not match the call's labels"
        p = probabilities(scores, cf if spec.calibrate else [])
        return spec.labels[int(np.argmax(p))], p, None
    label = obj.get("label")
    if label not in spec.labels:
        return None, nan, f"answer {label!r:.80} is not one of the labels"
    return label, nan, None


def add_columns(result: pd.DataFrame, spec: LabelSpec) -> pd.DataFrame:
    """A joined result with the label and probability columns in place of the raw answer columns.

    ``response``, ``finish_reason`` and the token counts are dropped (the
    answer is the label); a row whose answer cannot be read gets its
    ``error`` and no label.
    """
    from .join import output_columns

    n = len(result)
    labels: list[str | None] = [None] * n
    probs = np.full((n, len(spec.labels)), np.nan)
    errors = result["error"].astype(object).where(result["error"].notna(), None).tolist()
    for i, text in enumerate(result["response"].tolist()):
        if errors[i] is not None:
            continue
        labels[i], probs[i], problem = _read(text, spec)
        errors[i] = problem
    out = result.drop(columns=[c for c in output_columns("chat") if c in result.columns])
    out[spec.output] = pd.array(labels, dtype="string")
    for j, col in enumerate(spec.prob_columns):
        out[col] = probs[:, j]
    out["error"] = pd.Series(pd.array(errors, dtype="string"), index=result.index)
    return out


def plan_requests(frame: pd.DataFrame, call: Any, backend: Any) -> Any:
    """The request lines of a classify call (a :class:`pdbatch.builders.requests.RequestPlan`).

    The bodies' fields are :func:`request_params`'s; a table's classify
    (:mod:`pdbatch.jobs.tablejob`) renders the same ones in SQL.

    Raises
    ------
    InputError, ConfigError
        No prompt template, bad labels, a label longer than the context
        window, or a body field the backend cannot honour.
    """
    from ..builders.requests import build_requests
    from ..models import CHAT, URLS

    model, params = request_params(call, backend, list(frame.columns))
    return build_requests(frame, call.prompt, system=call.system, model=model, url=URLS[CHAT],
                          custom_id=call.custom_id, on_null=call.on_null, params=params)


def request_params(call: Any, backend: Any, columns: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """The model and the body fields of a classify call, for a frame's rows or a table's.

    Every body asks for a deterministic answer (``temperature=0``): a
    scoring backend gets :data:`FIELD` (and ``max_tokens`` bounding the
    tokens the prefix and the longest label add, which sizes the local KV
    cache); any other backend gets the labels as an ``enum`` schema.

    Parameters
    ----------
    call : Call
        A call with ``classify`` set (its labels were checked by :meth:`LabelSpec.make`).
    backend : Backend
        Decides between label scores and the enum schema, and names the model.
    columns : sequence of str
        The columns the prompt template may read.

    Returns
    -------
    tuple of (str, dict)
        The model written in each body, and the body fields besides ``model`` and ``messages``.

    Raises
    ------
    InputError, ConfigError
        As :func:`plan_requests`.
    """
    from ..builders.template import Template
    from ..lines.structured import as_schema
    from ..models import CHAT, URLS

    assert call.classify is not None
    spec = LabelSpec.from_record(call.classify)
    if not isinstance(call.prompt, str) or call.messages is not None:
        raise ConfigError("classify takes a prompt template (prompt='... {column} ...'), not messages=: the "
                          "template is also filled with content-free text to calibrate the labels")
    if call.model is not None and not isinstance(call.model, str):
        raise ConfigError(f"classify takes one model name, got {type(call.model).__name__}: to compare models, "
                          f"classify once per model")
    if call.params:
        raise ConfigError(f"classify takes no body parameters, got {sorted(call.params)}: it sets them itself")
    if call.schema is not None or call.url != URLS[CHAT]:
        given = "schema=" if call.schema is not None else f"url={call.url!r}"
        raise ConfigError(f"classify takes no {given}: it asks the chat model for one of the labels (its own schema)")
    model = backend.model_name(call.model, CHAT)
    check_fits(spec, backend, model)
    params: dict[str, Any] = {"temperature": 0}
    if backend.scores_labels:
        template = Template.parse(call.prompt, list(columns))
        params["max_tokens"] = spec.continuation_bytes()
        params[FIELD] = scoring_field(spec, template, call.system)
    else:
        from ..lines.params import DEFAULT_MAX_TOKENS

        # room for a reasoning model's thinking before its JSON answer
        params["max_tokens"] = DEFAULT_MAX_TOKENS
        params["response_format"] = as_schema(spec.schema).response_format
    refused = backend.unsupported_params(CHAT, {k: v for k, v in params.items() if k != FIELD})
    if refused:
        name, why = next(iter(refused.items()))
        raise ConfigError(f"classify cannot run on this backend: {name}={params[name]!r}: {why}")
    return model, params


def check_fits(spec: LabelSpec, backend: Any, model: str) -> None:
    """Refuse a label that cannot fit in the model's context window (before anything runs)."""
    window = backend.context_window(model)
    if window is None:
        return
    bodies = [{"messages": [{"role": "user", "content": f"{spec.prefix} {label}"}]} for label in spec.labels]
    counts = backend.count_tokens(model, "chat", bodies)
    if counts is None:
        counts = [len(b["messages"][0]["content"].encode()) // 4 for b in bodies]
    for label, n in zip(spec.labels, counts, strict=True):
        if n >= window:
            raise InputError(f"label {label[:40]!r}... is about {n} tokens, longer than the model's context "
                             f"window of {window}: shorten the label")
