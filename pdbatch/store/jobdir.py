"""The jobs folder: one owner for ``<PDBATCH_HOME>/jobs/<job id>/``, its paths, its listing and its manifest.

Every module that reads or writes a job's folder takes the names and the
paths from here; the local worker does too, so this module imports nothing
heavy at the top (pandas only inside the functions that read a frame).

``PDBATCH_HOME`` (``~/.pdbatch``, or ``configure(home=...)``) holds::

    cache.sqlite3      the response cache (pdbatch.store.cache)
    models/            16-bit weights converted for the local engine (pdbatch.engine.convert)
    staging/           request files while they are written and handed to a backend (removed after)
    jobs/<job id>/     one folder per job, named by :func:`key` (a Vertex id's '/' become '_')

and a job's folder holds (who writes each file, and when):

=====================  ===========================================================================
``manifest.json``      what rebuilds the job: backend and settings (never credentials), model,
                       ids, rows skipped, the call and its options (:class:`Manifest`; at submit)
``frame.arrow``        the user's frame as submitted, Arrow IPC: data, never code (pdbatch.store.frames)
``frame.pkl``          the same, as written by pdbatch 0.1: a pickle, read only when trusted
``points-to``          in the folder of a job's second, third, ... part: the id of its first part
``cached.jsonl``       output lines of the rows answered from the response cache (pdbatch.jobs.reuse)
``alias.npy``          for each row, the row whose answer it repeats, or -1 (pdbatch.jobs.reuse)
``keys.json``          the cache key of each sent row, by custom_id, to cache its answer (pdbatch.jobs.reuse)
``keys.seal``          this home's signature of ``keys.json`` for this folder and job (pdbatch.store.trust)
``cache-filled``       present once the job's answers went into the cache (pdbatch.jobs.reuse)
``last-status.json``   the state and counts last seen by a status check, with when (:func:`write_seen`):
                       what ``pdbatch jobs`` shows without asking the backend
``output/``            output files a backend downloaded for the result (Vertex: ``output/<job number>/``)
``requests.jsonl``     local jobs: the request lines, as sent (pdbatch.backends.local)
``job.json``           local jobs: what the worker runs: model, kind, engine settings
``output.jsonl``       local jobs: one output line per finished row, appended by the worker
``output.seal``        local jobs: the worker's signature of each of those lines (pdbatch.store.trust)
``status.json``        local jobs: state, counts, error, times; replaced whole (:func:`write_status`)
``worker.lock``        local jobs: held (flock) by the live worker; free once it died
``start.lock``         local jobs: held while a process decides to start (or cancel) a worker
``cancel``             local jobs: present once someone asked the job to stop
``worker.log``         local jobs: the worker's stderr (llama.cpp's warnings, tracebacks)
=====================  ===========================================================================

Everything here is private to the user (folders ``0700``, files ``0600``,
see :mod:`pdbatch.atomic`). A missing or damaged file raises
:class:`~pdbatch.errors.JobFolderError` naming it and what can still be recovered.

A job folder may come from elsewhere (copied, unpacked, synced), and tar
keeps symbolic links: pdbatch never reads, writes or chmods a job's file
through a link, nor opens anything but a regular file there
(:mod:`pdbatch.store.safeopen`, :func:`check_folder`): a link, a
FIFO or a device in a job folder is a :class:`~pdbatch.errors.JobFolderError`
naming it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from .. import config
from ..atomic import PRIVATE_DIR, atomic_path, private_dir
from ..errors import JobFolderError, JobNotFoundError, PdbatchWarning, answers_hint
from .safeopen import not_regular, open_file, private_tree, read_file, write_file

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from ..models import Kind

__all__ = [
    "Manifest",
    "answer_files",
    "check_folder",
    "folder_for",
    "jobs",
    "last_state",
    "load",
    "load_frame",
    "new_folder",
    "open_file",
    "private_tree",
    "read",
    "read_file",
    "read_status",
    "root",
    "save",
    "staging",
    "write_file",
    "write_seen",
    "write_status",
]

# ---------------------------------------------------------------- file names
MANIFEST = "manifest.json"
FRAME = "frame.arrow"
LEGACY_FRAME = "frame.pkl"
POINTER = "points-to"
CACHED = "cached.jsonl"
ALIAS = "alias.npy"
KEYS = "keys.json"
KEYS_SEAL = "keys.seal"
CACHE_FILLED = "cache-filled"
SEEN = "last-status.json"
DOWNLOADS = "output"
REQUESTS = "requests.jsonl"
JOB_SPEC = "job.json"
OUTPUT = "output.jsonl"
OUTPUT_SEAL = "output.seal"
STATUS = "status.json"
WORKER_LOCK = "worker.lock"
START_LOCK = "start.lock"
CANCEL = "cancel"
WORKER_LOG = "worker.log"

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:/@-]{1,512}$")


# ---------------------------------------------------------------- paths
def root() -> Path:
    """The folder holding every job folder (created private on first use)."""
    return private_dir(config.home() / "jobs")


def key(job_id: str) -> str:
    """A folder name for a job id: Vertex resource names contain '/'."""
    if not isinstance(job_id, str) or not _VALID_ID.fullmatch(job_id) or ".." in job_id.split("/"):
        raise JobNotFoundError(f"{job_id!r} is not a job id (local ids look like 'local-...', "
                               f"Vertex ids like 'projects/P/locations/L/batchPredictionJobs/N')")
    k = _SAFE.sub("_", job_id)
    if k in (".", "..") or k.startswith("."):
        raise JobNotFoundError(f"{job_id!r} is not a job id")
    return k


def folder_for(job_id: str) -> Path:
    """The folder of ``job_id`` (inside the jobs folder, always; it may not exist yet).

    Raises
    ------
    JobNotFoundError
        ``job_id`` is not a job id, or would name a folder elsewhere.
    """
    base = root().resolve()
    folder = (base / key(job_id)).resolve()
    if folder.parent != base:
        raise JobNotFoundError(f"{job_id!r} is not a job id")
    return folder


def new_folder(job_id: str) -> Path:
    """Create the folder of a new job, private, and return it (refused if it exists already)."""
    folder = folder_for(job_id)
    folder.mkdir(mode=PRIVATE_DIR)
    os.chmod(folder, PRIVATE_DIR)  # mkdir's mode went through the umask
    return folder


@contextmanager
def staging() -> Iterator[Path]:
    """A new private folder under ``<home>/staging/`` for request files, removed when the block ends.

    A backend may move the files into a job folder meanwhile (the local one does).
    """
    folder = private_dir(config.home() / "staging" / secrets.token_hex(8))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Listed(NamedTuple):
    """One job folder as :func:`jobs` finds it."""

    manifest_path: Path
    modified: float
    #: the manifest, or the error reading it
    record: Manifest | Exception


def jobs() -> Iterator[Listed]:
    """Every job folder with a manifest, oldest first (one damaged folder never hides the others).

    Yields
    ------
    Listed
        The ``manifest.json`` path, when it was last written, and the
        manifest or the error reading it.
    """
    for path in sorted(root().glob(f"*/{MANIFEST}"), key=_mtime):
        try:
            record: Manifest | Exception = Manifest.from_json(read_file(path))
        except Exception as exc:
            record = exc
        yield Listed(path, _mtime(path), record)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed while listing
        return 0.0


# ---------------------------------------------------------------- manifest
@dataclass
class Manifest:
    """The saved description of a submitted job."""

    id: str
    parts: list[str]
    backend: str
    backend_settings: dict[str, Any]
    model: str
    kind: Kind
    n_rows: int
    skipped: dict[int, str] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    version: int = 2
    #: the call (:meth:`pdbatch.call.Call.record`): the prompt, params, custom_id column, schema, ...
    call: dict[str, Any] = field(default_factory=dict)
    #: how it ran (:meth:`pdbatch.call.Options.record`): cache, overwrite, passthrough, display_name, ...
    options: dict[str, Any] = field(default_factory=dict)
    #: what became of the frame's rows (:meth:`pdbatch.display.reporter.RowCounts.record`): sent, merged, cached, ...
    rows: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["skipped"] = {str(k): v for k, v in self.skipped.items()}
        return orjson.dumps(data, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """Parse :meth:`to_json`'s output; raises ValueError or TypeError on anything else."""
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise TypeError(f"a JSON object was expected, not {type(data).__name__}")
        data["skipped"] = {int(k): v for k, v in data.get("skipped", {}).items()}
        if data.get("version", 1) < 2:
            _upgrade(data)
        known = {f for f in cls.__dataclass_fields__}
        record = cls(**{k: v for k, v in data.items() if k in known})
        if not isinstance(record.id, str) or not isinstance(record.parts, list) or not all(
                isinstance(p, str) for p in record.parts) or not isinstance(record.backend, str):
            raise TypeError("'id', 'parts' or 'backend' has the wrong type")
        return record


