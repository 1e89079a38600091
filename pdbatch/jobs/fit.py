"""Rows that cannot fit the model's context window: found once, for ``preview`` and for the run alike.

A chat row needs its prompt plus room for its answer (``max_tokens``, or at
least one token when there is no cap) inside the window the backend gives a
request (:meth:`pdbatch.backends.Backend.context_window`). :func:`over_window`
finds the rows that do not fit, each with the reason ``preview`` shows and the
row's ``error`` carries. :func:`hold_back` applies it to a call about to run:

* some rows over: they are marked failed without being sent (their
  ``error`` is the reason, like rows skipped for nulls), the others run, and a
  warning counts them. A long document in a large frame should not stop the
  answers for all the others, and a failed row is data the user can filter,
  fix and retry (:func:`pdbatch.jobs.failures.sure_to_fail` keeps ``retry_failed``
  from sending it again unchanged);
* every row over (``max_tokens=100000`` on a 2048-token window): nothing
  would run, so the call is refused as a setting mistake, before anything is
  submitted, with the count, the first custom_ids and the fix.

Embedding engines cut an input to their window themselves, so only chat rows
are checked.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..errors import ConfigError
from ..models import CHAT

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..builders.requests import RequestPlan

__all__ = ["OVER_WINDOW", "first_ids", "hold_back", "over_window"]

P = TypeVar("P", bound="RequestPlan")

#: How the error of a row that was not sent because it cannot fit begins.
OVER_WINDOW = "not sent: over the context window"
#: Tokens a row's prompt may have beyond one per UTF-8 byte of its text and
#: its template's own tokens (a leading-space piece per message, merges that
#: differ at the seams): rows under that bound surely fit and are not tokenised.
_SLACK_PER_MESSAGE = 4
_SLACK = 16


def answer_cap(body: dict[str, Any]) -> int | None:
    """A request body's cap on answer tokens (``max_completion_tokens`` or ``max_tokens``; None: none)."""
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    return int(cap) if isinstance(cap, int) and not isinstance(cap, bool) else None


def reason(prompt: int, cap: int | None, window: int, where: str) -> str:
    """The error of a row whose ``prompt`` tokens plus ``cap`` do not fit ``window``."""
    room = window - prompt
    if room <= 0:
        return (f"{OVER_WINDOW}: its prompt is {prompt} tokens, the window of {where} is {window}, with no "
                f"room for an answer. Shorten the prompt, or use another model or backend with a larger "
                f"context window")
    return (f"{OVER_WINDOW}: prompt {prompt} + max_tokens={cap} tokens > the window of {where}, {window} tokens. "
            f"Lower max_tokens to {room} or less, shorten the prompt, or use another model or backend "
            f"with a larger context window")


def over_window(plan: RequestPlan, backend: Backend, counts: list[int] | None = None) -> dict[int, str]:
    """The rows of ``plan`` that do not fit the context window, by frame position, each with why.

    Parameters
    ----------
    plan : RequestPlan
    backend : Backend
        Its :meth:`~pdbatch.backends.Backend.context_window` and token counts.
    counts : list of int, optional
        Prompt tokens of every row in ``plan.positions`` (``preview`` has them);
        otherwise only the rows that may be over are counted.

    Returns
    -------
    dict of int to str
        Empty when the backend knows no window, for embeddings, and when all fits.
    """
    found = _find(plan, backend, counts)
    return {p: reason(t, cap, window, where) for p, t, cap, window, where in found}


