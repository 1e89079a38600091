"""The exceptions pdbatch raises.

Every exception derives from :class:`PdbatchError`, so ``except PdbatchError``
catches them all. Configuration mistakes are also ``ValueError`` and a missing
optional package is also ``ImportError``, so generic handlers keep working::

    PdbatchError
    ├── ConfigError (ValueError)          a setting, argument or model name is wrong
    │   └── InputError                    the frame cannot be turned into requests
    ├── MissingDependencyError (ImportError)  an optional extra is not installed
    ├── JobNotFoundError (LookupError)    no job with that id (attach, status)
    ├── JobError                          a job as a whole failed, expired or was cancelled
    │   ├── JobTimeoutError (TimeoutError)  ``wait(timeout=...)`` ran out first
    │   └── JobPausedError                  the service paused the job: waiting would never end
    └── BackendError                      the backend service refused or broke

A failed *row* is never an exception: it is data, in the row's ``error`` column.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendError",
    "ConfigError",
    "InputError",
    "JobError",
    "JobNotFoundError",
    "JobPausedError",
    "JobTimeoutError",
    "MissingDependencyError",
    "PdbatchError",
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