def _upgrade(data: dict[str, Any]) -> None:
    # Version 1 kept the custom_id column, the schema and some options beside
    # the call (which older jobs lack altogether): fold them into call/options.
    call = data.get("call") or {}
    call.setdefault("custom_id", data.get("custom_id_column"))
    if call.get("schema") is None:
        call["schema"] = data.get("schema")
    data["call"] = call
    data["options"] = {"cache": data.get("cache", False), "overwrite": data.get("overwrite", False),
                       "display_name": data.get("display_name") or None}


def save(manifest: Manifest, frame: pd.DataFrame | pa.Table | Path) -> Path:
    """Write the manifest and the frame (or its table from :func:`pdbatch.store.frames.to_table`); returns the folder.

    ``frame`` may also be a folder of the job's files written already
    (``frame.arrow`` and the reuse files, :func:`pdbatch.jobs.submit.submit`):
    they are moved in, and the manifest, written last, makes the job whole.

    Raises :class:`~pdbatch.errors.InputError` when a frame cannot be kept exactly.
    """
    import pyarrow as pa

    from . import frames

    folder = private_dir(folder_for(manifest.id))
    if isinstance(frame, Path):
        for path in frame.iterdir():
            shutil.move(path, folder / path.name)  # a rename: the files are under PDBATCH_HOME already
    else:
        table = frame if isinstance(frame, pa.Table) else frames.to_table(frame)
        frames.write(table, folder / FRAME)
    with atomic_path(folder / MANIFEST) as tmp:
        tmp.write_bytes(manifest.to_json())
    for part in manifest.parts:
        if part != manifest.id:
            write_file(private_dir(folder_for(part)) / POINTER, manifest.id.encode())
    return folder


