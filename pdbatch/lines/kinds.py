"""The kinds of request, declared in one place: the extension point for a new output kind.

A kind (:class:`KindSpec`) declares everything both sides of the wire need
to know about its lines:

- ``url``: the OpenAI batch endpoint its request lines name; :data:`URLS`
  (which :mod:`pdbatch.models` re-exports) and :func:`kind_of_url` are derived
  from the declarations;
- ``payload``: the body field that carries each row's input: ``messages``
  (a message list built from the prompt, the system message and a messages
  column) or a field that takes the rendered prompt text as it is (``input``
  for embeddings). Templates fill it, cache keys hash it,
  :mod:`pdbatch.builders.requests` writes it;
- ``fields``: the body fields the kind takes, each with its check
  (:mod:`pdbatch.lines.checks`); :func:`pdbatch.lines.params.check_fields`
  reads them, names a field of another kind as such, and gives an answer-length
  cap (``max_tokens``) a default where the kind takes one. A kind that takes
  ``max_tokens`` has answers a preview caps and prices; one that takes
  ``response_format`` takes ``schema=`` (:mod:`pdbatch.lines.structured`);
- ``answer``: the columns a result frame gains, each with its dtype (one of
  :data:`DTYPES`); ``error`` is added last. :mod:`pdbatch.results.rows` types
  the parsed columns with them, :mod:`pdbatch.results.join` (and every
  empty or blank result) builds the result columns from them. ``compared``
  names those that tell two answers to one row apart (by default all but the
  token counts; chat: ``response``, embeddings: ``embedding``);
- ``read`` and ``marks``: how an output line's answer body becomes those
  columns. :func:`pdbatch.lines.outputs.outcome` takes the answer out of any
  envelope (Vertex, OpenAI batch, BigQuery text), finds the first declared kind
  with one of its ``marks`` keys in it, and calls its reader, which returns the
  answer columns' values or raises :class:`Malformed`. Token counts
  (``prompt_tokens``, ``completion_tokens``) are read from ``usage`` for every
  kind; a kind lists them among its columns to keep them.

:func:`declare` adds a kind (a test or a plugin declares one in one place:
``tests/lines/test_kinds.py`` declares OpenAI's ``/v1/moderations``), and request
building, output parsing (the fast block parser leaves its lines to the
reference reader) and the result columns follow it.

What stays outside the declaration, because it is not a property of the kind:

- what each backend sends and returns for it: ``known_models``/``model_name``,
  ``body_fields``/``unsupported_params`` and ``fetch_output`` (OpenAI-shaped
  output lines, translated by the backend where its service writes another
  shape: ``backends/_gemini_chat.py``, ``backends/_gemini_embed.py``), the
  local engine's chat and embedding workers, the mock backend's answers;
- model catalogs (:mod:`pdbatch.models`: which model answers which kind);
- what only chat has: the system message and messages column
  (:mod:`pdbatch.builders.requests`, ``sqlbuild``), classify, the
  context-window fit (``jobs/fit.py``), the answer tokens a table job counts
  (``jobs/tablejob.py``) and the preview's "max_tokens default" note
  (``run.py``);
- OpenAI's Responses API answers (``/v1/responses``, an OpenAI backend URL for
  chat): read as chat answers by :mod:`pdbatch.lines.outputs`;
- request files (``builders/linecheck.py``, ``builders/requestfile.py``,
  ``jobs/runfile.py``, ``cli/file.py``) and BigQuery table jobs
  (``jobs/tableresult.py``, ``builders/sqlbuild.py``) know chat and embeddings
  lines only.

Classify's label scores are not a kind of their own: they ride on chat lines.
A backend that scores labels (the local engine) answers a chat line that
carries the classify field with the labels' log-probabilities as its answer
text; any other answers a chat line constrained to an enum of the labels. The
chat reader reads either into ``response`` like any answer, and
:func:`pdbatch.results.classify.add_columns` turns ``response`` into the label
and probability columns after the join (:mod:`pdbatch.results.readside`). A
kind of answer that needs columns of its own is a kind: a ``KindSpec``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from ..errors import ConfigError
from .checks import CHAT_FIELDS, EMBEDDINGS_FIELDS, Check

__all__ = ["CHAT", "DTYPES", "EMBEDDINGS", "KINDS", "URLS", "USAGE", "Column", "Kind", "KindSpec", "Malformed",
           "declare", "kind_of_url", "marks", "parsed_columns", "spec", "withdraw"]

#: The built-in kinds (a declared kind's name is any other string).
Kind = Literal["chat", "embeddings"]
CHAT: Kind = "chat"
EMBEDDINGS: Kind = "embeddings"

#: Column dtypes a kind can declare: pandas' ``"string"``, ``"Int64"``, ``"boolean"``,
#: ``"Float64"``, and ``"embedding"`` (a float32 array per row, or None).
DTYPES = ("string", "Int64", "boolean", "Float64", "embedding")
#: Read from an answer's ``usage`` for every kind.
USAGE = ("prompt_tokens", "completion_tokens")


class Column(NamedTuple):
    """One result column of a kind: its name and dtype (one of :data:`DTYPES`)."""

    name: str
    dtype: str


class Malformed(ValueError):
    """An answer body a reader cannot read: its message becomes the row's ``error``."""


