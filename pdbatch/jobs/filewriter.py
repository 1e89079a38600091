"""A request file's answers written back: OpenAI batch output lines (one per request line), or a table.

The writer side of :func:`pdbatch.jobs.runfile.run_requests`: the answers come from
the jobs' own output and cached lines (read through the jobs' public face),
the errors from the joined result.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..builders.requestfile import INVALID_PREFIX
from ..errors import ConfigError
from ..lines.batchoutput import (
    CANCELLED,
    EXPIRED,
    FAILED,
    INVALID,
    JOB_FAILED,
    NO_OUTPUT,
    answer,
    output_line,
    write_output,
)
from .fit import OVER_WINDOW

__all__ = ["output_lines", "write_table"]


def output_lines(head_id: str, out: pd.DataFrame, members: Sequence[Any], owner: np.ndarray,
                 ) -> Iterator[dict[str, Any]]:
    """Each line of a request file's result ``out`` as an OpenAI batch output object, in file order.

    ``members`` are the jobs that ran the file (one per kind), ``owner`` the
    index of the member that ran each line: its answer body is read from
    that job's output (or cache) lines, its error code from its state.
    """
    errors = out["error"].to_numpy(dtype=object)
    ids = out["custom_id"].tolist()
    answers = [_answers(m) for m in members]
    states = [m.status.state for m in members]
    for p, cid in enumerate(ids):
        found = answers[owner[p]].get(cid)
        error = errors[p]
        if error is None or error is pd.NA or (isinstance(error, float) and error != error):
            body = found[0] if found else None
            if body is not None:
                yield output_line(head_id, cid, body)
                continue
            error = "no answer was kept for this line"
        code = _code(str(error), found, states[owner[p]])
        yield output_line(head_id, cid, error=(code, str(error).removeprefix(INVALID_PREFIX)))


def _answers(member: Any) -> dict[str, tuple[dict[str, Any] | None, str | None]]:
    """Each answered custom_id's (body, error), from the part's output lines; a success beats a failure."""
    done = member.status.done
    out: dict[str, tuple[dict[str, Any] | None, str | None]] = {}
    paths = member.output_files() if member.ids else []
    saved = member.reuse_state(paths)  # read (and checked) by the one reader of a job's reuse state
    for raw in saved.answer_lines(paths, complete_only=not done):  # its output files', then the cache's
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        cid = obj.get("custom_id") if isinstance(obj, dict) else None
        if isinstance(cid, str) and (cid not in out or out[cid][0] is None):
            out[cid] = answer(obj)
    alias = saved.alias
    if alias is not None:  # lines identical to an earlier one take its answer
        frame_ids = member.frame()["custom_id"].tolist()
        for p in np.flatnonzero(alias >= 0).tolist():
            first = out.get(frame_ids[int(alias[p])])
            if first is not None:
                out[frame_ids[p]] = first
    return out


def _code(error: str, found: tuple[Any, str | None] | None, state: str) -> str:
    if error.startswith(INVALID_PREFIX):
        return INVALID
    if error.startswith(OVER_WINDOW):
        return "context_length_exceeded"  # OpenAI's code for the same refusal
    if found is not None:
        return FAILED
    return {"JOB_STATE_CANCELLED": CANCELLED, "JOB_STATE_EXPIRED": EXPIRED,
            "JOB_STATE_FAILED": JOB_FAILED}.get(state, NO_OUTPUT)


def write_table(out: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a result frame's answers by ``path``'s extension, without the request columns but ``custom_id``.

    ``.jsonl`` here is an empty batch output file (a result with lines is
    written by :meth:`pdbatch.jobs.runfile.RequestsJob.write_output`, from the answers themselves).
    """
    table = out.drop(columns=[c for c in ("method", "url", "body") if c in out.columns])
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        if len(table):
            raise ValueError("a batch output file is written from the job's answers: RequestsJob.write_output")
        write_output(path, [])
        return
    if "embedding" in table.columns and suffix != ".parquet":
        table["embedding"] = table["embedding"].map(lambda v: None if v is None else np.asarray(v).tolist())
    if suffix in (".parquet", ".pq"):
        table.to_parquet(path, index=False)
    elif suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        raise ConfigError(f"output {str(path)!r}: use a .jsonl, .parquet or .csv file")

