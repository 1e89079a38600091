"""``pdbatch submit|run bq://p.d.t`` and ``pdbatch results JOB --output bq://...``: table jobs from the command line.

The rows stay in BigQuery: ``submit`` prints the job id, ``results`` writes the
result table (``--output bq://project.dataset.table``, else the one named at
submit) and prints its URI; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import ConfigError
from ..jobs.tablejob import TableJob
from ..models import EMBEDDINGS, URLS

__all__ = ["TableJob", "is_table", "results", "run", "submit"]


def is_table(source: str | None) -> bool:
    """Whether an input or output argument names a BigQuery table."""
    return isinstance(source, str) and source.startswith("bq://")


def _submit(args: argparse.Namespace, kw: dict[str, Any]) -> Any:
    from ..table import table

    kw.pop("cache", None)  # --no-cache: a table job never reads the response cache, every row is sent
    if args.embed:
        kw["url"] = URLS[EMBEDDINGS]
    output = getattr(args, "output", None)
    if output is not None and not is_table(output):
        raise ConfigError(f"--output {output}: a table job writes a table; give bq://project.dataset.table")
    if args.labels:  # checked by the caller as a frame's --labels
        return table(args.input).llama.classify(args.prompt, labels=args.labels, calibrate=not args.no_calibrate,
                                                output=output, max_rows=args.max_rows, max_cost=args.max_cost,
                                                wait=False, progress=False, **kw)
    return table(args.input).llama.submit(args.prompt, output=output, max_rows=args.max_rows,
                                          max_cost=args.max_cost, **kw)


def submit(args: argparse.Namespace, kw: dict[str, Any]) -> str:
    """Submit the table's job; returns its id."""
    return str(_submit(args, kw).id)


def run(args: argparse.Namespace, kw: dict[str, Any]) -> int:
    """Submit, wait, write the result table; returns the number of failed rows."""
    job = _submit(args, kw).wait(args.timeout, progress=not args.quiet)
    return _report(job.result())


def results(job: Any, args: argparse.Namespace) -> int:
    """Write a finished table job's result table; returns the number of failed rows."""
    output = args.output
    if output is not None and not is_table(output):
        raise ConfigError(f"-o {output}: the job {job.id} ran on a BigQuery table and its result stays there; "
                          f"give --output bq://project.dataset.table (or none: the table named at submit)")
    return _report(job.result(partial=args.partial, output=output))


def _report(result: Any) -> int:
    failed = result.failed()
    print(result.table)
    print(f"{result.count()} rows, {failed} failed; written to {result.table}", file=sys.stderr)
    return failed