#: A kind's reader: the answer body (a dict, out of any envelope) -> its answer columns' values.
Reader = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class KindSpec:
    """What one kind of request declares (see the module's docstring).

    Attributes
    ----------
    name : str
        The kind's name (``"chat"``, ``"embeddings"``, ...).
    url : str
        The OpenAI batch endpoint its request lines name.
    payload : str
        ``"messages"``, or the body field that takes the rendered prompt text.
    answer : tuple of Column
        The result columns before ``error``, with their dtypes.
    read : callable
        Answer body -> a dict of answer column values; raises :class:`Malformed`.
    marks : tuple of str
        Keys whose presence (not null) in an answer body makes it this kind's.
    fields : mapping of str to Check
        The body fields it takes (besides ``model`` and the payload), with their checks.
    compared : tuple of str
        The answer columns that tell two answers to one row apart (empty: all but :data:`USAGE`).
    """

    name: str
    url: str
    payload: str
    answer: tuple[Column, ...]
    read: Reader
    marks: tuple[str, ...]
    fields: Mapping[str, Check] = field(default_factory=dict)
    compared: tuple[str, ...] = ()

    @property
    def answer_columns(self) -> tuple[str, ...]:
        """The columns compared when two output lines answer one row (see ``compared``)."""
        return self.compared or tuple(c.name for c in self.answer if c.name not in USAGE)

    @property
    def columns(self) -> tuple[str, ...]:
        """The names of the columns a result frame gains, ``error`` last."""
        return (*(c.name for c in self.answer), "error")

    @property
    def messages(self) -> bool:
        """Whether the payload is a message list (else the rendered text itself)."""
        return self.payload == "messages"


def _read_chat(body: dict[str, Any]) -> dict[str, Any]:
    try:
        choice = body["choices"][0]
        text = (choice.get("message") or {}).get("content")
        if text is None:
            text = choice.get("text")  # a /v1/completions answer
        return {"response": text, "finish_reason": choice.get("finish_reason")}
    except (IndexError, TypeError, AttributeError, KeyError):
        raise Malformed("malformed response: no choices") from None


def _read_embedding(body: dict[str, Any]) -> dict[str, Any]:
    try:
        emb = body["data"][0]["embedding"]
    except (IndexError, TypeError, KeyError):
        emb = None
    if emb is None:
        raise Malformed("malformed response: no embedding")
    return {"embedding": emb}


KINDS: dict[str, KindSpec] = {}
#: Kind -> url, derived from the declarations (``pdbatch.models.URLS`` is this dict). Typed by the
#: built-in kinds, which the code that branches on a kind names; a declared kind's name is a str.
URLS: dict[Kind, str] = {}
_MARKS: list[tuple[str, KindSpec]] = []
_PARSED: tuple[Column, ...] = ()
_BUILTIN = (CHAT, EMBEDDINGS)
_RESERVED_COLUMNS = ("custom_id", "error")


