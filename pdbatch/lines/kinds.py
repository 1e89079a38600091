"""The kinds of request, declared in one place: the extension point for a new output kind.

A kind says everything both sides of the wire need to know about its lines:

- ``url``: the OpenAI batch endpoint its request lines name (``kind_of_url``
  maps a line back to its kind, :mod:`pdbatch.models`);
- ``payload``: the body field that carries each row's input (``messages``
  for chat, ``input`` for embeddings), which templates fill and cache keys hash;
- ``columns``: the columns a result frame gains, the last one ``error``
  (:func:`pdbatch.results.join.output_columns` reads them here);
- how an output line becomes those columns: :func:`pdbatch.lines.outputs.outcome`
  reads every kind's line into one :class:`~pdbatch.lines.outputs.Outcome`
  (answer text, finish reason, token counts, embedding, error), which
  :mod:`pdbatch.results` turns into typed columns.

Adding a kind today means: a :class:`KindSpec` here, its url in
``models.URLS``, its fields in ``Outcome`` and ``outputs.outcome``, its
typed columns in :mod:`pdbatch.results.rows`, its body rules in
:mod:`pdbatch.lines.params`, and what each backend's ``fetch_output`` returns
for it (OpenAI-shaped output lines, translated by the backend: see
``backends/_gemini_chat.py``). Classify's label scores are not a kind of
their own: they ride on chat lines and are read back into columns by
:mod:`pdbatch.results.classify`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models import CHAT, EMBEDDINGS, URLS, Kind

__all__ = ["KINDS", "KindSpec", "spec"]


@dataclass(frozen=True)
class KindSpec:
    """What one kind of request declares (see the module's docstring)."""

    name: Kind
    url: str
    payload: str
    columns: tuple[str, ...]


KINDS: dict[Kind, KindSpec] = {
    CHAT: KindSpec(CHAT, URLS[CHAT], "messages",
                   ("response", "finish_reason", "prompt_tokens", "completion_tokens", "error")),
    EMBEDDINGS: KindSpec(EMBEDDINGS, URLS[EMBEDDINGS], "input", ("embedding", "error")),
}


def spec(kind: Kind) -> KindSpec:
    """The declaration of ``kind`` (chat for anything not declared, as the readers have always assumed)."""
    return KINDS.get(kind, KINDS[CHAT])
