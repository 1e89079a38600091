"""pdbatch: run a large language model over every row of a pandas DataFrame as one batch job.

>>> import pandas as pd, pdbatch
>>> df = pd.DataFrame({"review": ["Great blender.", "Broke in a week."]})
>>> out = df.llama.batch_predict("Is this review positive or negative? {review}", max_tokens=8)

Importing pdbatch registers the ``df.llama`` accessor.
"""

from __future__ import annotations

from . import accessor as _accessor  # noqa: F401  (registers df.llama)
from . import backends
from .builders import datasets  # pdbatch.datasets.reviews(), as the notebooks use it
from .builders.requestfile import read_requests
from .builders.requests import build_requests
from .config import configure
from .errors import (
    BackendError,
    ConfigError,
    InputError,
    JobError,
    JobNotFoundError,
    JobPausedError,
    JobTimeoutError,
    MissingDependencyError,
    PdbatchError,
)
from .jobs.job import BatchJob, attach
from .jobs.runfile import preview_requests, run_requests
from .results.join import join_results
from .results.parse import read_predictions
from .store import cache as cache  # pdbatch.cache.clear() / .stats(), as the README shows
from .table import table

#: Deprecated alias of :class:`BatchJob`, kept so that old code importing it still runs: a request
#: file's job was a ``RequestsJob`` before ``BatchJob`` held several parts itself. Use ``BatchJob``.
RequestsJob = BatchJob

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BatchJob",
    "ConfigError",
    "InputError",
    "JobError",
    "JobNotFoundError",
    "JobPausedError",
    "JobTimeoutError",
    "MissingDependencyError",
    "PdbatchError",
    "RequestsJob",
    "attach",
    "backends",
    "build_requests",
    "configure",
    "datasets",
    "join_results",
    "preview_requests",
    "read_predictions",
    "read_requests",
    "run_requests",
    "table",
]
