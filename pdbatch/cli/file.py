"""The command line for OpenAI batch request files: ``pdbatch run|submit requests.jsonl``, ``pdbatch results``.

A ``.jsonl`` input whose every line has ``custom_id`` and ``body`` is a
request file and runs as it is (:func:`pdbatch.run_requests`); ``--requests``
forces that reading and ``--rows`` the reading as data rows. The answers go
out as OpenAI's batch output format (``.jsonl``, or stdout without ``-o``) or
as a table (``.parquet``, ``.csv``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from ..builders.requestfile import sniff_file
from ..errors import ConfigError
from ..jobs.filewriter import Answered
from ..jobs.job import BatchJob
from ..jobs.runfile import run_file, run_requests

__all__ = ["add_input", "is_request_file", "run", "submit", "write_answers"]

#: Options of a frame call that a request file's lines carry themselves, by their attribute.
FRAME_ONLY = {"prompt": "--prompt", "messages": "--messages", "system": "--system", "embed": "--embed",
              "custom_id": "--custom-id", "max_tokens": "--max-tokens", "temperature": "--temperature",
              "seed": "--seed", "param": "--param", "overwrite": "--overwrite", "schema": "--schema"}


def add_input(p: argparse.ArgumentParser) -> None:
    """The input argument of ``pdbatch run|submit``, and how to read it."""
    p.add_argument("input", help="a .csv, .parquet, .jsonl or .json file, one request per row; or an OpenAI "
                   "batch request file (.jsonl, every line with custom_id and body), run as it is")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--requests", action="store_true", help="read the input as request lines (auto-detected)")
    how.add_argument("--rows", action="store_true", help="read a .jsonl input as data rows, not request lines")


def is_request_file(args: argparse.Namespace, check: bool = True) -> bool:
    """Whether ``pdbatch run|submit`` reads its input as request lines.

    Raises
    ------
    ConfigError
        (with ``check``) a request file given options that only a frame call takes.
    """
    if args.rows:
        return False
    if not args.requests:
        if Path(args.input).suffix.lower() not in (".jsonl", ".ndjson") or not Path(args.input).is_file():
            return False
        found, objects = sniff_file(args.input)
        frame_call = bool(args.prompt or args.messages)
        # A file of request lines with a few damaged ones is still a request file: the run
        # names them. So is one with no JSON line at all (empty: an empty output) unless
        # the command says how to read rows.
        empty = not objects
        if (found == "rows" and not (empty and not frame_call)) or (found == "both" and frame_call):
            return False
    if not check:
        return True
    given = [flag for name, flag in FRAME_ONLY.items() if getattr(args, name, None) not in (None, False, [])]
    if given:
        raise ConfigError(
            f"{args.input} holds OpenAI batch request lines, which run as they are: {', '.join(given)} "
            f"{'does' if len(given) == 1 else 'do'} not apply (each line's body carries its own fields). "
            f"Pass --rows to read the file as data rows instead.")
    return True


def _model(args: argparse.Namespace) -> str | dict[str, str] | None:
    """``--model NAME``, or ``--model chat=NAME --model embeddings=NAME`` for a file of both kinds."""
    if not args.model:
        return None
    pairs = [m.partition("=") for m in args.model]
    if all(sep and kind in ("chat", "embeddings") for kind, sep, _ in pairs):
        return {kind: name for kind, _, name in pairs}
    if len(args.model) > 1:
        raise ConfigError("--model: give one model, or one per kind: --model chat=NAME --model embeddings=NAME")
    return str(args.model[0])


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"model": _model(args), "backend": args.backend, "cache": not args.no_cache,
            "max_rows": args.max_rows, "max_cost": args.max_cost}


def run(args: argparse.Namespace, start: float) -> int:
    """``pdbatch run requests.jsonl``, started at ``start`` (``time.perf_counter``): returns the failed lines."""
    out, answers = run_file(args.input, progress=not args.quiet, timeout=args.timeout, **_options(args))
    write_answers(answers, args.output, out)
    failed = int(out["error"].notna().sum())
    print(f"{len(out)} request lines, {len(out) - failed} answered, {failed} failed in "
          f"{time.perf_counter() - start:.1f} s" + (f"; written to {args.output}" if args.output else ""),
          file=sys.stderr)
    return failed


def submit(args: argparse.Namespace) -> str:
    """``pdbatch submit requests.jsonl``: the job's id."""
    return run_requests(args.input, wait=False, progress=False, **_options(args)).id


def write_answers(job: BatchJob | Answered, output: str | None, out: pd.DataFrame | None = None,
                  partial: bool = False) -> pd.DataFrame:
    """Write a request-file job's answers to ``output`` (OpenAI batch JSONL on stdout without one).

    Returns
    -------
    pandas.DataFrame
        The result frame (to count the failed lines).
    """
    out = job.result(partial) if out is None else out
    if output not in (None, "-"):
        job.write_output(output, partial)
        return out
    stream = sys.stdout.buffer
    for line in job.output_lines(partial):
        stream.write(orjson.dumps(line) + b"\n")
    return out
