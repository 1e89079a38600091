"""Parsed output lines -> the user's frame with the answers, joined by ``custom_id``.

The join never trusts position in the output: it maps each line's
``custom_id`` to a frame position, with integer arithmetic when ids are the
default ``row-<n>``, and moves whole columns with Arrow ``take``. Several
lines for one row: a success beats a failure, a later line an earlier one;
two successes with different answers fail the row, naming both.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..builders.requests import POSITIONAL_PREFIX
from ..errors import InputError
from ..lines.kinds import CHAT, EMBEDDINGS, KINDS, Kind, spec
from .rows import DTYPES, STRING, typed

__all__ = ["CHAT_COLUMNS", "EMBEDDING_COLUMNS", "MISSING", "join_results", "output_columns", "positions_of"]

CHAT_COLUMNS = KINDS[CHAT].columns
EMBEDDING_COLUMNS = KINDS[EMBEDDINGS].columns
MISSING = "missing: the job returned no output line for this row"


def output_columns(kind: Kind) -> tuple[str, ...]:
    """The columns a result frame gains for a job of ``kind``."""
    return spec(kind).columns  # declared with the kind (pdbatch.lines.kinds)


def positions_of(ids: pd.Series, custom_ids: np.ndarray | None, n_rows: int) -> np.ndarray:
    """Frame position for each output id (-1 where it matches no row).

    Default ids are ``row-<n>`` exactly as written (no sign, no leading
    zero): the position is the number, parsed as a column. Other ids are
    looked up in a hash table of the frame's ids.
    """
    arr = _arrow(ids)
    if custom_ids is not None:
        found = pc.index_in(arr, value_set=pa.array(custom_ids, type=pa.large_string()))
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    starts = pc.starts_with(arr, POSITIONAL_PREFIX).fill_null(False)
    digits = pc.if_else(starts, pc.utf8_slice_codeunits(arr, len(POSITIONAL_PREFIX)), "-1")
    try:
        num = pc.cast(digits, pa.int64())
    except pa.ArrowInvalid:  # something after the prefix is not a number: keep those out, one by one
        return np.array([_position(v, n_rows) for v in arr.to_pylist()], dtype=np.int64)
    canonical = pc.and_(starts, pc.equal(pc.cast(num, pa.large_string()), digits))
    pos = np.where(canonical.to_numpy(zero_copy_only=False), num.to_numpy(), -1)
    pos[pos >= n_rows] = -1
    return pos


def _position(cid: str | None, n_rows: int) -> int:
    if cid is None or not cid.startswith(POSITIONAL_PREFIX):
        return -1
    digits = cid[len(POSITIONAL_PREFIX) :]
    if not digits.isascii() or not digits.isdigit() or str(int(digits)) != digits:
        return -1
    return int(digits) if int(digits) < n_rows else -1


def _arrow(values: pd.Series) -> pa.Array:
    """A column as one Arrow array (zero-copy for Arrow-backed and masked columns)."""
    arr = pa.array(values.array) if values.dtype != object else pa.array(values.to_numpy(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_string(arr.type) or pa.types.is_null(arr.type):
        arr = arr.cast(pa.large_string())
    return arr


def _winners(pos: np.ndarray, success: np.ndarray, n_rows: int) -> np.ndarray:
    """For each frame row, the output line that answers it (-1: none).

    Several lines for one row: a success beats a failure, a later line beats
    an earlier one.
    """
    src = np.full(n_rows, -1, dtype=np.int64)
    lines = np.flatnonzero(pos >= 0)
    if np.bincount(pos[lines], minlength=n_rows).max(initial=0) > 1:
        order = np.lexsort((lines, success[lines], pos[lines]))
        lines = lines[order]
        last = np.ones(len(lines), dtype=bool)
        last[:-1] = pos[lines][1:] != pos[lines][:-1]
        lines = lines[last]
    src[pos[lines]] = lines
    return src


def join_results(
    frame: pd.DataFrame,
    parsed: pd.DataFrame,
    *,
    kind: Kind,
    custom_ids: np.ndarray | None = None,
    skipped: dict[int, str] | None = None,
    sent: np.ndarray | None = None,
    overwrite: bool = False,
    missing_error: str = MISSING,
) -> pd.DataFrame:
    """Join parsed output lines to ``frame`` by custom_id.

    Parameters
    ----------
    frame : pandas.DataFrame
        The user's frame; its columns, index and order are kept.
    parsed : pandas.DataFrame
        Output of :func:`parse_bytes` or :func:`parse_lines` (several lines
        per id are fine: a success beats a failure, later beats earlier).
    kind : str
        Which result columns to add: those the kind declares (:mod:`pdbatch.lines.kinds`).
    custom_ids : numpy.ndarray, optional
        The id of each frame row; ``None`` for the positional ``row-<n>`` ids.
    skipped : dict of int to str, optional
        Frame positions that were never sent, with their error.
    sent : numpy.ndarray of bool, optional
        Which rows were sent (default: all rows not in ``skipped``); a sent row
        with no output line gets ``missing_error``.
    overwrite : bool
        Replace result columns the frame already has.
    missing_error : str
        The error for sent rows that have no output line.

    Returns
    -------
    pandas.DataFrame
        A new frame: the user's columns, then the result columns
        (``"string"`` text, ``"Int64"`` token counts, float32 arrays for
        embeddings: the dtypes the kind declares).
    """
    n = len(frame)
    cols = output_columns(kind)
    clash = [c for c in cols if c in frame.columns]
    if clash and not overwrite:
        raise InputError(
            f"the frame already has column(s) {clash}, which the result would overwrite; "
            f"rename them or pass overwrite=True"
        )
    parsed = typed(parsed)
    pos = positions_of(parsed["custom_id"], custom_ids, n)
    if (pos < 0).any():
        stray = parsed["custom_id"][pos < 0]
        warnings.warn(
            f"{len(pd.unique(stray.to_numpy(dtype=object, na_value=None)))} output line(s) have a custom_id "
            f"that matches no row (e.g. {stray.iloc[0] if pd.notna(stray.iloc[0]) else None!r}); they were ignored",
            RuntimeWarning,
            stacklevel=2,
        )
    success = parsed["error"].isna().to_numpy()
    src = _winners(pos, success, n)
    conflicts = _conflicts(pos, success, parsed, kind)
    answered = src >= 0
    take = pa.array(src, mask=~answered)

    error = _arrow(parsed["error"]).take(take)
    if not answered.all():
        if sent is None:
            sent = np.ones(n, dtype=bool)
            if skipped:
                sent[list(skipped)] = False
        fill = np.full(n, None, dtype=object)
        fill[sent & ~answered] = missing_error
        for p, msg in (skipped or {}).items():
            fill[p] = msg
        error = pc.if_else(pa.array(answered), error, pa.array(fill, type=pa.large_string()))

    out = frame.drop(columns=clash) if clash else frame.copy()
    for column in spec(kind).answer:  # the columns and dtypes the kind declares (pdbatch.lines.kinds)
        dtype = DTYPES[column.dtype][1]
        if dtype is None:  # an embedding: one float32 array or None per row
            emb = np.full(n, None, dtype=object)
            emb[answered] = parsed[column.name].to_numpy(dtype=object)[src[answered]]
            out[column.name] = list(emb)
        else:
            out[column.name] = dtype.__from_arrow__(_arrow(parsed[column.name]).take(take))
    out["error"] = STRING.__from_arrow__(error)
    if conflicts:  # rare: a handful of rows, set one by one
        rows = list(conflicts)
        for c in cols[:-1]:
            out.iloc[rows, out.columns.get_loc(c)] = None
        out.iloc[rows, out.columns.get_loc("error")] = list(conflicts.values())
    return out


def _conflicts(pos: np.ndarray, success: np.ndarray, parsed: pd.DataFrame, kind: Kind) -> dict[int, str]:
    """Rows with two successful output lines that answer differently: frame position -> the row's error.

    Which one is right cannot be told (a later line is not a better one), so
    neither is used: the row fails, naming both, and ``retry_failed`` asks again.
    """
    ok = np.flatnonzero((pos >= 0) & success)
    order = ok[np.argsort(pos[ok], kind="stable")]
    at = pos[order]
    starts = np.flatnonzero(np.r_[True, at[1:] != at[:-1]]) if len(at) else np.empty(0, dtype=np.int64)
    ends = np.r_[starts[1:], len(at)]
    compared = spec(kind).answer_columns  # what tells two answers apart (pdbatch.lines.kinds)
    answers = parsed[compared[0]].to_numpy(dtype=object)
    if len(compared) > 1:  # a declared kind's several columns: one tuple per line
        answers = np.empty(len(parsed), dtype=object)
        for i, values in enumerate(zip(*(parsed[c].to_numpy(dtype=object) for c in compared), strict=True)):
            answers[i] = values
    found: dict[int, str] = {}
    for start, end in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
        lines = order[start:end]
        distinct = list({_answer_key(answers[i]): answers[i] for i in lines}.values())
        if len(distinct) > 1:
            first, second = (_shown(v) for v in distinct[:2])
            found[int(at[start])] = (
                f"the output has {len(distinct)} different answers for custom_id {parsed['custom_id'].iloc[lines[0]]!r}"
                f", e.g. {first} and {second}; neither is used (retry_failed() asks again)")
    return found


def _answer_key(value: object) -> object:
    return np.asarray(value, dtype=np.float64).tobytes() if isinstance(value, list | np.ndarray) else value


def _shown(value: object) -> str:
    text = repr(value if not isinstance(value, np.ndarray) else value.tolist())
    return text if len(text) <= 80 else text[:77] + "..."
