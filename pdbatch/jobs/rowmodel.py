"""A frame's rows whose own messages the call's model cannot take: each is that row's error, the others run.

A ``messages=`` call gives each row its own message list. What every row
shares (the body parameters) is asked about once and a refusal refuses the
call (:func:`pdbatch.jobs.prepare.plan`): nothing could run. What one row's
messages hold (a ``tool`` role, an image part, a list of system messages
only, on a Gemini model) is that row's: as a request file's line
(:func:`pdbatch.builders.linecheck.model_problem`), the row is marked failed
with ``error="invalid request: ..."`` and not sent, and the others run (a
failed row is data). :func:`refuse_rows` applies it, like
:func:`pdbatch.jobs.fit.hold_back`:

* some rows refused: they are not sent, a warning counts them, ``preview``
  counts them as skipped;
* every row refused, for a call about to run: nothing would run, so the call
  is refused (most likely the model is not the one for these messages).

Rows are looked at only when the call has ``messages=`` and the backend says
its model's check reads messages (:meth:`pdbatch.backends.Backend.checks_messages`):
a template call, or a backend that takes any messages, costs nothing per row.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ..builders.requestfile import INVALID_PREFIX
from ..builders.requests import CHUNK_ROWS
from ..errors import InputError, PdbatchWarning
from .fit import first_ids

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..builders.requests import RequestPlan

__all__ = ["refuse_rows", "refused_rows"]

P = TypeVar("P", bound="RequestPlan")


def refused_rows(plan: RequestPlan, backend: Backend, chunk_rows: int = CHUNK_ROWS) -> dict[int, str]:
    """The rows of ``plan`` whose own messages its model cannot take, by frame position, each with its error.

    Parameters
    ----------
    plan : RequestPlan
        A frame's call, checked (its shared parameters passed).
    backend : Backend
        Asked :meth:`~pdbatch.backends.Backend.unsupported_for_model` per row
        with ``{"messages": <the row's list>}``, when it :meth:`~pdbatch.backends.Backend.checks_messages`.
    chunk_rows : int
        Rows read at a time (a chunk's message lists are checked as the request writer checks them).

    Returns
    -------
    dict of int to str
        Empty for a template call and for a backend whose model takes any messages.
    """
    if plan.messages is None or not backend.checks_messages(plan.model, plan.kind):
        return {}
    out: dict[int, str] = {}
    positions = plan.positions
    for start in range(0, len(positions), chunk_rows):
        pos = positions[start : start + chunk_rows]
        for p, cid, messages in zip(pos.tolist(), plan.ids_at(pos), plan.payloads(pos), strict=True):
            # the row's own list, as the user wrote it: a refusal's messages[i] is an index into that cell
            refused = backend.unsupported_for_model(plan.model, plan.kind, {"messages": messages})
            if refused:
                why = "; ".join(refused.values())
                out[p] = (f"{INVALID_PREFIX}column {plan.messages!r}, row {cid!r}: {plan.model} cannot take these "
                          f"messages: {why}. Change this row's messages, or run the call on a model that takes "
                          f"them (model=)")
    return out


def refuse_rows(plan: P, backend: Backend, *, run: bool) -> P:
    """``plan`` with the rows :func:`refused_rows` finds marked failed and not sent (see the module's notes).

    Parameters
    ----------
    plan : RequestPlan
    backend : Backend
    run : bool
        A call about to run (not a preview): warn about the refused rows, and
        refuse the call when no row is left to send.

    Raises
    ------
    InputError
        ``run`` and every row that would be sent is refused: nothing would run.
    """
    refused = refused_rows(plan, backend)
    if not refused:
        return plan
    if run:
        ids = plan.ids_at(np.array(sorted(refused), dtype=np.int64))
        first = first_ids(ids)
        sample = refused[min(refused)][len(INVALID_PREFIX):]
        if len(refused) == len(plan.positions):
            raise InputError(f"every row ({len(refused)}: {first}) has messages {plan.model} cannot take; nothing "
                             f"was submitted. The first: {sample}")
        warnings.warn(f"{len(refused)} row(s) ({first}) have messages {plan.model} cannot take and are not sent; "
                      f"their 'error' says why, e.g. {sample}", PdbatchWarning, stacklevel=5)
    return replace(plan, skipped={**plan.skipped, **refused})
