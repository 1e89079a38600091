"""The Anthropic backend: Anthropic's Message Batches API, through the official ``anthropic`` client.

Facts from Anthropic's documentation (GUIDE = "Batch processing",
platform.claude.com/docs/en/build-with-claude/batch-processing; REF = the API
reference, platform.claude.com/docs/en/api/messages/batches/...):

* a batch is created with its requests inline, ``messages.batches.create(requests=[{"custom_id",
  "params"}, ...])``: no file upload (REF create); at most 100,000 requests or 256 MB, whichever
  comes first (GUIDE, "Batch limitations"; REF create: ``maxItems: 100000``);
* ``processing_status`` is ``in_progress``, ``canceling`` or ``ended``; ``request_counts`` has
  ``processing``, ``succeeded``, ``errored``, ``canceled`` and ``expired``, all but
  ``processing`` zero until the whole batch ends (REF, the MessageBatch object);
* a batch ends within 24 hours: requests not processed by then are ``expired`` (GUIDE);
  ``cancel`` moves it to ``canceling``, and requests not yet run become ``canceled`` (REF cancel);
* results (``results_url``, a JSONL stream) come once the batch ended, in any order, matched by
  ``custom_id``; each is ``succeeded`` (with the Message), ``errored``, ``canceled`` or ``expired``;
  they are kept 29 days after creation (GUIDE);
* every request is billed at 50% of the standard price (GUIDE, "Pricing").

Each request file the core writes (at most :attr:`Anthropic.max_requests_per_file` lines) becomes
one batch; its OpenAI chat lines are converted by :mod:`._anthropic_lines`, and the results are
written back as OpenAI batch output lines, which :mod:`pdbatch.results.parse` joins by ``custom_id``.

**An ambiguous create** (a timeout or a 5xx after the server may have acted) cannot be resolved the
way the OpenAI backend does it: a Message Batch carries no metadata, and listing shows only ids,
times and counts, never the requests' ``custom_id`` s. Adopting "a batch of the same size created
just now" could take another submission's batch, whose answers would then be joined to this
frame's rows (both use ``row-0``, ``row-1``, ...). So the create is never retried; the error names
the batches of that size created since the submit began, to check and cancel or attach by hand.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ..atomic import atomic_path, private_dir
from ..errors import BackendError, ConfigError, PdbatchError
from ..models import CHAT, Kind
from . import _anthropic_lines as al
from . import _hosted as hosted
from ._anthropic_client import ANTHROPIC
from .base import JobStatus

__all__ = ["BATCH_PRICES", "PRICES_AS_OF", "Anthropic"]

DEFAULTS: dict[str, Any] = {
    "base_url": None,
    # GUIDE, "Batch limitations": "limited to either 100,000 Message requests or 256 MB in size,
    # whichever is reached first". The request file is OpenAI lines; the body sent is the same
    # requests as {"custom_id", "params"}, of about the same size: a 6 MB margin is kept for it.
    "max_requests_per_file": 100_000,
    "max_bytes_per_file": 250_000_000,
    "poll_seconds": 60.0,
    "timeout": 600.0,
}
DEFAULT_MODEL = "claude-haiku-4-5"
#: Batch prices, US$ per million (input, output) tokens, as GUIDE's "Pricing" table lists them
#: (copies of the page read 2026-12-06). Keys are model ids without a date suffix.
BATCH_PRICES: dict[str, tuple[float, float]] = {
    "claude-opus-4-6": (2.50, 12.50),
    "claude-opus-4-5": (2.50, 12.50),
    "claude-opus-4-1": (7.50, 37.50),
    "claude-opus-4": (7.50, 37.50),
    "claude-sonnet-4-6": (1.50, 7.50),
    "claude-sonnet-4-5": (1.50, 7.50),
    "claude-sonnet-4": (1.50, 7.50),
    "claude-haiku-4-5": (0.50, 2.50),
    "claude-3-5-haiku": (0.40, 2.00),
    "claude-3-haiku": (0.125, 0.625),
}
PRICES_AS_OF = "2026-12-06 (Anthropic batch prices; verify on its pricing page before large jobs)"
#: The current (not deprecated) models of GUIDE's pricing table, read 2026-12-06. Other names are
#: accepted as given: the service knows its models.
CURRENT_MODELS = ("claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-5",
                  "claude-sonnet-4-5", "claude-opus-4-1")
_DATED = re.compile(r"-(\d{8}|latest)$")
_SAFE = re.compile(r"[^A-Za-z0-9_-]")
#: How far back (batches) an ambiguous create looks for a batch it may have made.
LIST_SCAN = 100


class Anthropic(hosted.HostedBackend):
    """Run chat batch jobs on Anthropic's Message Batches API (half the standard price, within 24 hours).

    Parameters
    ----------
    api_key : str, optional
        Default: the ``ANTHROPIC_API_KEY`` environment variable. Never saved, shown or written.
    base_url : str, optional
        The API's address. Default: ``ANTHROPIC_BASE_URL``, else ``https://api.anthropic.com``.
    max_requests_per_file, max_bytes_per_file : int
        Limits per batch (Anthropic's: 100,000 requests, 256 MB); a larger frame runs as
        several batches behind one job.
    poll_seconds : float
        Seconds between status checks while waiting (default 60).
    timeout : float
        Seconds one call to the API may take (default 600).

    Examples
    --------
    >>> df.llama.batch_predict("Summarize: {text}", backend="anthropic", model="claude-haiku-4-5",
    ...                        max_tokens=200)  # doctest: +SKIP
    """

    name = "anthropic"
    provider = ANTHROPIC
    defaults = DEFAULTS
    prices_as_of: ClassVar[str] = PRICES_AS_OF

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

    # ------------------------------------------------------------- models and bodies
    def model_name(self, model: str | None, kind: Kind) -> str:
        """The model as given (the service knows its models), or the default; embeddings are refused."""
        if kind != CHAT:
            raise ConfigError(
                f"the Anthropic backend runs chat only: Anthropic has no {kind} endpoint (its Message Batches "
                f"take Messages requests). Run {kind} with backend='local', 'vertex' or 'openai'"
            )
        if model is None:
            return DEFAULT_MODEL
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"model={model!r}: give an Anthropic model name such as {DEFAULT_MODEL!r}")
        return model

    def serves(self, kind: Kind) -> bool:
        """Chat only: Anthropic's Message Batches take Messages requests, and Anthropic has no embeddings endpoint."""
        return kind == CHAT

    def known_models(self, kind: Kind) -> list[str]:
        """The current Claude models of Anthropic's batch pricing table (read 2026-12-06); chat only."""
        return list(CURRENT_MODELS) if kind == CHAT else []

    def unsupported_for_model(self, model: str, kind: Kind, params: Mapping[str, Any]) -> dict[str, str]:
        """The chat body fields a Messages request cannot carry, each with why (see :mod:`._anthropic_lines`)."""
        return al.unsupported(params) if kind == CHAT else {}

    def checks_messages(self, model: str, kind: Kind) -> bool:
        """The conversion refuses some messages (a tool role, image parts): each row's own list is asked."""
        return kind == CHAT

    def batch_price(self, model: str) -> tuple[float, float] | None:
        """Anthropic's batch price of ``model`` (a dated id priced as its model), None when not listed."""
        return BATCH_PRICES.get(_DATED.sub("", model))

    # ------------------------------------------------------------- submit
    def submit(self, files: list[Path], *, model: str, kind: Kind, n_requests: int, display_name: str,
               extra_columns: Any = None) -> list[str]:
        """Convert each request file to Message Batch requests and create one batch for it.

        Parameters
        ----------
        files : list of Path
            JSONL files of OpenAI chat request lines within this backend's limits.
        model : str
            The model in the request bodies.
        kind : {"chat"}
        n_requests : int
            Lines in all files.
        display_name : str
            Not sent: a Message Batch has no name or metadata.
        extra_columns : None
            Not supported.

        Returns
        -------
        list of str
            The batch ids (``msgbatch_...``), one per file.
        """
        self.model_name(model, kind)
        batches = [_requests(path) for path in files]  # every refusal before anything is sent
        ids: list[str] = []
        try:
            for i, requests in enumerate(batches, 1):
                ids.append(self._create(requests, f"{i}/{len(batches)}"))
        except BaseException:
            # Do not leave paid batches running for a submission the caller never got.
            for batch_id in ids:
                with contextlib.suppress(PdbatchError):
                    self.cancel(batch_id)
            raise
        return ids

    def _create(self, requests: list[dict[str, Any]], part: str) -> str:
        """``messages.batches.create`` once, never retried (see the module's note on ambiguous creates)."""
        import anthropic

        started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)  # the server's clock may differ
        action = f"creating the message batch for part {part} ({len(requests)} requests)"
        with self._translate(action):
            try:
                batch = self._api().with_options(max_retries=0).messages.batches.create(requests=requests)
            except anthropic.AnthropicError as exc:
                if not hosted.ambiguous(ANTHROPIC, exc):
                    raise
                suspects = self._suspects(len(requests), started)
                raise BackendError(
                    f"{action}: no answer came back ({hosted.message(exc, self._key())}), so Anthropic may have "
                    f"created the batch anyway. pdbatch does not send it again (it would run, and bill, "
                    f"twice) and cannot tell which batch is its own (a message batch has no metadata). "
                    f"Batches of {len(requests)} requests created since the submit began: "
                    f"{', '.join(suspects) or 'none seen'}. Cancel them, or attach one with "
                    f"pdbatch.attach(batch_id, backend='anthropic'), then submit again if none is yours"
                ) from None
        return str(batch.id)

    def _suspects(self, n: int, since: dt.datetime) -> list[str]:
        """Ids of batches of ``n`` requests created since ``since`` (newest first), as far as listing shows."""
        found: list[str] = []
        with contextlib.suppress(PdbatchError), self._translate("listing message batches"):
            for seen, batch in enumerate(self._api().messages.batches.list(limit=100)):
                if batch.created_at < since or seen >= LIST_SCAN:
                    break
                counts = batch.request_counts
                total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
                if total == n:
                    found.append(str(batch.id))
        return found

    # ------------------------------------------------------------- status
    def _get(self, batch_id: str) -> Any:
        with self._translate(f"reading message batch {batch_id}", job_id=batch_id):
            return self._api().messages.batches.retrieve(batch_id)

    def status(self, job_id: str) -> JobStatus:
        """The batch's state and counts; an ended batch is expired or cancelled when some requests were."""
        batch = self._get(job_id)
        c = batch.request_counts
        total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
        failed = c.errored + c.canceled + c.expired
        extra = {"anthropic_status": batch.processing_status, "created_at": _iso(batch.created_at),
                 "expires_at": _iso(batch.expires_at), "ended_at": _iso(batch.ended_at)}
        state, error = _state(batch)
        # No console link: no stored Anthropic page gives the address of one batch in the Console.
        return JobStatus(state=state, total=total or None, succeeded=c.succeeded, failed=failed, error=error,
                         output=batch.results_url, extra=extra)

    def cancel(self, job_id: str) -> None:
        """Ask Anthropic to stop the batch: it is ``canceling``, then ends; answered requests stay."""
        import anthropic

        try:
            self._api().messages.batches.cancel(job_id)
        except anthropic.APIStatusError as exc:
            # Cancelling a batch that already ended is refused: nothing left to stop.
            if hosted.status_of(exc) in (400, 409) and self.status(job_id).done:
                return
            with self._translate(f"cancelling message batch {job_id}", job_id=job_id):
                raise
        except anthropic.AnthropicError:
            with self._translate(f"cancelling message batch {job_id}", job_id=job_id):
                raise

    def fetch_output(self, job_id: str, dest: Path) -> list[Path]:
        """Download an ended batch's results as OpenAI batch output lines into ``dest``."""
        batch = self._get(job_id)
        if batch.processing_status != "ended":
            return []
        if not batch.results_url:
            # GUIDE: "Results of the batch are available for 29 days after creation".
            raise BackendError(f"message batch {job_id} has no results any more (archived "
                               f"{_iso(batch.archived_at) or 'after 29 days'}): Anthropic keeps them 29 days "
                               f"after creation; send the rows again")
        folder = private_dir(dest / _SAFE.sub("_", job_id))
        target = folder / "output.jsonl"
        with self._translate(f"downloading the results of message batch {job_id}", job_id=job_id), \
                atomic_path(target) as tmp, tmp.open("wb") as fh:
            for item in self._api().messages.batches.results(job_id):
                fh.write(json.dumps(al.result_line(item.to_dict())).encode() + b"\n")
        return [target]


