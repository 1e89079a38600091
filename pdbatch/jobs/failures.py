"""Which row errors are sure to come back: ``retry_failed`` does not send those rows again unchanged.

A row that failed because the service was busy, timed out or broke may
succeed when sent again. A row whose request itself cannot be answered
(a prompt longer than the model's context window, a request the engine
refuses as invalid) fails the same way every time it is sent unchanged:
sending it again costs a job, and on Vertex money, for nothing. Only errors
that say so in their text are counted here; anything else is retried.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from .fit import OVER_WINDOW, first_ids

__all__ = ["SureToFail", "hold_back_sure_failures", "summary", "sure_to_fail"]

_LARGER = ("send it to another model or backend with a larger context window (retry_failed(backend=...)), "
           "or shorten the prompt")


class SureToFail(NamedTuple):
    """Why a row would fail again, and what would change that."""

    reason: str
    hint: str


_KNOWN: tuple[tuple[re.Pattern[str], SureToFail], ...] = (
    # pdbatch.jobs.fit: held back before sending, and the local engine's own check
    (re.compile("^" + re.escape(OVER_WINDOW)), SureToFail("the prompt does not fit the context window", _LARGER)),
    (re.compile(r"longer than the context window"),
     SureToFail("the prompt does not fit the context window", _LARGER)),
    # OpenAI-compatible servers (vLLM, OpenAI): "This model's maximum context length is 4096 tokens. However, ..."
    (re.compile(r"maximum context length", re.IGNORECASE),
     SureToFail("the prompt does not fit the context window", _LARGER)),
    # Gemini: "The input token count (N) exceeds the maximum number of tokens allowed (M)."
    (re.compile(r"input token count .* exceeds the maximum number of tokens", re.IGNORECASE),
     SureToFail("the prompt does not fit the context window", _LARGER)),
    # the local engine and request files refuse a malformed request before it runs
    (re.compile(r"^invalid request: "),
     SureToFail("the request is invalid", "fix what the error names, then send the corrected rows")),
)


def sure_to_fail(error: object) -> SureToFail | None:
    """Why a row with this ``error`` would fail again if sent unchanged; None when it may succeed.

    Parameters
    ----------
    error : object
        A value of a result's ``error`` column (missing values give None).

    Returns
    -------
    SureToFail or None
    """
    if not isinstance(error, str):
        return None
    for pattern, why in _KNOWN:
        if pattern.search(error):
            return why
    return None


def summary(kept: Iterable[tuple[str, SureToFail]]) -> str:
    """One sentence per reason, naming the first rows: what ``retry_failed`` says about the rows it kept."""
    by_reason: dict[SureToFail, list[str]] = {}
    for cid, why in kept:
        by_reason.setdefault(why, []).append(cid)
    parts = []
    for why, ids in by_reason.items():
        first = first_ids(ids)
        parts.append(f"{len(ids)} row(s) ({first}) were not sent again: {why.reason}, so they would fail the "
                     f"same way; {why.hint}")
    return ". ".join(parts) + ". An override (e.g. max_tokens=...) or backend= sends them again."


def hold_back_sure_failures(errors: Sequence[object], names: Sequence[str], failed: np.ndarray) -> np.ndarray:
    """``failed`` without the rows whose error is sure to come back, and a warning that names them.

    Parameters
    ----------
    errors : sequence
        Each row's ``error``.
    names : sequence of str
        How the warning names each row (its custom_id or index).
    failed : numpy.ndarray
        The rows ``retry_failed`` would send again (bool, one per row).

    Returns
    -------
    numpy.ndarray
        ``failed`` with the rows sure to fail again set to False.
    """
    kept = [(i, why) for i in np.flatnonzero(failed).tolist() if (why := sure_to_fail(errors[i])) is not None]
    if not kept:
        return failed
    warnings.warn(summary((names[i], why) for i, why in kept), UserWarning, stacklevel=4)
    out = failed.copy()
    out[[i for i, _ in kept]] = False
    return out
