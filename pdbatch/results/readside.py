"""The read side, in one place: output lines -> joined frame -> duplicates fanned out -> the call's columns.

A job's result (:meth:`pdbatch.jobs.job.BatchJob.result`, which a request file's
answers are also read through), a call answered wholly from the cache
(:func:`pdbatch.jobs.prepare.answered`) and a call with nothing to send all end here,
so that a step added to the read side is added once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..builders.requests import RequestPlan
from ..call import Call
from ..lines.structured import as_schema
from ..models import Kind
from . import classify
from .join import MISSING, join_results, output_columns
from .parse import parse_lines

__all__ = ["assemble", "empty_result", "fan_out", "finish_result", "merge_retried"]


def assemble(frame: pd.DataFrame, parsed: pd.DataFrame, call: Call, *, kind: Kind, custom_ids: np.ndarray | None,
             skipped: dict[int, str], overwrite: bool, alias: np.ndarray | None = None,
             missing_error: str | None = None) -> pd.DataFrame:
    """Join parsed output lines to ``frame``, give repeated rows their first row's answer, add the call's columns.

    Parameters
    ----------
    frame : pandas.DataFrame
        The frame the call was planned from.
    parsed : pandas.DataFrame
        From :func:`pdbatch.results.parse.parse_files` (the job's answers and the cached ones).
    call : Call
        Decides the columns added last (``schema=`` fields, classify's labels).
    kind, custom_ids, skipped, overwrite, missing_error
        As in :func:`pdbatch.results.join.join_results`.
    alias : numpy.ndarray, optional
        For each row, the row whose answer it takes, or -1 (:class:`pdbatch.jobs.reuse.Reuse`).

    Returns
    -------
    pandas.DataFrame
    """
    out = join_results(frame, parsed, kind=kind, custom_ids=custom_ids, skipped=skipped, overwrite=overwrite,
                       missing_error=MISSING if missing_error is None else missing_error)
    if alias is not None:
        out = fan_out(out, alias, list(output_columns(kind)))
    return finish_result(out, call)


def finish_result(out: pd.DataFrame, call: Call) -> pd.DataFrame:
    """A joined result with the columns the call asked for: parsed ``schema=`` fields, or classify's labels."""
    if call.classify is not None:
        return classify.add_columns(out, classify.LabelSpec.from_record(call.classify))
    if call.schema:
        return as_schema(call.schema).add_columns(out)
    return out


def empty_result(frame: pd.DataFrame, plan: RequestPlan, overwrite: bool) -> pd.DataFrame:
    """The result of a call with nothing to send (empty frame, or every row skipped): no job is started."""
    return join_results(
        frame,
        parse_lines([]),
        kind=plan.kind,
        custom_ids=plan.custom_ids,
        skipped=plan.skipped,
        sent=np.zeros(len(frame), dtype=bool),
        overwrite=overwrite,
    )


def fan_out(result: pd.DataFrame, alias: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """Copy each alias row's answer columns from the row it duplicates (array takes, no loop)."""
    if not (alias >= 0).any():
        return result
    take = np.where(alias >= 0, alias, np.arange(len(alias)))
    for c in columns:
        if c in result.columns:
            values = result[c].array.take(take)
            result[c] = values
    return result


def merge_retried(result: pd.DataFrame, again: pd.DataFrame, failed: np.ndarray, columns: list[str],
                  job_id: str) -> pd.DataFrame:
    """``result`` with the rows at ``failed`` (a mask) taking ``again``'s answers in ``columns``.

    The one merge of a retry (a frame's and a request file's): rows that
    succeeded keep their answers; the frame remembers the new job and the one
    it was retried from (``attrs``).
    """
    merged = result.copy()
    pos = np.flatnonzero(failed)
    for c in columns:
        col = merged[c].copy()
        col.iloc[pos] = again[c].to_numpy()
        merged[c] = col
    merged.attrs["pdbatch_job"] = again.attrs.get("pdbatch_job", job_id)
    merged.attrs["pdbatch_retried_from"] = job_id
    return merged