# ------------------------------------------------------------------ helpers
def _requests(path: Path) -> list[dict[str, Any]]:
    """A request file's lines as Message Batch requests; a custom_id twice is refused (REF: unique)."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    with path.open("rb") as fh:
        for raw in fh:
            if raw.strip():
                req = al.request(json.loads(raw))
                if req["custom_id"] in seen:
                    raise ConfigError(f"custom_id {req['custom_id']!r} appears twice in {path.name}: Anthropic "
                                      f"requires each to be unique within a batch; give each line its own")
                seen.add(req["custom_id"])
                out.append(req)
    return out


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else None


def _state(batch: Any) -> tuple[str, str | None]:
    """pdbatch's state and, for a batch that did not answer everything, why."""
    c = batch.request_counts
    if batch.processing_status == "in_progress":
        return "JOB_STATE_RUNNING", None
    if batch.processing_status == "canceling":
        return "JOB_STATE_CANCELLING", None
    answered = f"{c.succeeded + c.errored} of {c.succeeded + c.errored + c.canceled + c.expired} requests processed"
    if batch.cancel_initiated_at is not None or c.canceled:
        return "JOB_STATE_CANCELLED", f"the batch was cancelled with {answered}; the others are batch_cancelled"
    if c.expired:
        return "JOB_STATE_EXPIRED", (f"the batch expired: its 24 h window ended with {answered}; the others are "
                                     f"batch_expired. result(partial=True) returns the answered rows")
    return "JOB_STATE_SUCCEEDED", None
