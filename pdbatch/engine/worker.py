"""The local job worker: ``python -P -m pdbatch.engine.worker run <job folder> [--lock-fd N]``.

It is started detached (``launch`` starts ``run`` in a new session and
returns), holds ``worker.lock`` for its whole life so that a second worker for
the same job exits at once, and appends one flushed line to ``output.jsonl``
per finished row. On start it reads what an earlier worker wrote, cuts a
half-written last line, and skips the rows already answered: a killed job
resumes without redoing or duplicating rows.

A job folder is data, never code: the worker runs with ``-P`` from ``/``, so
neither the job folder nor the starter's working directory is on
``sys.path`` (a planted ``orjson.py`` there is never imported). ``-P`` and
not ``-I``: isolated mode would also drop ``PYTHONPATH`` and the user's
site-packages, which is how pdbatch is found when it is run from a source
checkout or installed with ``pip install --user``. The worker writes with
umask 077: everything it creates is private to the user. It opens the
folder's files without following links (:func:`pdbatch.store.jobdir.open_file`),
and signs each line it appends in ``output.seal`` when the requests are the
ones submitted (:mod:`pdbatch.store.trust`): only signed answers enter the cache.

This module imports nothing heavy at the top: ``launch`` must be quick.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from .. import config
from ..errors import JobFolderError
from ..lines.outputs import output_line, succeeded
from ..store import jobdir, trust
from ..store.jobdir import write_status

STATUS_EVERY = 0.25  # seconds between status.json updates while running
NEUTRAL_CWD = "/"  # never the job folder: nothing there may be found as a module, nor a relative path


def command(action: str, folder: Path, lock_fd: int | None = None) -> list[str]:
    """The command line that starts ``launch`` or ``run`` for ``folder`` (an absolute path).

    ``-P``: the working directory is not put on ``sys.path`` (see the module's docstring).
    """
    argv = [sys.executable, "-P", "-m", "pdbatch.engine.worker", action, str(folder)]
    return argv + (["--lock-fd", str(lock_fd)] if lock_fd is not None else [])


def launch(folder: Path, lock_fd: int | None) -> None:
    """Start ``run`` for ``folder`` in a new session and return at once."""
    log = os.fdopen(jobdir.open_file(folder / jobdir.WORKER_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab")
    subprocess.Popen(
        command("run", folder, lock_fd),
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        close_fds=True,
        pass_fds=() if lock_fd is None else (lock_fd,),
        cwd=NEUTRAL_CWD,
    )
    log.close()


def recover_output(path: Path) -> dict[str, bool]:
    """Finished rows in ``output.jsonl``: custom_id -> succeeded.

    A last line without its newline was cut short by a crash: it is removed
    from the file (that row is simply run again), never parsed.
    """
    done: dict[str, bool] = {}
    for line in whole_lines(path).splitlines():
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        cid = obj.get("custom_id") if isinstance(obj, dict) else None
        if isinstance(cid, str):
            done[cid] = done.get(cid, False) or succeeded(obj)
    return done


def whole_lines(path: Path) -> bytes:
    """The content of ``path`` up to its last newline; a half-written last line is cut from the file.

    Opened without following a link (:func:`pdbatch.store.jobdir.open_file`): a
    link planted in a job folder is refused, never truncated through.
    """
    try:
        data = jobdir.read_file(path)
    except FileNotFoundError:
        return b""
    end = data.rfind(b"\n") + 1
    if end != len(data):
        fd = jobdir.open_file(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, end)
        finally:
            os.close(fd)
    return data[:end]


def signing_key(folder: Path, spec: dict[str, Any]) -> bytes | None:
    """The key to sign output lines with: the one the starter handed over, if the requests are the ones submitted.

    Answers to an edited ``requests.jsonl`` are still written, never signed:
    only signed lines enter the response cache (:mod:`pdbatch.store.trust`).
    """
    try:
        key: bytes | None = bytes.fromhex(os.environ.pop(trust.KEY_ENV, ""))
    except ValueError:
        return None
    if not key:  # started by hand: the key of this folder in PDBATCH_HOME, if that home has a secret
        key = trust.output_key(folder, create=False)
    if not key or not isinstance(spec.get("requests_mac"), str):
        return None
    try:
        same = trust.requests_mac(key, folder / jobdir.REQUESTS) == spec["requests_mac"]
    except (OSError, JobFolderError):
        return None
    return key if same else None


def read_requests(path: Path, skip: dict[str, bool]) -> Iterator[tuple[str, Any, str | None]]:
    """Yield (custom_id, body, error) for each request line not in ``skip``.

    A line that is not valid JSON or lacks a body still yields its id (when it
    has one) with an error, so that the row fails alone.
    """
    with os.fdopen(jobdir.open_file(path), "rb") as fh:
        for n, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
                cid = obj["custom_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                yield f"line-{n}", None, f"request line {n + 1} is not a valid request: {line[:120]!r}"
                continue
            if cid in skip:
                continue
            body = obj.get("body")
            if not isinstance(body, dict):
                yield cid, None, "invalid request: 'body' must be a JSON object"
            else:
                yield cid, body, None


def run(folder: Path, lock_fd: int | None = None) -> int:
    """Run (or resume) the job in ``folder``; returns a process exit code.

    ``lock_fd`` is ``worker.lock`` as locked by the process that started this
    worker (locking it again here is a no-op); without it the worker locks
    the file itself, and exits at once if another worker holds it.
    """
    lock = lock_fd if lock_fd is not None else jobdir.open_file(folder / jobdir.WORKER_LOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another worker owns this job
    try:
        jobdir.check_folder(folder)  # a link planted in a copied folder: refused, never written through
        out_path = folder / jobdir.OUTPUT
        done = recover_output(out_path)
        whole_lines(folder / jobdir.OUTPUT_SEAL)
    except (OSError, JobFolderError) as exc:
        traceback.print_exc()
        write_status(folder, state="JOB_STATE_FAILED", error=f"the job folder cannot be resumed: {exc}")
        return 1
    try:
        spec = orjson.loads(jobdir.read_file(folder / jobdir.JOB_SPEC))
        if not isinstance(spec, dict):
            raise TypeError(f"a JSON object was expected, not {type(spec).__name__}")
    except (OSError, orjson.JSONDecodeError, TypeError) as exc:
        traceback.print_exc()
        write_status(folder, state="JOB_STATE_FAILED",
                     error=f"{folder / jobdir.JOB_SPEC} cannot be read ({exc}); it says which model to run. "
                           f"Submit the rows again.")
        return 1
    key = signing_key(folder, spec)
    succeeded = sum(done.values())
    failed = len(done) - succeeded
    write_status(folder, state="JOB_STATE_PENDING", pid=os.getpid(), succeeded=succeeded, failed=failed,
                 started=time.time())
    try:
        from . import load_engine
        from .convert import batch_weights

        if spec["engine"] == "llama.cpp" and spec["kind"] == "chat" and spec.get("dtype"):
            # into this home's models folder, never a folder job.json names: the folder may come from elsewhere
            spec["weights"] = batch_weights(spec["weights"], spec["dtype"], config.home() / "models",
                                            spec["parallel"])
        write_status(folder, weights=spec["weights"])  # the file the answers come from
        spec["requests"] = str(folder / "requests.jsonl")  # the chat engine sizes its KV cache to them
        engine = load_engine(spec)
    except Exception as exc:
        traceback.print_exc()
        write_status(folder, state="JOB_STATE_FAILED", error=f"could not load model {spec['model']!r}: {exc}")
        return 1

    cancel_flag = folder / jobdir.CANCEL
    write_status(folder, state="JOB_STATE_RUNNING", running=time.time())  # model loaded: the job starts
    last = 0.0
    try:
        with contextlib.ExitStack() as files:
            out = files.enter_context(os.fdopen(_append(out_path), "ab"))
            seal = files.enter_context(os.fdopen(_append(folder / jobdir.OUTPUT_SEAL), "ab")) if key else None
            results = engine.run(read_requests(folder / jobdir.REQUESTS, done), stop=cancel_flag.exists)
            for cid, response, error in results:
                line = output_line(cid, response, error)
                out.write(line)
                out.flush()  # a crash now loses at most the rows still in flight
                if seal is not None and key is not None:  # after its line: a crash between leaves it unsigned
                    seal.write(trust.line_mac(key, line[:-1]) + b"\n")
                    seal.flush()
                if error:
                    failed += 1
                else:
                    succeeded += 1
                now = time.monotonic()
                if now - last > STATUS_EVERY:
                    write_status(folder, succeeded=succeeded, failed=failed)
                    last = now
    except Exception as exc:
        traceback.print_exc()
        write_status(folder, state="JOB_STATE_FAILED", succeeded=succeeded, failed=failed,
                     error=f"engine error: {type(exc).__name__}: {exc}")
        return 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # what the job cost, for benchmarks on a shared machine: CPU time does not count waiting for a core
    stats = {"peak_rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime,  # kB on Linux
             **getattr(engine, "stats", {})}
    if cancel_flag.exists():
        write_status(folder, state="JOB_STATE_CANCELLED", succeeded=succeeded, failed=failed,
                     error="cancelled by the user", ended=time.time(), **stats)
    else:
        write_status(folder, state="JOB_STATE_SUCCEEDED", succeeded=succeeded, failed=failed,
                     ended=time.time(), **stats)
    return 0


def _append(path: Path) -> int:
    return jobdir.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)


def main(argv: list[str]) -> int:
    """Entry point: ``launch <folder> [--lock-fd N]`` or ``run <folder> [--lock-fd N]``."""
    lock_fd = None
    if len(argv) == 4 and argv[2] == "--lock-fd" and argv[3].isdigit():
        lock_fd = int(argv[3])
        argv = argv[:2]
    if len(argv) != 2 or argv[0] not in ("launch", "run"):
        print("usage: python -P -m pdbatch.engine.worker {launch|run} JOB_FOLDER [--lock-fd N]", file=sys.stderr)
        return 2
    os.umask(0o077)  # what the worker writes (output, status, log, converted weights) is the user's alone
    folder = Path(argv[1])
    if argv[0] == "launch":
        launch(folder, lock_fd)
        return 0
    # stderr is the job's worker.log: llama.cpp's warnings and errors go there
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    return run(folder, lock_fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
