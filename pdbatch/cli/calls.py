"""``pdbatch run`` and ``pdbatch submit`` on a frame's file: the arguments gathered into a ``df.llama`` call.

A request file goes to :mod:`pdbatch.cli.file`, a BigQuery table to :mod:`pdbatch.cli.table`.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson
import pandas as pd

from ..backends import get_backend
from ..display.reporter import RowCounts
from ..errors import ConfigError
from ..lines.params import check_fields
from ..lines.structured import read_schema_file
from ..models import Kind
from . import file as clifile
from . import table as clitable
from .exits import EXIT_OK, EXIT_ROWS_FAILED
from .frameio import check_output, read_frame, write_frame

__all__ = ["cmd_run", "cmd_submit"]


def _params(items: list[str], kind: Kind, backend: str | None) -> dict[str, Any]:
    """``--param KEY=VALUE`` items as body fields, checked as the Python API checks them."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r}: write key=value, e.g. --param top_p=0.9")
        try:
            params[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            params[key] = value
    # Checked here too, so that the messages speak of --param, not of keyword arguments.
    _, problems = check_fields(params, kind, extra_fields=get_backend(backend).body_fields(kind),
                               escape="--param extra_body='{{\"{name}\": ...}}'")
    if problems:
        raise ConfigError("--param: " + "; ".join(problems))
    return params


def _call_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    body = _params(args.param, "embeddings" if args.embed else "chat", args.backend)
    kw: dict[str, Any] = {"model": args.model[-1] if args.model else None, "backend": args.backend,
                          "custom_id": args.custom_id, "on_null": args.on_null, **body}
    if args.messages:
        kw["messages"] = args.messages
    if args.schema:
        if args.embed:
            raise ConfigError("--schema structures chat answers; an --embed job has none")
        kw["schema"] = read_schema_file(args.schema)
    if args.system and not args.embed:
        kw["system"] = args.system
    for name in ("max_tokens", "temperature", "seed"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    if args.no_cache:
        kw["cache"] = False
    if args.overwrite:
        kw["overwrite"] = True
    return kw


def cmd_run(args: argparse.Namespace) -> int:
    if clitable.is_table(args.input):
        return EXIT_ROWS_FAILED if clitable.run(args, _table_kwargs(args)) else EXIT_OK
    check_output(args.output)  # before the job: a bad -o must not cost a whole run
    start = time.perf_counter()
    if clifile.is_request_file(args):
        _no_labels(args)
        return EXIT_ROWS_FAILED if clifile.run(args, start) else EXIT_OK
    df = read_frame(args.input)
    kw = _call_kwargs(args)
    if args.labels:
        out = _classify(df, args, kw, wait=True)
    elif args.embed:
        kw.pop("messages", None)
        out = df.llama.embed(args.prompt, progress=not args.quiet, timeout=args.timeout, **kw)
    else:
        out = df.llama.batch_predict(args.prompt, progress=not args.quiet, timeout=args.timeout,
                                     max_rows=args.max_rows, max_cost=args.max_cost, **kw)
    write_frame(out, args.output)
    failed = int(out["error"].notna().sum())
    rows = RowCounts.from_record(out.attrs.get("pdbatch_rows") or {})
    how = f" ({rows.describe().partition(': ')[2]})" if rows is not None and rows.reused else ""
    print(f"{len(out)} rows, {len(out) - failed} answered, {failed} failed in {time.perf_counter() - start:.1f} s"
          + how + (f"; written to {args.output}" if args.output else ""), file=sys.stderr)
    return EXIT_ROWS_FAILED if failed else EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    if clitable.is_table(args.input):
        print(clitable.submit(args, _table_kwargs(args)))
        return EXIT_OK
    if args.output is not None:
        raise ConfigError("--output goes with a BigQuery table's job (bq://...); a file job's answers come "
                          "from `pdbatch results JOB -o FILE`")
    if clifile.is_request_file(args):
        _no_labels(args)
        print(clifile.submit(args))
        return EXIT_OK
    df = read_frame(args.input)
    kw = _call_kwargs(args)
    kind = "embeddings" if args.embed else None
    if args.labels:
        job = _classify(df, args, kw, wait=False)
    else:
        job = df.llama.submit(args.prompt, kind=kind, progress=False, max_rows=args.max_rows,
                              max_cost=args.max_cost, **kw)
    print(job.id)
    return EXIT_OK


def _no_labels(args: argparse.Namespace) -> None:
    if args.labels:
        raise ConfigError("--labels applies to a table with --prompt, not to a request file (its lines are sent "
                          "as they are)")


def _table_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """A table job's arguments; with ``--labels`` checked as a frame's (``table.llama.classify``)."""
    kw = _call_kwargs(args)
    if args.labels:
        _check_classify(args, kw)
    return kw


def _classify(df: pd.DataFrame, args: argparse.Namespace, kw: dict[str, Any], *, wait: bool) -> Any:
    """``--labels``: ``df.llama.classify`` with the call's arguments (it sets the body fields itself)."""
    _check_classify(args, kw)
    return df.llama.classify(args.prompt, labels=args.labels, calibrate=not args.no_calibrate, wait=wait,
                             progress=wait and not args.quiet, timeout=getattr(args, "timeout", None),
                             max_rows=args.max_rows, max_cost=args.max_cost, **kw)


def _check_classify(args: argparse.Namespace, kw: dict[str, Any]) -> None:
    extra = sorted(set(kw) - {"model", "backend", "custom_id", "on_null", "system", "cache", "overwrite"})
    if args.embed or extra:
        flags = ["--embed"] if args.embed else [
            f"--{k.replace('_', '-')}" if k in ("messages", "max_tokens", "temperature", "seed") else f"--param {k}"
            for k in extra]
        raise ConfigError(f"--labels labels rows with the chat model and sets the request itself: "
                          f"drop {', '.join(flags)}")
