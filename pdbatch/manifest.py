"""What a job needs to be rejoined later, saved next to it under ``PDBATCH_HOME``.

``<home>/jobs/<key>/manifest.json`` records the backend's name and settings
(never credentials), the model, the job ids, and how to rebuild each row's
custom_id; ``frame.arrow`` holds the user's frame (Arrow IPC, see
:mod:`pdbatch.frames`: data, never code), so ``pdbatch.attach`` in a new
kernel returns the same joined result as the process that submitted it.
A job split into several backend jobs gets a one-line pointer file per extra
id, so attaching by any of its ids finds the manifest.

Jobs saved by pdbatch 0.1 hold the frame as ``frame.pkl``, a pickle, and
loading a pickle runs whatever code it names: it is read only when the caller
says the folder is trusted (``attach(id, allow_pickle=True)``, ``pdbatch
results ID --allow-pickle``), with a warning. A missing or damaged file raises
:class:`~pdbatch.errors.JobFolderError` naming it and what can be recovered.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa

from . import config, frames
from .atomic import atomic_path, private_dir, write_private
from .errors import JobFolderError, JobNotFoundError, PdbatchWarning, answers_hint
from .models import Kind

__all__ = ["Manifest", "answer_files", "folder_for", "load", "load_frame", "read", "save"]

MANIFEST = "manifest.json"
FRAME = "frame.arrow"
LEGACY_FRAME = "frame.pkl"
POINTER = "points-to"

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:/@-]{1,512}$")


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
    """The folder that holds ``job_id``'s manifest (inside the jobs folder, always)."""
    root = (config.home() / "jobs").resolve()
    folder = (root / key(job_id)).resolve()
    if folder.parent != root:
        raise JobNotFoundError(f"{job_id!r} is not a job id")
    return folder


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
    custom_id_column: str | None = None
    skipped: dict[int, str] = field(default_factory=dict)
    overwrite: bool = False
    display_name: str = ""
    created: float = field(default_factory=time.time)
    version: int = 1
    #: the call's arguments (prompt, params, ...), so ``retry_failed`` can send rows again
    call: dict[str, Any] | None = None
    #: the response cache mode: True, False or "always"
    cache: bool | str = False
    #: ``schema=`` as a JSON schema; answers are parsed into its columns
    schema: dict[str, Any] | None = None

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
        known = {f for f in cls.__dataclass_fields__}
        record = cls(**{k: v for k, v in data.items() if k in known})
        if not isinstance(record.id, str) or not isinstance(record.parts, list) or not all(
                isinstance(p, str) for p in record.parts) or not isinstance(record.backend, str):
            raise TypeError("'id', 'parts' or 'backend' has the wrong type")
        return record


def save(manifest: Manifest, frame: pd.DataFrame | pa.Table) -> Path:
    """Write the manifest and the frame (or its table from :func:`pdbatch.frames.to_table`); returns the folder.

    Raises :class:`~pdbatch.errors.InputError` when a frame cannot be kept exactly.
    """
    table = frames.to_table(frame) if isinstance(frame, pd.DataFrame) else frame
    folder = private_dir(folder_for(manifest.id))
    frames.write(table, folder / FRAME)
    with atomic_path(folder / MANIFEST) as tmp:
        tmp.write_bytes(manifest.to_json())
    for part in manifest.parts:
        if part != manifest.id:
            write_private(private_dir(folder_for(part)) / POINTER, manifest.id.encode())
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
        return Manifest.from_json(path.read_bytes())
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
            folder = folder_for(pointer.read_text().strip())
        except (OSError, UnicodeDecodeError, JobNotFoundError) as exc:
            raise JobFolderError(f"{pointer} is damaged ({exc}); it names the job that {job_id} is a part of. "
                                 f"Attach that job by its first id instead.", path=pointer) from None
    path = folder / MANIFEST
    if not path.exists():
        if folder.is_dir() and any(folder.iterdir()):
            raise JobFolderError(f"{path} is missing; it says how to rebuild the job, so the job cannot be "
                                 f"attached. {answers_hint(answer_files(folder))}", path=path)
        raise JobNotFoundError(
            f"no pdbatch job {job_id!r} under {folder.parent}. Jobs are found in PDBATCH_HOME "
            f"(now {config.home()}); set it to the folder used when the job was submitted."
        )
    return read(path), folder


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
