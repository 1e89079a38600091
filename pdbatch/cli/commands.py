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
import errno
import functools
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from .. import __version__
from ..backends import get_backend
from ..display.reporter import RowCounts
from ..errors import ConfigError, JobError, JobNotFoundError, JobTimeoutError, PdbatchError
from ..lines.params import check_fields
from ..lines.structured import read_schema_file
from ..models import Kind
from . import file as clifile
from . import table as clitable
from .jobs import cmd_cache_clear, cmd_cache_stats, cmd_jobs, cmd_prune
from .jobs import one_line as _one_line

EXIT_OK, EXIT_ROWS_FAILED, EXIT_USAGE, EXIT_JOB_FAILED, EXIT_NOT_FOUND, EXIT_TIMEOUT = 0, 1, 2, 3, 4, 5
#: sysexits.h's EX_SOFTWARE, and what a shell reports for a process killed by SIGPIPE / SIGINT (128 + 13 / 2)
EXIT_INTERNAL, EXIT_BROKEN_PIPE, EXIT_INTERRUPTED = 70, 141, 130
#: sysexits.h's EX_IOERR: a write that did not fit (disk full, quota, ulimit -f) is the machine's state, not a bug
EXIT_IOERR = 74
_USER_IO = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

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


def read_frame(path: str) -> pd.DataFrame:
    """Read a CSV, Parquet, JSON or JSONL file into a frame."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"input file {path!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(p)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(p)
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(p, lines=True)
    if suffix == ".json":
        return pd.read_json(p)
    raise ConfigError(f"input {path!r}: use a .csv, .parquet, .jsonl or .json file")


#: Output formats by file extension.
OUTPUTS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def check_output(path: str | None) -> None:
    """Refuse an output path that :func:`write_frame` could not write, before any job is submitted.

    Parameters
    ----------
    path : str or None
        The ``-o`` argument (None or ``-``: CSV on stdout).

    Raises
    ------
    ConfigError
        An unknown extension, a folder, a missing or unwritable parent folder.
    """
    if path in (None, "-"):
        return
    p = Path(path)
    if p.suffix.lower() not in OUTPUTS:
        raise ConfigError(f"-o {path}: use a .parquet, .csv or .jsonl file (nothing was submitted)")
    if p.is_dir():
        raise ConfigError(f"-o {path} is a folder; name a file in it, e.g. -o {p / ('out' + p.suffix)}")
    folder = p.parent
    if not folder.is_dir():
        raise ConfigError(f"-o {path}: the folder {folder} does not exist; create it (mkdir -p {folder}) "
                          f"or write elsewhere (nothing was submitted)")
    try:  # the one test that holds for every user, root and read-only disks included: write something
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".pdbatch-check-"):
            pass
        if p.exists() and not os.access(p, os.W_OK):
            raise PermissionError(13, "permission denied", str(p))
    except OSError as exc:
        raise ConfigError(f"-o {path}: cannot write there ({exc.strerror or exc}); "
                          f"write elsewhere (nothing was submitted)") from None


def write_frame(frame: pd.DataFrame, path: str | None) -> None:
    """Write ``frame`` by the file's extension (CSV to stdout when no path)."""
    if path in (None, "-"):
        frame.to_csv(sys.stdout, index=False)
        return
    check_output(path)
    suffix = Path(path).suffix.lower()
    out = frame.copy()
    if "embedding" in out.columns and suffix != ".parquet":
        out["embedding"] = out["embedding"].map(lambda v: None if v is None else v.tolist())
    if OUTPUTS[suffix] == "parquet":
        out.to_parquet(path, index=False)
    elif OUTPUTS[suffix] == "csv":
        out.to_csv(path, index=False)
    else:
        out.to_json(path, orient="records", lines=True, force_ascii=False)


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
        return EXIT_ROWS_FAILED if clitable.run(args, _call_kwargs(args)) else EXIT_OK
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
        print(clitable.submit(args, _call_kwargs(args)))
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


def _classify(df: pd.DataFrame, args: argparse.Namespace, kw: dict[str, Any], *, wait: bool) -> Any:
    """``--labels``: ``df.llama.classify`` with the call's arguments (it sets the body fields itself)."""
    extra = sorted(set(kw) - {"model", "backend", "custom_id", "on_null", "system", "cache", "overwrite"})
    if args.embed or extra:
        flags = ["--embed"] if args.embed else [
            f"--{k.replace('_', '-')}" if k in ("messages", "max_tokens", "temperature", "seed") else f"--param {k}"
            for k in extra]
        raise ConfigError(f"--labels labels rows with the chat model and sets the request itself: "
                          f"drop {', '.join(flags)}")
    return df.llama.classify(args.prompt, labels=args.labels, calibrate=not args.no_calibrate, wait=wait,
                             progress=wait and not args.quiet, timeout=getattr(args, "timeout", None),
                             max_rows=args.max_rows, max_cost=args.max_cost, **kw)


def _status_line(job: Any) -> str:
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
        print(_status_line(job))
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    from ..backends.base import OK_STATES
    from ..jobs.job import attach

    job = attach(args.job).wait(args.timeout, progress=not args.quiet)
    print(_status_line(job))
    return EXIT_OK if job.status.state in OK_STATES else EXIT_JOB_FAILED


def cmd_cancel(args: argparse.Namespace) -> int:
    from ..jobs.job import attach

    job = attach(args.job)
    job.cancel()
    print(_status_line(job))
    return EXIT_OK


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


#: Advice that pdbatch's errors give in Python's words, in the command line's
#: words instead ({job}: the job's id). Each is checked by tests/test_cli.py.
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


