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
``reuse.bin``          the reuse state (pdbatch.store.reusestate; at submit): for each row, the row whose
                       answer it repeats; the output lines of rows answered from the response cache; the
                       cache key of each sent row, and this home's seal of those keys (pdbatch.store.trust)
``cached.jsonl`` ...   the same in four files (``alias.npy``, ``keys.json``, ``keys.seal``): folders of
                       pdbatch before 2026-12, still read
``cache-filled``       present once the job's answers went into the cache (pdbatch.jobs.reuse)
``last-status.json``   the state and counts last seen by a status check, with when (pdbatch.store.status):
                       what ``pdbatch jobs`` shows without asking the backend
``output/``            output files a backend downloaded for the result (Vertex: ``output/<job number>/``)
``requests.jsonl``     local jobs: the request lines, as sent (pdbatch.backends.local)
``job.json``           local jobs: what the worker runs: model, kind, engine settings
``output.jsonl``       local jobs: one output line per finished row, appended by the worker
``output.seal``        local jobs: the worker's signature of each of those lines (pdbatch.store.trust)
``status.json``        local jobs: state, counts, error, times; replaced whole (pdbatch.store.status)
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
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import orjson

from .. import config
from ..atomic import PRIVATE_DIR, atomic_path, private_dir
from ..errors import JobFolderError, JobNotFoundError, PdbatchWarning, answers_hint
from .manifest import Manifest
from .safeopen import not_regular, open_file, private_tree, read_file, write_at, write_file
from .status import OUTPUT, STATUS, last_state, read_status, unwritable, write_seen, write_status

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


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
    "unwritable",
    "write_at",
    "write_file",
    "write_seen",
    "write_status",
]

# ---------------------------------------------------------------- file names
MANIFEST = "manifest.json"
FRAME = "frame.arrow"
LEGACY_FRAME = "frame.pkl"
POINTER = "points-to"
SEEN = "last-status.json"  # pdbatch.store.status reads and writes it, beside status.json
REUSE = "reuse.bin"
#: The reuse state as pdbatch kept it before ``reuse.bin``, in four files: only pdbatch.store.reusestate reads
#: them (the names changed with it, so that code still looking for ``keys.json`` fails loudly, not silently)
LEGACY_REUSE = ("cached.jsonl", "alias.npy", "keys.json", "keys.seal")
CACHE_FILLED = "cache-filled"
DOWNLOADS = "output"
REQUESTS = "requests.jsonl"
JOB_SPEC = "job.json"
OUTPUT_SEAL = "output.seal"
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
        The frame file is missing, damaged, a link, or a pickle that was not allowed.
    """
    import pandas as pd
    import pyarrow as pa

    from . import frames

    path = folder / FRAME
    hint = answers_hint(answer_files(folder))
    if path.exists():
        os.close(open_file(path))  # memory-mapped by path below: never through a link (one put there after attach)
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


# ---------------------------------------------------------------- helpers
def answer_files(folder: Path) -> list[Path]:
    """Files under a job folder that hold output lines (not request lines), for error messages."""
    found = []
    for path in sorted(folder.rglob("*.jsonl")) if folder.is_dir() else []:
        try:
            with os.fdopen(open_file(path), "rb") as fh:  # never through a link
                first = orjson.loads(fh.readline(1 << 20))
        except (OSError, ValueError, JobFolderError):
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
NAMES = (MANIFEST, FRAME, LEGACY_FRAME, POINTER, REUSE, *LEGACY_REUSE, CACHE_FILLED, REQUESTS, JOB_SPEC, OUTPUT,
         OUTPUT_SEAL, STATUS, WORKER_LOCK, START_LOCK, CANCEL, WORKER_LOG)


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
