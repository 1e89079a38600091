"""A job's answers written back: OpenAI batch output lines (one per row or request line), or a table.

The writer side of :func:`pdbatch.jobs.runfile.run_requests` (and of any job's
:meth:`~pdbatch.jobs.job.BatchJob.write_output`): the answers come from the
parts' own output and cached lines (read through their public face), the
errors from the joined result.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
from .jobparts import owned

__all__ = ["Answered", "PartAnswers", "output_lines", "write", "write_table"]


@dataclass(frozen=True)
class PartAnswers:
    """What the writer needs of one part of a job: the rows it does not run, its answers, its state.

    Attributes
    ----------
    skipped : mapping of int to str
        Frame positions the part does not run (another part's rows among them).
    answers : dict of str to (dict or None, str or None)
        Each answered custom_id's answer body, or its error.
    state : str
        The part's job state (a row without an answer gets its error code from it).
    """

    skipped: Mapping[int, str]
    answers: dict[str, tuple[dict[str, Any] | None, str | None]]
    state: str

    @classmethod
    def of_job(cls, part: Any, ids: list[str]) -> PartAnswers:
        """A submitted part's (:class:`pdbatch.jobs.jobparts.JobPart`): its output and cached lines."""
        status = part.status or part.refresh()
        lines, alias = part.answer_lines(complete_only=not status.done)
        return cls(part.record.skipped, _answers(lines, alias, ids), status.state)

    @classmethod
    def of_plan(cls, part: Any, ids: list[str]) -> PartAnswers:
        """A planned part answered without a job (:class:`pdbatch.jobs.reuse.Part`): its cached lines."""
        return cls(part.plan.skipped, _answers(part.reuse.cached.values(), part.reuse.alias, ids),
                   "JOB_STATE_SUCCEEDED")


def output_lines(job_id: str, out: pd.DataFrame, ids: list[str], parts: Sequence[PartAnswers],
                 ) -> Iterator[dict[str, Any]]:
    """Each row of a job's result ``out`` as an OpenAI batch output object, in frame order.

    ``ids`` are the rows' custom_ids as sent, ``parts`` the job's parts (the
    head last): a row's answer body is the one of the part that runs it, its
    error code from that part's state.
    """
    errors = out["error"].to_numpy(dtype=object)
    owner = np.full(len(out), len(parts) - 1)
    for i, part in enumerate(parts):
        owner[owned(part.skipped, len(out))] = i
    for p, cid in enumerate(ids):
        found = parts[owner[p]].answers.get(cid)
        error = errors[p]
        if error is None or error is pd.NA or (isinstance(error, float) and error != error):
            body = found[0] if found else None
            if body is not None:
                yield output_line(job_id, cid, body)
                continue
            error = "no answer was kept for this line"
        code = _code(str(error), found, parts[owner[p]].state)
        yield output_line(job_id, cid, error=(code, str(error).removeprefix(INVALID_PREFIX)))


def _answers(lines: Iterable[bytes], alias: np.ndarray | None, ids: list[str],
             ) -> dict[str, tuple[dict[str, Any] | None, str | None]]:
    """Each answered custom_id's (body, error) among output ``lines``; a success beats a failure."""
    out: dict[str, tuple[dict[str, Any] | None, str | None]] = {}
    for raw in lines:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        cid = obj.get("custom_id") if isinstance(obj, dict) else None
        if isinstance(cid, str) and (cid not in out or out[cid][0] is None):
            out[cid] = answer(obj)
    if alias is not None:  # rows identical to an earlier one take its answer
        for p in np.flatnonzero(alias >= 0).tolist():
            first = out.get(ids[int(alias[p])])
            if first is not None:
                out[ids[p]] = first
    return out


def write(path: str | os.PathLike[str], result: Callable[[], pd.DataFrame],
          lines: Callable[[], Iterable[dict[str, Any]]], *, requests: bool = True) -> int:
    """Write a job's answers to ``path`` by its extension: ``lines`` as batch output JSONL, or the ``result`` table.

    ``requests``: the result is a request file's (its ``method``, ``url`` and
    ``body`` columns are left out of a table); a frame's result keeps every column.
    """
    if Path(path).suffix.lower() in (".jsonl", ".ndjson"):
        return write_output(path, lines())
    out = result()
    write_table(out, path, requests=requests)
    return len(out)


class Answered:
    """A request file answered without a job (every line from the cache, or none to answer): a job's writer face.

    What ``pdbatch run requests.jsonl`` writes from, as from a job
    (:meth:`result`, :meth:`output_lines`, :meth:`write_output`); it has no
    id, since nothing was submitted and no job folder was made.
    """

    id = None

    def __init__(self, out: pd.DataFrame, ids: list[str], parts: Sequence[PartAnswers]) -> None:
        self._out = out
        self._ids = ids
        self._parts = list(parts)

    def result(self, partial: bool = False) -> pd.DataFrame:
        """The request frame with each line's answer, as :func:`pdbatch.run_requests` returned it."""
        return self._out

    def output_lines(self, partial: bool = False) -> Iterator[dict[str, Any]]:
        """Each line's answer as an OpenAI batch output object, in file order."""
        return output_lines("", self._out, self._ids, self._parts) if self._parts else iter(())

    def write_output(self, path: str | os.PathLike[str], partial: bool = False) -> int:
        """As :meth:`pdbatch.BatchJob.write_output`."""
        return write(path, self.result, self.output_lines)


def _code(error: str, found: tuple[Any, str | None] | None, state: str) -> str:
    if error.startswith(INVALID_PREFIX):
        return INVALID
    if error.startswith(OVER_WINDOW):
        return "context_length_exceeded"  # OpenAI's code for the same refusal
    if found is not None:
        return FAILED
    return {"JOB_STATE_CANCELLED": CANCELLED, "JOB_STATE_EXPIRED": EXPIRED,
            "JOB_STATE_FAILED": JOB_FAILED}.get(state, NO_OUTPUT)


def write_table(out: pd.DataFrame, path: str | os.PathLike[str], *, requests: bool = True) -> None:
    """Write a result frame by ``path``'s extension; a request file's (``requests``) without its request columns.

    ``.jsonl`` here is an empty batch output file (a result with lines is
    written by :func:`write`, from the answers themselves). A frame's result
    keeps every column: a ``body`` or ``url`` column there is the user's data.
    """
    table = out.drop(columns=[c for c in ("method", "url", "body") if c in out.columns]) if requests else out.copy()
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        if len(table):
            raise ValueError("a batch output file is written from the job's answers: filewriter.write")
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

