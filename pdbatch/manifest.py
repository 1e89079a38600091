"""What a job needs to be rejoined later, saved next to it under ``PDBATCH_HOME``.

``<home>/jobs/<key>/manifest.json`` records the backend's name and settings
(never credentials), the model, the job ids, and how to rebuild each row's
custom_id; ``frame.pkl`` holds the user's frame, so ``pdbatch.attach`` in a new
kernel returns the same joined result as the process that submitted it.
A job split into several backend jobs gets a one-line pointer file per extra
id, so attaching by any of its ids finds the manifest.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from . import config
from .atomic import atomic_path
from .errors import JobNotFoundError
from .models import Kind

__all__ = ["Manifest", "folder_for", "load", "save"]

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
        data = orjson.loads(raw)
        data["skipped"] = {int(k): v for k, v in data.get("skipped", {}).items()}
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def save(manifest: Manifest, frame: pd.DataFrame) -> Path:
    """Write the manifest and the frame; returns the folder."""
    folder = folder_for(manifest.id)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_pickle(folder / "frame.pkl")
    with atomic_path(folder / "manifest.json") as tmp:
        tmp.write_bytes(manifest.to_json())
    for part in manifest.parts:
        if part != manifest.id:
            pointer = folder_for(part)
            pointer.mkdir(parents=True, exist_ok=True)
            (pointer / "points-to").write_text(manifest.id)
    return folder


def load(job_id: str) -> tuple[Manifest, Path]:
    """Find the manifest of ``job_id`` (or of the job it is a part of)."""
    folder = folder_for(job_id)
    pointer = folder / "points-to"
    if pointer.exists():
        folder = folder_for(pointer.read_text().strip())
    path = folder / "manifest.json"
    if not path.exists():
        raise JobNotFoundError(
            f"no pdbatch job {job_id!r} under {folder.parent}. Jobs are found in PDBATCH_HOME "
            f"(now {config.home()}); set it to the folder used when the job was submitted."
        )
    return Manifest.from_json(path.read_bytes()), folder


def load_frame(folder: Path) -> pd.DataFrame:
    """The user's frame as it was submitted."""
    return pd.read_pickle(folder / "frame.pkl")