def read(path: Path) -> Manifest:
    """Read a ``manifest.json``.

    Raises
    ------
    JobFolderError
        The file cannot be read or is not a manifest; the message names it and
        what can still be recovered.
    """
    try:
        return Manifest.from_json(read_file(path))
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or exc})"
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # orjson's JSONDecodeError is a ValueError
        problem = "is empty" if _empty(path) else f"is damaged ({type(exc).__name__}: {exc})"
    raise JobFolderError(
        f"{path} {problem}; it says how to rebuild the job (backend, model, ids, rows), so the job cannot "
        f"be attached. {answers_hint(answer_files(path.parent))}", path=path)


def load(job_id: str) -> tuple[Manifest, Path]:
    """Find the manifest of ``job_id`` (or of the job it is a part of).

    Raises
    ------
    JobNotFoundError
        No job with that id under ``PDBATCH_HOME``.
    JobFolderError
        The job's folder is there but its manifest (or pointer) is missing or damaged.
    """
    folder = folder_for(job_id)
    pointer = folder / POINTER
    if pointer.exists():
        try:
            folder = folder_for(read_file(pointer).decode().strip())
        except (OSError, UnicodeDecodeError, JobNotFoundError) as exc:
            raise JobFolderError(f"{pointer} is damaged ({exc}); it names the job that {job_id} is a part of. "
                                 f"Attach that job by its first id instead.", path=pointer) from None
    path = folder / MANIFEST
    if folder.is_dir():
        check_folder(folder)
    if not path.exists():
        if folder.is_dir() and any(folder.iterdir()):
            raise JobFolderError(f"{path} is missing; it says how to rebuild the job, so the job cannot be "
                                 f"attached. {answers_hint(answer_files(folder))}", path=path)
        raise JobNotFoundError(
            f"no pdbatch job {job_id!r} under {folder.parent}. Jobs are found in PDBATCH_HOME "
            f"(now {config.home()}); set it to the folder used when the job was submitted."
        )
    return read(path), folder


