"""How a ``pdbatch`` command ends: its exit code, and errors told in the command line's words.

:mod:`pdbatch.cli.commands` wires the arguments and maps each error to its code here.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import sys
import traceback
from collections.abc import Callable

from ..errors import PdbatchError
from .jobs import one_line

__all__ = ["CLI_WORDS", "EXIT_BROKEN_PIPE", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_IOERR", "EXIT_JOB_FAILED",
           "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_ROWS_FAILED", "EXIT_TIMEOUT", "EXIT_USAGE", "USER_IO", "broken_pipe",
           "fail", "in_cli_words", "interrupted"]

EXIT_OK, EXIT_ROWS_FAILED, EXIT_USAGE, EXIT_JOB_FAILED, EXIT_NOT_FOUND, EXIT_TIMEOUT = 0, 1, 2, 3, 4, 5
#: sysexits.h's EX_SOFTWARE, and what a shell reports for a process killed by SIGPIPE / SIGINT (128 + 13 / 2)
EXIT_INTERNAL, EXIT_BROKEN_PIPE, EXIT_INTERRUPTED = 70, 141, 130
#: sysexits.h's EX_IOERR: a write that did not fit (disk full, quota, ulimit -f) is the machine's state, not a bug
EXIT_IOERR = 74
USER_IO = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


#: Advice that pdbatch's errors give in Python's words, in the command line's
#: words instead ({job}: the job's id). Each is checked by tests/cli/test_cli.py.
CLI_WORDS = (
    ("Call job.wait() again, or pdbatch.attach({job_repr}) later.",
     "`pdbatch wait {job}` waits again; `pdbatch results {job} --partial` writes the rows answered so far."),
    ("call job.wait() first, or result(partial=True) for the rows answered so far",
     "run `pdbatch wait {job}` first, or `pdbatch results {job} --partial` for the rows answered so far"),
    ("result(partial=True) returns the rows it answered.",
     "`pdbatch results {job} --partial` writes the rows it answered."),
    (" (df.rename(columns=...)) or pass overwrite=True", " or pass --overwrite"),
    ("Sample the frame (df.sample(n)), or raise max_rows.", "Send fewer rows, or raise --max-rows."),
    ("over max_rows=", "over --max-rows "),
    ("over max_cost=", "over --max-cost "),
    (" df.llama.preview(...) shows the details.", ""),
    ("Fill them (df.fillna), drop them, or pass on_null='skip'", "Fill them, drop them, or pass --on-null skip"),
)


def in_cli_words(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run ``command``, its errors' advice rewritten from Python calls to ``pdbatch`` commands."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except PdbatchError as exc:
            job = str(getattr(exc, "job_id", "") or "")
            text = str(exc)
            for python, cli in CLI_WORDS:
                text = text.replace(python.format(job_repr=repr(job)), cli.format(job=job or "JOB_ID"))
            exc.args = (text,)
            raise

    return run


def interrupted(job_id: str) -> str:
    """What an interrupted wait prints in the command line: commands, not Python."""
    return (f"pdbatch: interrupted; job {job_id} goes on running. `pdbatch wait {job_id}` waits again, "
            f"`pdbatch results {job_id} -o FILE` writes its answers once it ended, "
            f"`pdbatch cancel {job_id}` stops it.")


def fail(args: argparse.Namespace, exc: Exception, code: int) -> int:
    """Say what went wrong on stderr (the traceback too with ``--debug``); returns ``code``."""
    if args.debug:
        traceback.print_exception(exc, file=sys.stderr)
    if code == EXIT_INTERNAL:
        hint = "" if args.debug else "; run again with --debug for the traceback,"
        print(f"pdbatch: internal error: {one_line(exc)}. This is a bug in pdbatch or a package it uses, not "
              f"in your input{hint} and report it", file=sys.stderr)
    else:
        print(f"pdbatch: {exc}", file=sys.stderr)
    return code


def broken_pipe() -> int:
    """The reader of stdout went away: no traceback, the exit code of SIGPIPE."""
    # Python's advice for SIGPIPE: point stdout at devnull, so that the flush
    # at exit does not raise again, and exit without a traceback.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file (captured, in-process)
        pass
    return EXIT_BROKEN_PIPE
