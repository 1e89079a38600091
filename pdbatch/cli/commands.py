"""``pdbatch``: batch jobs from scripts and schedulers.

Exit codes: 0 done (every row answered); 1 the job finished but some rows
failed (see their ``error``), or for ``check`` a check failed; 2 bad usage or input; 3 the job failed, was
cancelled or expired; 4 no such job; 5 still running when ``--timeout`` ran out;
74 an I/O error on the user's side (a full disk, a file-size limit); 70 an
internal error (a bug: ``--debug`` shows the traceback); 141 the reader
of the output went away (``pdbatch results JOB | head``), as for any Unix tool
killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import __version__
from ..errors import ConfigError, JobError, JobNotFoundError, JobTimeoutError, PdbatchError
from . import file as clifile
from . import table as clitable
from .calls import cmd_run, cmd_submit
from .exits import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_IOERR,
    EXIT_JOB_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_ROWS_FAILED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    USER_IO,
    broken_pipe,
    fail,
    in_cli_words,
    interrupted,
)
from .frameio import check_output, write_frame
from .jobs import cmd_cache_clear, cmd_cache_stats, cmd_jobs, cmd_prune
from .status import cmd_cancel, cmd_check, cmd_models, cmd_status, cmd_wait

# the exit codes stay importable from here, where the parser and main() are
__all__ = ["EPILOG", "EXIT_BROKEN_PIPE", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_IOERR", "EXIT_JOB_FAILED",
           "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_ROWS_FAILED", "EXIT_TIMEOUT", "EXIT_USAGE", "build_parser",
           "cmd_results", "main"]

EPILOG = """\
examples:
  pdbatch run requests.jsonl -o results.jsonl     (an OpenAI batch request file, run as it is)
  pdbatch run reviews.csv --prompt "Classify: {review}" --max-tokens 8 -o out.parquet
  pdbatch submit big.parquet --prompt "Summarize: {text}" --backend vertex --model gpt-oss-120b-maas
  pdbatch wait JOB_ID && pdbatch results JOB_ID -o out.parquet
  pdbatch submit bq://proj.ds.reviews --prompt "Classify: {text}" --backend vertex --output bq://proj.ds.out
  pdbatch jobs
  pdbatch jobs prune --older-than 7d --yes
  pdbatch models --backend vertex --status live
  pdbatch check --backend vertex --model gpt-oss-120b-maas   (before a project's first job)

exit codes: 0 done, 1 some rows failed, 2 bad usage or input, 3 job failed/cancelled/expired,
            4 no such job, 5 still running at --timeout, 74 disk full or file-size limit,
            70 internal error (a bug: rerun with --debug for the traceback and report it),
            141 output pipe closed (e.g. | head)
"""


def cmd_results(args: argparse.Namespace) -> int:
    from ..jobs.job import attach

    job = attach(args.job, allow_pickle=args.allow_pickle)
    if isinstance(job, clitable.TableJob):  # its result stays in BigQuery
        return EXIT_ROWS_FAILED if clitable.results(job, args) else EXIT_OK
    check_output(args.output)
    if job.call.requests is not None:  # a request file's job: the same output as `pdbatch run` wrote
        out = clifile.write_answers(job, args.output, partial=args.partial)
    else:
        out = job.result(partial=args.partial)
        write_frame(out, args.output)
    failed = int(out["error"].notna().sum())
    print(f"{len(out)} rows, {failed} failed" + (f"; written to {args.output}" if args.output else ""),
          file=sys.stderr)
    return EXIT_ROWS_FAILED if failed else EXIT_OK


def _add_call_args(p: argparse.ArgumentParser) -> None:
    clifile.add_input(p)
    p.add_argument("--prompt", "-p", help="template filled from each row, e.g. 'Classify: {review}'")
    p.add_argument("--messages", help="instead of --prompt: a column holding each row's chat messages")
    p.add_argument("--system", help="a system message for every row")
    p.add_argument("--model", "-m", action="append", help="model name (the backend's default otherwise); for "
                   "a request file of both kinds, --model chat=NAME --model embeddings=NAME")
    p.add_argument("--backend", "-b", help="local (default), vertex, or another registered backend")
    p.add_argument("--embed", action="store_true", help="an embeddings job instead of chat completions")
    p.add_argument("--custom-id", help="a column of unique row ids (default: row positions)")
    p.add_argument("--on-null", choices=["raise", "skip"], default="raise",
                   help="rows with a null template field: refuse (default) or keep with an error")
    p.add_argument("--schema", metavar="FILE.json", help="a JSON schema for the answers: one typed column per "
                   "top-level property (as schema= in Python)")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="any other body field, value as JSON when it parses (repeatable)")
    p.add_argument("--no-cache", action="store_true", help="send every row, even if answered before")
    p.add_argument("--overwrite", action="store_true",
                   help="replace result columns (response, error, ...) the input already has")
    p.add_argument("--max-rows", type=int, help="refuse to submit more requests than this")
    p.add_argument("--max-cost", type=float, help="refuse to submit above this estimated cost (US$)")
    p.add_argument("--labels", nargs="+", metavar="LABEL",
                   help="label each row with one of these (df.llama.classify; table.llama.classify for bq://): "
                        "a 'label' column and p_<label>")
    p.add_argument("--no-calibrate", action="store_true", help="with --labels: raw label probabilities")


def build_parser() -> argparse.ArgumentParser:
    """The ``pdbatch`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="pdbatch",
        description="Run a language model over every row of a table as one batch job.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pdbatch {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a job, wait, write the joined table")
    _add_call_args(p)
    p.add_argument("-o", "--output", help="output file (.parquet, .csv, .jsonl); CSV on stdout otherwise")
    p.add_argument("--timeout", type=float, help="seconds to wait before giving up (the job goes on)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=in_cli_words(cmd_run))

    p = sub.add_parser("submit", help="submit a job and print its id")
    _add_call_args(p)
    p.add_argument("--output", help="for a bq://project.dataset.table input: the result table, bq://p.d.t")
    p.set_defaults(func=in_cli_words(cmd_submit))

    p = sub.add_parser("status", help="print a job's state and counts")
    p.add_argument("job")
    p.add_argument("--json", action="store_true", help="as one JSON object")
    p.set_defaults(func=in_cli_words(cmd_status))

    p = sub.add_parser("wait", help="wait for a job to end")
    p.add_argument("job")
    p.add_argument("--timeout", type=float)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=in_cli_words(cmd_wait))

    p = sub.add_parser("cancel", help="cancel a job (rows already answered stay)")
    p.add_argument("job")
    p.set_defaults(func=in_cli_words(cmd_cancel))

    p = sub.add_parser("results", help="write a finished job's joined table")
    p.add_argument("job")
    p.add_argument("-o", "--output", help="output file (.parquet, .csv, .jsonl); CSV on stdout otherwise; "
                   "bq://project.dataset.table for a BigQuery table's job")
    p.add_argument("--partial", action="store_true", help="also for a failed, cancelled or running job")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read the frame.pkl of a job saved by pdbatch 0.1 (runs any code it holds: trusted "
                        "folders only)")
    p.set_defaults(func=in_cli_words(cmd_results))

    p = sub.add_parser("jobs", help="list the jobs under PDBATCH_HOME, with their last known state")
    p.add_argument("--refresh", action="store_true", help="ask the backend about the jobs not known to have ended")
    p.add_argument("--last", type=int, default=50, help="show the last N jobs (default 50)")
    p.set_defaults(func=in_cli_words(cmd_jobs))
    jsub = p.add_subparsers(dest="jobs_command", metavar="ACTION")
    prune = jsub.add_parser("prune", help="remove the folders of ended jobs (the cache is kept)")
    prune.add_argument("--older-than", required=True, metavar="DURATION",
                       help="jobs last active before this long ago: 7d, 12h, 30m")
    prune.add_argument("--yes", action="store_true", help="remove them (without it: list what would go)")
    prune.set_defaults(func=in_cli_words(cmd_prune))

    p = sub.add_parser("models", help="list the models, with their lifecycle status today")
    p.add_argument("--backend", choices=["local", "vertex"])
    p.add_argument("--kind", choices=["chat", "embeddings"])
    p.add_argument("--status", choices=["live", "deprecated", "retired", "unlisted", "online"])
    p.add_argument("--json", action="store_true", help="one JSON object per model")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("check", help="check a project before its first job (Vertex: one request, a fraction of a cent)")
    p.add_argument("--backend", "-b", help="the backend to check (default: the configured one)")
    p.add_argument("--model", "-m", help="the model the jobs will use (default: the backend's default)")
    p.add_argument("--embed", action="store_true", help="the default embedding model instead of the chat one")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("cache", help="the response cache")
    csub = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    c = csub.add_parser("clear", help="delete cached answers")
    c.add_argument("--backend")
    c.add_argument("--model")
    c.add_argument("--older-than", metavar="DURATION", help="only answers cached before this long ago: 30d, 12h")
    c.set_defaults(func=in_cli_words(cmd_cache_clear))
    st = csub.add_parser("stats", help="cached answers and their size, by backend and model")
    st.set_defaults(func=in_cli_words(cmd_cache_stats))
    # --debug also after the command (pdbatch run ... --debug); SUPPRESS keeps the main flag's value
    for p in [*sub.choices.values(), c, st, prune]:
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("run", "submit") and not clitable.is_table(args.input) and not Path(args.input).exists():
        # said first: "give --prompt" would send the user after the wrong mistake
        return fail(args, ConfigError(f"input file {args.input!r} does not exist (nothing was submitted)"),
                     EXIT_USAGE)
    if args.command in ("run", "submit") and args.prompt is None and args.messages is None and \
            not clifile.is_request_file(args, check=False):
        parser.error(f"{args.command}: give --prompt TEMPLATE or --messages COLUMN")
    from ..jobs.job import INTERRUPT_ADVICE

    advice = INTERRUPT_ADVICE.set(interrupted)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a reader that went away shows up here at the latest
        return code
    except BrokenPipeError:
        return broken_pipe()
    except KeyboardInterrupt as exc:
        # Ctrl-C is the user's doing, not a bug: no traceback. A job being waited
        # on goes on running, and wait() has already said (once) how to reach it.
        if not getattr(exc, "pdbatch_advised", False):
            print("pdbatch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except JobTimeoutError as exc:
        return fail(args, exc, EXIT_TIMEOUT)
    except JobNotFoundError as exc:
        return fail(args, exc, EXIT_NOT_FOUND)
    except JobError as exc:
        return fail(args, exc, EXIT_JOB_FAILED)
    except OSError as exc:
        if exc.errno not in USER_IO:
            return fail(args, exc, EXIT_USAGE if isinstance(exc, PdbatchError) else EXIT_INTERNAL)
        return fail(args, exc, EXIT_IOERR)
    except (ConfigError, PdbatchError, ValueError) as exc:
        return fail(args, exc, EXIT_USAGE)
    except Exception as exc:  # not the user's doing: its own exit code, not 1 ("some rows failed")
        return fail(args, exc, EXIT_INTERNAL)
    finally:
        INTERRUPT_ADVICE.reset(advice)


if __name__ == "__main__":
    sys.exit(main())
