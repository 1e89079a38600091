"""The OpenAI backend: OpenAI's Batch API (and servers that speak it), through the official ``openai`` client.

Each request file the core writes (at most 50,000 lines and 200 MB, OpenAI's
limits per input file) is uploaded with ``files.create(purpose="batch")`` and
becomes one batch, ``batches.create(input_file_id, endpoint,
completion_window="24h", metadata=...)``; a frame larger than one file runs as
several batches behind one :class:`~pdbatch.jobs.job.BatchJob`. The metadata carries
pdbatch's run id and the part number, so that a create whose answer is lost
(a timeout, a 5xx after the server acted) is found again with
``batches.list`` and adopted rather than sent, and paid for, twice.

A batch's ``status`` maps onto pdbatch's states, ``request_counts`` gives the
progress, and the answers are the batch's output file and error file, both
in OpenAI's batch output format, which :mod:`pdbatch.results.parse` joins by
``custom_id``. Requests a batch did not reach before it expired or was
cancelled are in its error file as ``batch_expired`` / ``batch_cancelled``:
they become those rows' errors, and the answered rows come back through
``result(partial=True)``.

Settings come from the constructor, then ``pdbatch.configure(openai={...})``,
then ``PDBATCH_OPENAI_<NAME>``; ``base_url`` then falls back to
``OPENAI_BASE_URL``. The API key comes from ``api_key=`` or ``OPENAI_API_KEY``
and is never saved (see :mod:`._hosted`).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ..atomic import atomic_path, private_dir
from ..errors import BackendError, ConfigError, PdbatchError
from ..models import CHAT, EMBEDDINGS, URLS, Kind
from ..pricing import OPENAI_ONLINE_PRICES, OPENAI_PRICES_AS_OF, published_price
from . import _hosted as hosted
from ._openai_client import OPENAI
from .base import JobStatus

__all__ = ["OpenAI"]

DEFAULTS: dict[str, Any] = {
    "base_url": None,
    # OpenAI's Batch API: "The file can contain up to 50,000 requests, and can be up to 200 MB in size"
    # (API reference, create batch, input_file_id).
    "max_requests_per_file": 50_000,
    "max_bytes_per_file": 200_000_000,
    "poll_seconds": 30.0,
    # Seconds one HTTP call may take (the openai client's default is 600).
    "timeout": 600.0,
}
#: What a batch's ``status`` means in pdbatch's terms (API reference, the batch object).
STATES = {
    "validating": "JOB_STATE_PENDING",
    "in_progress": "JOB_STATE_RUNNING",
    "finalizing": "JOB_STATE_RUNNING",
    "completed": "JOB_STATE_SUCCEEDED",
    "failed": "JOB_STATE_FAILED",
    "expired": "JOB_STATE_EXPIRED",
    "cancelling": "JOB_STATE_CANCELLING",
    "cancelled": "JOB_STATE_CANCELLED",
}
DEFAULT_MODELS: dict[Kind, str] = {CHAT: "gpt-4.1-mini", EMBEDDINGS: "text-embedding-3-small"}
#: Metadata keys pdbatch sets on each batch (OpenAI allows 16 keys of 64 characters, values of 512).
RUN_KEY, PART_KEY, NAME_KEY = "pdbatch_run", "pdbatch_part", "pdbatch_name"
#: Tries of one ``batches.create`` whose outcome stays unknown, and how far back ``batches.list`` looks.
CREATE_TRIES = 3
CREATE_BACKOFF = 0.5  # seconds before the first look, doubled after each try
LIST_SCAN = 1000
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


class OpenAI(hosted.HostedBackend):
    """Run batch jobs on OpenAI's Batch API (half the online price, answers within 24 hours).

    Parameters
    ----------
    api_key : str, optional
        Default: the ``OPENAI_API_KEY`` environment variable. Never saved, shown or written.
    base_url : str, optional
        The API's address, e.g. an Azure OpenAI ``https://<resource>.openai.azure.com/openai/v1/``
        or another server that speaks the Batch API. Default: ``OPENAI_BASE_URL``, else
        ``https://api.openai.com/v1``.
    max_requests_per_file, max_bytes_per_file : int
        Limits per batch input file (OpenAI's: 50,000 requests, 200 MB); a larger
        frame runs as several batches behind one job.
    poll_seconds : float
        Seconds between status checks while waiting (default 30).
    timeout : float
        Seconds one call to the API may take (default 600).

    Examples
    --------
    >>> df.llama.batch_predict("Summarize: {text}", backend="openai", model="gpt-4.1-mini",
    ...                        max_tokens=200)  # doctest: +SKIP
    """

    name = "openai"
    provider = OPENAI
    defaults = DEFAULTS
    prices_as_of: ClassVar[str] = OPENAI_PRICES_AS_OF
    #: Request files may hold Responses API lines too; their answers fill the chat columns.
    extra_urls: ClassVar[Mapping[str, Kind]] = {"/v1/responses": CHAT}

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_requests_per_file: int | None = None,
        max_bytes_per_file: int | None = None,
        poll_seconds: float | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(api_key, **{k: v for k, v in locals().items() if k in DEFAULTS})

    def model_name(self, model: str | None, kind: Kind) -> str:
        """The model as request bodies name it: as given (the service knows its models), or the default of ``kind``.

        An embedding model (``text-embedding-*``) named for chat, or the reverse,
        is refused here, before anything is uploaded.
        """
        if model is None:
            return DEFAULT_MODELS[kind]
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"model={model!r}: give an OpenAI model name such as {DEFAULT_MODELS[kind]!r}")
        embedding = model.startswith("text-embedding-")
        if embedding != (kind == EMBEDDINGS) and (embedding or model.startswith(("gpt-", "o1", "o3", "o4"))):
            other = "an embedding" if embedding else "a chat"
            raise ConfigError(f"model={model!r} is {other} model, but this call needs a {kind} model, "
                              f"e.g. {DEFAULT_MODELS[kind]!r}")
        return model

    def batch_price(self, model: str) -> tuple[float, float] | None:
        """Half OpenAI's online price, from :data:`pdbatch.pricing.OPENAI_ONLINE_PRICES` (None: not listed)."""
        return published_price(model, OPENAI_ONLINE_PRICES)

    # ------------------------------------------------------------- submit
    def submit(self, files: list[Path], *, model: str, kind: Kind, n_requests: int, display_name: str,
               extra_columns: Any = None) -> list[str]:
        """Upload each request file and create one batch for it; returns the batch ids.

        Parameters
        ----------
        files : list of Path
            JSONL request files within this backend's limits.
        model : str
            The model in the request bodies.
        kind : {"chat", "embeddings"}
        n_requests : int
            Lines in all files.
        display_name : str
            Saved in each batch's metadata (``pdbatch_name``).
        extra_columns : None
            Not supported (the Batch API carries only the request lines).

        Returns
        -------
        list of str
            The batch ids (``batch_...``), one per file.
        """
        run = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(4)
        endpoint = _endpoint(files, kind, self.extra_urls)
        ids: list[str] = []
        try:
            for i, path in enumerate(files, 1):
                part = f"{i}/{len(files)}"
                with self._translate(f"uploading {path.name} ({part}) for the Batch API"), path.open("rb") as fh:
                    uploaded = self._api().files.create(file=(f"pdbatch-{run}-{i}.jsonl", fh), purpose="batch")
                metadata = {RUN_KEY: run, PART_KEY: part, NAME_KEY: display_name[:512]}
                ids.append(self._create(uploaded.id, endpoint, metadata))
        except BaseException:
            # Do not leave paid batches running for a submission the caller never got.
            for batch_id in ids:
                with contextlib.suppress(PdbatchError):
                    self.cancel(batch_id)
            raise
        return ids

    def _create(self, file_id: str, endpoint: str, metadata: dict[str, str]) -> str:
        """``batches.create`` once: an answer lost after the server acted is found by its metadata, not resent.

        The client's own retries are off for this call: OpenAI takes no
        idempotency key for batches, so a retried POST would start a second,
        paid batch. After an ambiguous failure the batches created since this
        submit began are listed, and the one with this run, part and input
        file is adopted; only when none is found is the create sent again.
        """
        import openai

        client = self._api().with_options(max_retries=0)
        since = time.time() - 120  # the server's clock may differ from ours a little
        action = f"creating the batch for part {metadata[PART_KEY]} ({endpoint})"
        last: BaseException | None = None
        for attempt in range(1, CREATE_TRIES + 1):
            try:
                batch = client.batches.create(input_file_id=file_id, endpoint=endpoint,
                                              completion_window="24h", metadata=metadata)
                return str(batch.id)
            except openai.OpenAIError as exc:
                if not hosted.ambiguous(OPENAI, exc):
                    with self._translate(action):
                        raise
                last = exc
            # a server still acting on the lost create shows the batch a moment later: wait, then look
            time.sleep(CREATE_BACKOFF * 2 ** (attempt - 1))
            found = self._find(file_id, metadata, since)
            if found is not None:
                return found
        assert last is not None
        with self._translate(f"{action}, tried {CREATE_TRIES} times"):
            raise last

    def _find(self, file_id: str, metadata: dict[str, str], since: float) -> str | None:
        """The batch created for this run and part, if the server made one (newest first, back to ``since``)."""
        with contextlib.suppress(BackendError), self._translate("looking for a batch whose creation timed out"):
            for seen, batch in enumerate(self._api().batches.list(limit=100)):
                meta = batch.metadata or {}
                if batch.input_file_id == file_id and meta.get(RUN_KEY) == metadata[RUN_KEY] \
                        and meta.get(PART_KEY) == metadata[PART_KEY]:
                    return str(batch.id)
                if batch.created_at < since or seen >= LIST_SCAN:
                    break
        return None

    # ------------------------------------------------------------- status
    def _get(self, batch_id: str) -> Any:
        with self._translate(f"reading batch {batch_id}", job_id=batch_id):
            return self._api().batches.retrieve(batch_id)

    def status(self, job_id: str) -> JobStatus:
        """The batch's state, its ``request_counts``, and why it failed or stopped."""
        batch = self._get(job_id)
        state = STATES.get(batch.status, "JOB_STATE_UNSPECIFIED")
        counts = batch.request_counts
        total = counts.total if counts is not None and counts.total else None
        done = counts.completed if counts is not None else 0
        failed = counts.failed if counts is not None else 0
        extra = {"openai_status": batch.status, "created_at": batch.created_at, "endpoint": batch.endpoint,
                 "expires_at": batch.expires_at}
        console = f"https://platform.openai.com/batches/{job_id}" if hosted.official(OPENAI, self.base_url) else None
        return JobStatus(state=state, total=total, succeeded=done, failed=failed,
                         error=_error(batch, done, total), output=batch.output_file_id, console_url=console,
                         extra=extra)

    def cancel(self, job_id: str) -> None:
        """Ask OpenAI to stop the batch; it is ``cancelling`` for up to 10 minutes, and its answers stay."""
        import openai

        try:
            self._api().batches.cancel(job_id)
        except openai.APIStatusError as exc:
            # Cancelling a batch that already ended is refused: nothing left to stop.
            if hosted.status_of(exc) in (400, 409) and self.status(job_id).done:
                return
            with self._translate(f"cancelling batch {job_id}", job_id=job_id):
                raise
        except openai.OpenAIError:
            with self._translate(f"cancelling batch {job_id}", job_id=job_id):
                raise

    def fetch_output(self, job_id: str, dest: Path) -> list[Path]:
        """Download the batch's output file and error file (what exists of them) into ``dest``."""
        batch = self._get(job_id)
        folder = private_dir(dest / _SAFE.sub("_", job_id))
        paths = []
        for name, file_id in (("output.jsonl", batch.output_file_id), ("errors.jsonl", batch.error_file_id)):
            if not file_id:
                continue
            target = folder / name
            with self._translate(f"downloading {name} of batch {job_id}"), atomic_path(target) as tmp, \
                    self._api().files.with_streaming_response.content(file_id) as response, tmp.open("wb") as fh:
                for chunk in response.iter_bytes():
                    fh.write(chunk)
            paths.append(target)
        return paths


# ------------------------------------------------------------------ helpers
def _endpoint(files: list[Path], kind: Kind, extra: Mapping[str, Kind]) -> str:
    """The endpoint the request lines name (one batch runs one): the kind's, or one of ``extra`` of that kind."""
    if files:
        with files[0].open("rb") as fh:
            first = fh.readline()
        with contextlib.suppress(ValueError, AttributeError):
            url = json.loads(first).get("url")
            if extra.get(url) == kind:
                return str(url)
    return URLS[kind]


def _error(batch: Any, done: int, total: int | None) -> str | None:
    """Why a batch did not complete, in words (its ``errors`` list when it failed)."""
    counts = f"{done} of {total if total is not None else '?'} requests answered"
    if batch.status == "failed":
        errors = list(batch.errors.data or []) if batch.errors is not None else []
        shown = [_line_error(e) for e in errors[:5]]
        more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
        return (f"the batch failed: {'; '.join(shown) or 'no error given'}{more}. Nothing was run: fix the "
                f"lines named and submit again")
    if batch.status == "expired":
        return (f"the batch expired: its 24 h completion window ended with {counts}; the others are "
                f"batch_expired. result(partial=True) returns the answered rows")
    if batch.status in ("cancelling", "cancelled"):
        return f"the batch was cancelled with {counts}; the others are batch_cancelled"
    return None


def _line_error(error: Any) -> str:
    where = f"line {error.line}: " if error.line is not None else ""
    param = f" (param {error.param})" if error.param else ""
    return f"{where}{error.code or 'error'}: {error.message or ''}{param}"