def _find(plan: RequestPlan, backend: Backend,
          counts: list[int] | None) -> list[tuple[int, int, int | None, int, str]]:
    """Each row over the window: (frame position, prompt tokens, its max_tokens, the window, backend:model)."""
    window = backend.context_window(plan.model) if plan.kind == CHAT else None
    positions = plan.positions
    if not window or not len(positions):
        return []
    bodies = [plan.body(p) for p in plan.payloads(positions)]
    # each line's own cap: a request file's lines may differ (a frame call's share the call's)
    caps = [answer_cap(b) for b in bodies]
    need = np.array([c if c is not None else 1 for c in caps], dtype=np.int64)
    if counts is None:
        chosen, counts = _count_candidates(plan, backend, bodies, window - need)
        if counts is None:
            return []
    else:
        chosen = np.arange(len(positions))
    tokens = np.asarray(counts, dtype=np.int64)
    # a count of -1: the chat template rejects the row, which then fails on its own
    over = (tokens >= 0) & (tokens + need[chosen] > window)
    where = f"{backend.name}:{plan.model}"
    return [(int(positions[i]), t, caps[i], window, where)
            for i, t in zip(chosen[over].tolist(), tokens[over].tolist(), strict=True)]


def _count_candidates(plan: RequestPlan, backend: Backend, bodies: list[dict[str, Any]],
                      room: np.ndarray) -> tuple[np.ndarray, list[int] | None]:
    """Which of ``bodies`` may not leave their ``room`` tokens, and their prompt tokens (None: cannot count)."""
    shapes = [_shape(b) for b in bodies]
    distinct = list(dict.fromkeys(shapes))
    # each chat template's own tokens, once per shape of message list (a template call has one)
    try:
        empty = backend.count_tokens(plan.model, plan.kind, [_emptied(bodies[shapes.index(s)]) for s in distinct])
    except (ValueError, RuntimeError, OSError):
        # weights that do not load: nothing to count with, and the job says what is wrong with them
        return np.arange(len(bodies)), None
    if empty is None:
        return np.arange(len(bodies)), None
    template = dict(zip(distinct, empty, strict=True))
    bound = np.array([_upper_bound(b) + max(template[s], 0) for b, s in zip(bodies, shapes, strict=True)],
                     dtype=np.int64)
    maybe = np.flatnonzero(bound > room)
    if not len(maybe):
        return maybe, []
    return maybe, backend.count_tokens(plan.model, plan.kind, [bodies[i] for i in maybe.tolist()])


def _shape(body: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(m.get("role") if isinstance(m, dict) else None for m in _messages(body))


def _messages(body: dict[str, Any]) -> list[Any]:
    msgs = body.get("messages")
    return msgs if isinstance(msgs, list) else []


def _upper_bound(body: dict[str, Any]) -> int:
    """Tokens the message texts can take at most beyond the template's: one per UTF-8 byte, plus slack."""
    msgs = _messages(body)
    text = sum(len(str(m.get("content", "")).encode()) for m in msgs if isinstance(m, dict))
    return text + _SLACK_PER_MESSAGE * len(msgs) + _SLACK


def _emptied(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with every message's text removed: what its chat template alone costs."""
    return {**body, "messages": [{**m, "content": ""} if isinstance(m, dict) else m for m in _messages(body)]}


def first_ids(ids: Sequence[str]) -> str:
    """The first five custom_ids, and "..." when there are more: how a warning or an error names its rows."""
    return ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")


def hold_back(plan: P, backend: Backend) -> P:
    """``plan`` with the rows that cannot fit marked failed and not sent (see the module's notes).

    Raises
    ------
    ConfigError
        Every row that would be sent is over the window: nothing would run.
    """
    found = _find(plan, backend, None)
    if not found:
        return plan
    over = {p: reason(t, cap, window, where) for p, t, cap, window, where in found}
    ids = plan.ids_at(np.array(sorted(over)))
    first = first_ids(ids)
    # the longest prompt: the fix it needs is one that fits every row
    sample = reason(*max(found, key=lambda f: f[1])[1:])[len(OVER_WINDOW) + 2:]
    if len(over) == len(plan.positions):
        raise ConfigError(f"every row ({len(over)}: {first}) is over the context window; nothing was submitted. "
                          f"The longest: {sample}. preview(...) shows each row's prompt tokens.")
    warnings.warn(f"{len(over)} row(s) ({first}) are over the context window and are not sent; their 'error' "
                  f"says why, e.g. {sample}", UserWarning, stacklevel=4)
    return replace(plan, skipped={**plan.skipped, **over})