# ---------------------------------------------------------------- the frame
def load_frame(folder: Path, job_id: str, *, allow_pickle: bool = False) -> pd.DataFrame:
    """The user's frame as it was submitted.

    Parameters
    ----------
    folder : Path
        The job's folder.
    job_id : str
        For messages.
    allow_pickle : bool
        Read a ``frame.pkl`` left by pdbatch 0.1 (this runs any code the pickle
        names: only for folders you trust).

    Raises
    ------
    JobFolderError
        The frame file is missing, damaged, or a pickle that was not allowed.
    """
    import pandas as pd
    import pyarrow as pa

    from . import frames

    path = folder / FRAME
    hint = answers_hint(answer_files(folder))
    if path.exists():
        try:
            return frames.read(path)
        except (OSError, pa.ArrowException, ValueError, TypeError, KeyError) as exc:
            raise JobFolderError(f"{path} {'is empty' if _empty(path) else f'is damaged ({exc})'}; it is the "
                                 f"job's copy of your frame, needed to join the answers to your rows. {hint}",
                                 path=path) from None
    legacy = folder / LEGACY_FRAME
    if not legacy.exists():
        raise JobFolderError(f"{path} is missing; it is the job's copy of your frame, needed to join the answers "
                             f"to your rows. {hint}", path=path)
    if not allow_pickle:
        raise JobFolderError(
            f"{legacy} is a pickle, written by an older pdbatch, and loading a pickle runs any code it names. "
            f"If you trust where this folder came from, say so: pdbatch.attach({job_id!r}, allow_pickle=True), "
            f"or `pdbatch results {job_id} --allow-pickle`. {hint}", path=legacy)
    warnings.warn(f"reading {legacy}, a pickle written by an older pdbatch, because allow_pickle=True: it can "
                  f"run code. New jobs keep their frame in {FRAME}.", PdbatchWarning, stacklevel=3)
    try:
        return pd.read_pickle(legacy)
    except Exception as exc:  # a damaged pickle can raise nearly anything
        raise JobFolderError(f"{legacy} is damaged ({type(exc).__name__}: {exc}). {hint}", path=legacy) from None