def declare(kind: KindSpec) -> KindSpec:
    """Declare a kind: its url, request lines, output reading and result columns follow it.

    Parameters
    ----------
    kind : KindSpec

    Returns
    -------
    KindSpec
        ``kind``, now answered by :func:`spec` and :func:`kind_of_url`.

    Raises
    ------
    ConfigError
        The name or url is taken, a dtype is not one of :data:`DTYPES`, a
        column declared twice, or a column another kind declares with another dtype.
    """
    if kind.name in KINDS:
        raise ConfigError(f"kind {kind.name!r} is already declared; withdraw({kind.name!r}) first")
    if kind.url in URLS.values():
        raise ConfigError(f"url {kind.url!r} already belongs to kind {kind_of_url(kind.url)!r}")
    global _PARSED
    known = {c.name: c.dtype for c in _PARSED}
    twice = sorted({c.name for c in kind.answer if [d.name for d in kind.answer].count(c.name) > 1})
    if twice:  # one result column each: the second would overwrite the first, read with the first's dtype
        raise ConfigError(f"kind {kind.name!r}: column(s) {twice} declared twice; give each answer column its own name")
    for c in kind.answer:
        if c.dtype not in DTYPES:
            raise ConfigError(f"kind {kind.name!r}, column {c.name!r}: dtype {c.dtype!r} is not one of {DTYPES}")
        if c.name in _RESERVED_COLUMNS or known.get(c.name, c.dtype) != c.dtype:
            raise ConfigError(f"kind {kind.name!r}, column {c.name!r}: the parsed columns already have it "
                              f"as {known.get(c.name, 'string')!r}; give it that dtype or another name")
    if not kind.answer or not kind.marks:
        raise ConfigError(f"kind {kind.name!r} needs at least one answer column and one mark")
    KINDS[kind.name] = kind
    URLS[kind.name] = kind.url  # type: ignore[index]  # see URLS
    _MARKS.extend((m, kind) for m in kind.marks)
    _PARSED = _union()
    return kind


def withdraw(name: str) -> None:
    """Forget a declared kind (the built-in kinds stay)."""
    global _PARSED
    if name in _BUILTIN:
        raise ConfigError(f"kind {name!r} is built in and cannot be withdrawn")
    KINDS.pop(name, None)
    URLS.pop(name, None)  # type: ignore[call-overload]  # see URLS
    _MARKS[:] = [(m, k) for m, k in _MARKS if k.name != name]
    _PARSED = _union()


def spec(kind: str) -> KindSpec:
    """The declaration of ``kind`` (chat for anything not declared, as the readers have always assumed)."""
    return KINDS.get(kind, KINDS[CHAT])


def marks() -> list[tuple[str, KindSpec]]:
    """(key, kind) in declaration order: an answer body with ``key`` set is ``kind``'s."""
    return _MARKS


def kind_of_url(url: str) -> Kind:
    """Map an OpenAI batch ``url`` to the kind of request it carries.

    Returns
    -------
    str
        A built-in :data:`Kind` or the name of a declared kind.
    """
    for kind, known in URLS.items():
        if url == known:
            return kind
    listed = " or ".join(f"{u!r} for {k}" for k, u in URLS.items())
    raise ConfigError(f"url={url!r} is not supported; use {listed}")


def parsed_columns() -> tuple[Column, ...]:
    """Every column a parsed output line has: ``custom_id``, each kind's answer columns once, ``error``.

    With the built-in kinds only: custom_id, response, finish_reason,
    prompt_tokens, completion_tokens, embedding, error.
    """
    return _PARSED


def _union() -> tuple[Column, ...]:
    seen: dict[str, Column] = {"custom_id": Column("custom_id", "string")}
    for kind in KINDS.values():
        for c in kind.answer:
            seen.setdefault(c.name, c)
    return (*seen.values(), Column("error", "string"))


_STRING, _INT = "string", "Int64"
declare(KindSpec(CHAT, "/v1/chat/completions", "messages",
                 (Column("response", _STRING), Column("finish_reason", _STRING),
                  Column("prompt_tokens", _INT), Column("completion_tokens", _INT)),
                 _read_chat, ("choices",), CHAT_FIELDS, ("response",)))
declare(KindSpec(EMBEDDINGS, "/v1/embeddings", "input", (Column("embedding", "embedding"),),
                 _read_embedding, ("data",), EMBEDDINGS_FIELDS))
