"""The commands that read a state: a job's (status, wait, cancel), the models' lifecycle, a project's set-up."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from ..backends import get_backend
from .exits import EXIT_JOB_FAILED, EXIT_OK, EXIT_ROWS_FAILED

__all__ = ["cmd_cancel", "cmd_check", "cmd_models", "cmd_status", "cmd_wait", "status_line"]


def status_line(job: Any) -> str:
    """One line: the job's id, state and counts (and error)."""
    st = job.refresh()
    total = "?" if st.total is None else st.total
    err = f"  error: {st.error}" if st.error else ""
    return f"{job.id}  {st.state}  {st.finished}/{total} rows ({st.succeeded} ok, {st.failed} failed){err}"


def cmd_status(args: argparse.Namespace) -> int:
    from ..jobs.job import attach

    job = attach(args.job)
    if args.json:
        st = job.refresh()
        print(orjson.dumps({"id": job.id, "state": st.state, "total": st.total, "succeeded": st.succeeded,
                            "failed": st.failed, "error": st.error, "console_url": st.console_url}).decode())
    else:
        print(status_line(job))
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    from ..backends.base import OK_STATES
    from ..jobs.job import attach

    job = attach(args.job).wait(args.timeout, progress=not args.quiet)
    print(status_line(job))
    return EXIT_OK if job.status.state in OK_STATES else EXIT_JOB_FAILED


def cmd_cancel(args: argparse.Namespace) -> int:
    from ..jobs.job import attach

    job = attach(args.job)
    job.cancel()
    print(status_line(job))
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from ..models import list_models

    frame = list_models()
    for column in ("backend", "kind", "status"):
        if getattr(args, column):
            frame = frame[frame[column] == getattr(args, column)]
    if args.json:
        for record in frame.to_dict("records"):
            print(orjson.dumps(record, default=str).decode())
    else:
        print(frame.astype(object).where(frame.notna(), "").to_string(index=False))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """One line per check of the backend's project (✔ / ✘ with its fix); 0 when none failed."""
    backend = get_backend(args.backend)
    report = backend.check(args.model, kind="embeddings" if args.embed else None)
    if report is None:
        print(f"the {backend.name} backend needs no set-up to check")
        return EXIT_OK
    print(report)
    return EXIT_OK if report.ok else EXIT_ROWS_FAILED