# ---------------------------------------------------------------- a local job's status
def write_status(folder: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``status.json`` atomically (write, then rename).

    Raises :class:`JobFolderError` when the folder cannot be written.
    """
    path = folder / STATUS
    current = read_status(folder) if path.exists() else {}
    current.update(fields, updated=time.time())
    try:
        with atomic_path(path) as tmp:  # two writers (threads or processes) never share a temporary file
            tmp.write_bytes(orjson.dumps(current))
    except OSError as exc:
        raise unwritable(folder, path, exc) from exc
    return current


def read_status(folder: Path) -> dict[str, Any]:
    """Read ``status.json`` (a reader never sees a half-written file: it is renamed into place).

    Raises :class:`JobFolderError` naming the file when it is missing, unreadable or damaged.
    """
    path = folder / STATUS
    try:
        status = orjson.loads(read_file(path))
        if isinstance(status, dict) and isinstance(status.get("state"), str):
            wrong = _not_counts(status)
            if not wrong:
                return status
            problem = f"is damaged ({wrong})"
        else:
            problem = "is damaged (no 'state')"
    except FileNotFoundError:
        problem = "is missing"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or exc})"
    except orjson.JSONDecodeError as exc:
        problem = "is empty" if path.stat().st_size == 0 else f"is damaged ({exc})"
    raise JobFolderError(
        f"{path} {problem}; it holds the job's state, so the job cannot be followed or resumed. "
        f"result(partial=True) still joins the answers written so far. {_recovery(folder)}", path=path)


def write_seen(folder: Path, state: str, total: int | None, succeeded: int, failed: int,
               error: str | None) -> None:
    """Keep the state last seen by a status check in ``last-status.json`` (best effort: it is only a hint)."""
    record = {"state": state, "total": total, "succeeded": succeeded, "failed": failed,
              "error": (error or None) and error[:500], "seen": time.time()}
    # a read-only job folder: the listing shows an older state, harmlessly
    with suppress(OSError), atomic_path(folder / SEEN) as tmp:
        tmp.write_bytes(orjson.dumps(record))


def last_state(folder: Path) -> dict[str, Any] | None:
    """The last known state of the job in ``folder``, read from the folder only (no backend is asked).

    The newer of ``last-status.json`` (what a status check saw) and
    ``status.json`` (what a local worker writes as it goes); None when neither
    can be read. Untrusted data: a caller shows it, escaped, and nothing more.
    """
    found = []
    for name in (SEEN, STATUS):
        try:
            st = orjson.loads((folder / name).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(st, dict) and isinstance(st.get("state"), str):
            when = st.get("seen", st.get("updated"))  # seen by a status check / written by a worker
            st["seen"] = when if isinstance(when, int | float) and not isinstance(when, bool) else None
            found.append((st["seen"] or 0.0, st))
    return max(found, key=lambda f: f[0])[1] if found else None
#: The counts a status holds: whole numbers or absent (``total`` may be null), never text to show as is.
COUNTS = ("total", "succeeded", "failed", "stalled_restarts", "finished_at_restart")


def _not_counts(status: dict[str, Any]) -> str:
    """What is wrong with the status's counts ('' when nothing): a count is a number a display shows."""
    for name in COUNTS:
        if name not in status or (name == "total" and status[name] is None):
            continue
        value = status[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{name!r} is {str(orjson.dumps(value)[:60], 'utf-8', 'replace')}, not a count of rows"
    return ""


def unwritable(folder: Path, path: Path, exc: OSError) -> JobFolderError:
    """The error for a local job's file that cannot be written (the folder was made read-only)."""
    return JobFolderError(
        f"cannot write {path} ({exc.strerror or exc}); the job cannot be resumed or cancelled until its folder "
        f"is writable again (chmod u+w {folder}). result() still reads it. {_recovery(folder)}", path=path)


def _recovery(folder: Path) -> str:
    return answers_hint([folder / OUTPUT])


# ---------------------------------------------------------------- helpers
def answer_files(folder: Path) -> list[Path]:
    """Files under a job folder that hold output lines (not request lines), for error messages."""
    found = []
    for path in sorted(folder.rglob("*.jsonl")) if folder.is_dir() else []:
        try:
            with open(path, "rb") as fh:
                first = orjson.loads(fh.readline(1 << 20))
        except (OSError, ValueError):
            continue
        if isinstance(first, dict) and {"response", "status", "error"} & first.keys():
            found.append(path)
    return found


def _empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


# ---------------------------------------------------------------- never through a link
#: Every name pdbatch reads or writes in a job folder (what :func:`check_folder` looks at).
NAMES = (MANIFEST, FRAME, LEGACY_FRAME, POINTER, CACHED, ALIAS, KEYS, KEYS_SEAL, CACHE_FILLED, REQUESTS, JOB_SPEC,
         OUTPUT, OUTPUT_SEAL, STATUS, WORKER_LOCK, START_LOCK, CANCEL, WORKER_LOG)


def check_folder(folder: Path) -> None:
    """Refuse a job folder whose files (by the names pdbatch uses) are links or special files.

    Names pdbatch does not use are left alone: it never opens them.

    Raises
    ------
    JobFolderError
        Naming the first such file.
    """
    for name in NAMES:
        path = folder / name
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            continue  # missing: whoever needs it says so
        if not stat.S_ISREG(mode):
            raise not_regular(path)
    private_tree(folder / DOWNLOADS, chmod=False)
