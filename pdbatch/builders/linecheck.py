"""Each line of a request file checked on its own: its kind (chat or embeddings) and what a backend cannot take.

:func:`pdbatch.builders.requestfile.plan_lines` runs these on every line; a line
that fails them gets its own error and the others run. Everything a backend
is asked about a line is asked here, in two steps: :func:`body_problem` (its
fields, what the backend cannot honour, its ``response_format``) while the
lines are read, and :func:`model_problem` (what the job's model cannot take)
once the lines of a kind have their model. A frame's call asks the same
questions once for every row, and is refused whole (:mod:`pdbatch.jobs.prepare`),
except about each row's own ``messages=``, whose refusal fails that row alone
(:mod:`pdbatch.jobs.rowmodel`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd

from ..lines.params import EMBEDDINGS_FIELDS, EXTRA_BODY, RESERVED, check_fields
from ..lines.structured import response_format_problem
from ..models import CHAT, EMBEDDINGS, URLS, Kind

if TYPE_CHECKING:
    from ..backends.base import Backend

__all__ = ["KIND_OF_URL", "body_problem", "line_kind", "missing", "model_problem", "reader", "shown"]

#: The kind each of the kinds' own endpoints serves.
KIND_OF_URL = {url: kind for kind, url in URLS.items()}


def shown(value: Any) -> str:
    """``value`` as JSON (a str as its repr), cut to 60 characters: how a message quotes a line's value."""
    try:
        text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    except TypeError:  # not JSON (a set, an object in a frame given directly): named by its repr, not a crash
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def reader(column: pd.Series) -> Callable[[int], Any]:
    """The value at a position of a column whose values repeat (None where missing), without a list of them."""
    try:
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
    except TypeError:  # unhashable values (a frame given directly): read as they are, to be named
        return column.to_numpy(dtype=object).__getitem__  # type: ignore[no-any-return]
    names = list(uniques)
    return lambda p: None if codes[p] < 0 else names[codes[p]]


def line_kind(method: Any, url: Any, body: Any) -> tuple[Kind | None, str | None]:
    """A line's kind (chat or embeddings) from its method, url and body, or why it has none."""
    if not isinstance(body, dict):
        return None, f"body must be a JSON object, not {shown(body)}"
    if missing(method):
        pass  # POST is the only method there is
    elif method != "POST":
        return None, f"method {shown(method)}: batch request lines are POST"
    if missing(url):
        if "messages" in body:
            return CHAT, None
        if "input" in body:
            return EMBEDDINGS, None
        return None, ("no url, and the body has neither messages (chat) nor input (embeddings); add "
                      f"\"url\": {URLS[CHAT]!r} or {URLS[EMBEDDINGS]!r}")
    kind = KIND_OF_URL.get(url) if isinstance(url, str) else None
    if kind is None:
        return None, (f"url {shown(url)} is not supported; pdbatch runs {URLS[CHAT]!r} and "
                      f"{URLS[EMBEDDINGS]!r}")
    return kind, None


def missing(value: Any) -> bool:
    """Whether a ``method`` or ``url`` is absent from its line (None, or NaN in a pandas column)."""
    return value is None or (isinstance(value, float) and value != value)  # NaN: pandas' missing str


def body_problem(body: dict[str, Any], kind: Kind, backend: Backend) -> str | None:
    """What ``backend`` cannot take in a request body, or None: the checks of a frame's call, per line."""
    if kind == CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages must be a non-empty list of {'role': ..., 'content': ...} objects"
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
                return f"each message needs a role and a content, got {shown(m)}"
    else:
        text = body.get("input")
        if isinstance(text, list):
            return (f"input is a list of {len(text)}; pdbatch keeps one embedding per request line: write one "
                    f"line per text")
        if not isinstance(text, str) or not text.strip():
            return f"input must be a non-empty string, not {shown(text)}"
    extra = backend.body_fields(kind)
    known = {*(_fields(kind)), *extra}
    # Fields pdbatch does not know are sent as written (as extra_body would send
    # them): the backend refuses those its service would not take.
    fields = {k: v for k, v in body.items() if k not in RESERVED and k in known}
    unknown = {k: v for k, v in body.items() if k not in RESERVED and k not in known}
    checked, problems = check_fields({**fields, EXTRA_BODY: unknown} if unknown else fields, kind,
                                     extra_fields=extra)
    if not problems:
        problems = [f"{name}={shown(checked[name])}: {why}"
                    for name, why in backend.unsupported_params(kind, checked).items()]
    if not problems and kind == CHAT:
        schema_problem = response_format_problem(body.get("response_format"), backend.schema_support)
        problems = [schema_problem] if schema_problem else []
    return "; ".join(problems) or None


def model_problem(body: dict[str, Any], kind: Kind, model: str, backend: Backend) -> str | None:
    """What ``model`` (as request bodies name it) cannot take in a body :func:`body_problem` passed, or None.

    The whole body but its ``model`` is asked about (:meth:`Backend.unsupported_for_model`),
    ``messages`` and ``input`` too: a line's own messages are its to fail (on
    Vertex, what the conversion to Gemini lines would refuse at submit time).
    """
    refused = backend.unsupported_for_model(model, kind, {k: v for k, v in body.items() if k != "model"})
    if not refused:
        return None
    fields = "; ".join(f"{name}={shown(body.get(name))}: {why}" for name, why in refused.items())
    return (f"{model} cannot take {fields}. Change this line's {', '.join(refused)}, or run the file on a model "
            f"that takes {'it' if len(refused) == 1 else 'them'} (--model, model=)")


def _fields(kind: Kind) -> Iterator[str]:
    from ..lines.params import CHAT_FIELDS

    yield from (CHAT_FIELDS if kind == CHAT else EMBEDDINGS_FIELDS)
    # a field of the other kind is named as such by check_fields, not passed as unknown
    yield from (EMBEDDINGS_FIELDS if kind == CHAT else CHAT_FIELDS)
