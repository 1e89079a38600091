"""The exceptions pdbatch raises.

Every exception derives from :class:`PdbatchError`, so ``except PdbatchError``
catches them all. Configuration mistakes are also ``ValueError`` and a missing
optional package is also ``ImportError``, so generic handlers keep working::

    PdbatchError
    ├── ConfigError (ValueError)          a setting, argument or model name is wrong
    │   └── InputError                    the frame cannot be turned into requests
    ├── MissingDependencyError (ImportError)  an optional extra is not installed
    ├── JobNotFoundError (LookupError)    no job with that id (attach, status)
    ├── JobFolderError                    a job's file is missing, damaged or cannot be written
    ├── StorageError (OSError)            the disk is full or a file-size limit was reached (nothing was sent)
    ├── JobError                          a job as a whole failed, expired or was cancelled
    │   ├── JobTimeoutError (TimeoutError)  ``wait(timeout=...)`` ran out first
    │   └── JobPausedError                  the service paused the job: waiting would never end
    └── BackendError                      the backend service refused or broke

A failed *row* is never an exception: it is data, in the row's ``error`` column.
What pdbatch works around without failing (a damaged response cache moved
aside, a legacy pickle read on request) is said with a :class:`PdbatchWarning`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

__all__ = [
    "BackendError",
    "ConfigError",
    "InputError",
    "JobError",
    "JobFolderError",
    "JobNotFoundError",
    "JobPausedError",
    "JobTimeoutError",
    "MissingDependencyError",
    "PdbatchError",
    "PdbatchWarning",
    "StorageError",
]


class PdbatchError(Exception):
    """Base class of every error pdbatch raises."""


class ConfigError(PdbatchError, ValueError):
    """A setting, argument or model name is wrong; the message says how to fix it."""


class InputError(ConfigError):
    """The DataFrame cannot be turned into request lines (names the column or rows)."""


class MissingDependencyError(PdbatchError, ImportError):
    """An optional package is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'pdbatch[{extra}]'"
        )


class JobNotFoundError(PdbatchError, LookupError):
    """No job with that id is known to pdbatch or to the backend."""


class JobFolderError(PdbatchError):
    """A file in a job's folder is missing, damaged or cannot be written.

    The message names the file and says what can still be recovered, for
    example the answers in ``output.jsonl`` (read them with
    :func:`pdbatch.read_predictions`).

    Attributes
    ----------
    path : str
        The file (or folder) at fault.
    """

    def __init__(self, message: str, *, path: object = ""):
        super().__init__(message)
        self.path = str(path)


class StorageError(PdbatchError, OSError):
    """A job's files did not fit where pdbatch writes them: the disk or quota is full, or a file-size limit was hit.

    Raised before anything is sent, with nothing left half-written. The
    message names the folder, the bytes the job's files need, and
    ``PDBATCH_HOME`` (the folder to move them to a disk with room).

    Attributes
    ----------
    errno : int
        The system's error (``ENOSPC``, ``EDQUOT``, ``EFBIG``).
    path : str
        The folder that could not be written.
    needed : int or None
        About how many bytes the job's files take.
    """

    def __init__(self, message: str, *, errno: int, path: object = "", needed: int | None = None):
        super().__init__(message)
        self.errno = errno
        self.path = str(path)
        self.needed = needed


def answers_hint(paths: Iterable[str | os.PathLike[str]]) -> str:
    """The sentence a :class:`JobFolderError` ends with: which answer files survive, and how to read them."""
    found = [os.fspath(p) for p in paths if os.path.isfile(p) and os.path.getsize(p)]
    if not found:
        return "No answer has been written to the job's folder."
    target = found[0] if len(found) == 1 else found
    return (f"What can still be recovered: the answers in {', '.join(found)}; "
            f"pdbatch.read_predictions({target!r}) reads them, one row per custom_id.")


class JobError(PdbatchError):
    """A job as a whole did not succeed.

    Attributes
    ----------
    job_id : str
        The job's id.
    state : str
        The job's final state, e.g. ``"JOB_STATE_FAILED"``.
    detail : Any
        The backend's error payload, when it gave one.
    """

    def __init__(self, message: str, *, job_id: str = "", state: str = "", detail: Any = None):
        super().__init__(message)
        self.job_id = job_id
        self.state = state
        self.detail = detail


class JobTimeoutError(JobError, TimeoutError):
    """``BatchJob.wait(timeout=...)`` returned before the job ended. The job goes on."""


class JobPausedError(JobError):
    """The service paused the job (``JOB_STATE_PAUSED``); it goes on only when resumed there.

    ``wait`` raises it rather than wait for a state the job may never leave.
    The job is not lost: ``result(partial=True)`` returns the rows answered so
    far, ``cancel()`` stops it, and ``wait()`` may be called again later.
    """


class BackendError(PdbatchError):
    """The backend service refused a call or failed; the message says what to check."""


class PdbatchWarning(UserWarning):
    """pdbatch went on after working around something you should know about."""