def _in_cli_words(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
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
                   help="label each row with one of these (df.llama.classify): a 'label' column and p_<label>")
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
    p.set_defaults(func=_in_cli_words(cmd_run))

    p = sub.add_parser("submit", help="submit a job and print its id")
    _add_call_args(p)
    p.add_argument("--output", help="for a bq://project.dataset.table input: the result table, bq://p.d.t")
    p.set_defaults(func=_in_cli_words(cmd_submit))

    p = sub.add_parser("status", help="print a job's state and counts")
    p.add_argument("job")
    p.add_argument("--json", action="store_true", help="as one JSON object")
    p.set_defaults(func=_in_cli_words(cmd_status))

    p = sub.add_parser("wait", help="wait for a job to end")
    p.add_argument("job")
    p.add_argument("--timeout", type=float)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_in_cli_words(cmd_wait))

    p = sub.add_parser("cancel", help="cancel a job (rows already answered stay)")
    p.add_argument("job")
    p.set_defaults(func=_in_cli_words(cmd_cancel))

    p = sub.add_parser("results", help="write a finished job's joined table")
    p.add_argument("job")
    p.add_argument("-o", "--output", help="output file (.parquet, .csv, .jsonl); CSV on stdout otherwise; "
                   "bq://project.dataset.table for a BigQuery table's job")
    p.add_argument("--partial", action="store_true", help="also for a failed, cancelled or running job")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read the frame.pkl of a job saved by pdbatch 0.1 (runs any code it holds: trusted "
                        "folders only)")
    p.set_defaults(func=_in_cli_words(cmd_results))

    p = sub.add_parser("jobs", help="list the jobs under PDBATCH_HOME, with their last known state")
    p.add_argument("--refresh", action="store_true", help="ask the backend about the jobs not known to have ended")
    p.add_argument("--last", type=int, default=50, help="show the last N jobs (default 50)")
    p.set_defaults(func=_in_cli_words(cmd_jobs))
    jsub = p.add_subparsers(dest="jobs_command", metavar="ACTION")
    prune = jsub.add_parser("prune", help="remove the folders of ended jobs (the cache is kept)")
    prune.add_argument("--older-than", required=True, metavar="DURATION",
                       help="jobs last active before this long ago: 7d, 12h, 30m")
    prune.add_argument("--yes", action="store_true", help="remove them (without it: list what would go)")
    prune.set_defaults(func=_in_cli_words(cmd_prune))

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
    c.set_defaults(func=_in_cli_words(cmd_cache_clear))
    st = csub.add_parser("stats", help="cached answers and their size, by backend and model")
    st.set_defaults(func=_in_cli_words(cmd_cache_stats))
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
        return _fail(args, ConfigError(f"input file {args.input!r} does not exist (nothing was submitted)"),
                     EXIT_USAGE)
    if args.command in ("run", "submit") and args.prompt is None and args.messages is None and \
            not clifile.is_request_file(args, check=False):
        parser.error(f"{args.command}: give --prompt TEMPLATE or --messages COLUMN")
    from ..jobs.job import INTERRUPT_ADVICE

    advice = INTERRUPT_ADVICE.set(_interrupted)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a reader that went away shows up here at the latest
        return code
    except BrokenPipeError:
        return _broken_pipe()
    except KeyboardInterrupt as exc:
        # Ctrl-C is the user's doing, not a bug: no traceback. A job being waited
        # on goes on running, and wait() has already said (once) how to reach it.
        if not getattr(exc, "pdbatch_advised", False):
            print("pdbatch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except JobTimeoutError as exc:
        return _fail(args, exc, EXIT_TIMEOUT)
    except JobNotFoundError as exc:
        return _fail(args, exc, EXIT_NOT_FOUND)
    except JobError as exc:
        return _fail(args, exc, EXIT_JOB_FAILED)
    except OSError as exc:
        if exc.errno not in _USER_IO:
            return _fail(args, exc, EXIT_USAGE if isinstance(exc, PdbatchError) else EXIT_INTERNAL)
        return _fail(args, exc, EXIT_IOERR)
    except (ConfigError, PdbatchError, ValueError) as exc:
        return _fail(args, exc, EXIT_USAGE)
    except Exception as exc:  # not the user's doing: its own exit code, not 1 ("some rows failed")
        return _fail(args, exc, EXIT_INTERNAL)
    finally:
        INTERRUPT_ADVICE.reset(advice)


def _interrupted(job_id: str) -> str:
    # what an interrupted wait prints in the command line: commands, not Python
    return (f"pdbatch: interrupted; job {job_id} goes on running. `pdbatch wait {job_id}` waits again, "
            f"`pdbatch results {job_id} -o FILE` writes its answers once it ended, "
            f"`pdbatch cancel {job_id}` stops it.")


def _fail(args: argparse.Namespace, exc: Exception, code: int) -> int:
    if args.debug:
        traceback.print_exception(exc, file=sys.stderr)
    if code == EXIT_INTERNAL:
        hint = "" if args.debug else "; run again with --debug for the traceback,"
        print(f"pdbatch: internal error: {_one_line(exc)}. This is a bug in pdbatch or a package it uses, not "
              f"in your input{hint} and report it", file=sys.stderr)
    else:
        print(f"pdbatch: {exc}", file=sys.stderr)
    return code


def _broken_pipe() -> int:
    # Python's advice for SIGPIPE: point stdout at devnull, so that the flush
    # at exit does not raise again, and exit without a traceback.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file (captured, in-process)
        pass
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
