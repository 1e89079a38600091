"""A local job's status on disk (``status.json``) and the state last seen by a status check (``last-status.json``).

``status.json`` is written by the local worker as it goes and replaced whole
(:func:`write_status`); ``last-status.json`` is what ``pdbatch jobs`` shows
without asking a backend (:func:`write_seen`, :func:`last_state`). Both are
read from a folder that may come from elsewhere: never through a link, and a
count that is not a whole number is damage, never text to show.
"""

from __future__ import annotations

import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import orjson

from ..atomic import atomic_path
from ..errors import JobFolderError, answers_hint
from .safeopen import read_file

__all__ = ["COUNTS", "OUTPUT", "SEEN", "STATUS", "last_state", "read_status", "unwritable", "write_seen",
           "write_status"]

STATUS = "status.json"
SEEN = "last-status.json"  # (named in pdbatch.store.jobdir's list of a job folder's files too)
#: The local worker's output lines: what survives when its status does not.
OUTPUT = "output.jsonl"

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
            st = orjson.loads(read_file(folder / name))  # never through a link
        except (OSError, orjson.JSONDecodeError, JobFolderError):
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


