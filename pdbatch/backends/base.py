"""The backend contract: request lines in, job status and output lines out. Everything a backend declares.

A backend never sees pandas. It is handed JSONL files of request lines and
answers with job ids, the jobs' status, and (when asked) local JSONL files of
output lines in one of the shapes :mod:`pdbatch.results.parse` parses. Everything
about DataFrames lives above this line, and the core never asks which
backend it talks to (no ``backend.name`` tests): what differs between
backends is declared here, as class attributes and methods with defaults.

Writing a backend (``pdbatch.backends.mock.Mock`` is the worked example):

* **Must implement**: :meth:`~Backend.model_name`, :meth:`~Backend.submit`,
  :meth:`~Backend.status`, :meth:`~Backend.cancel`, :meth:`~Backend.fetch_output`,
  :meth:`~Backend.settings`; set :attr:`~Backend.name`; call
  :func:`pdbatch.backends.register`.
* **Limits and pace**: :attr:`~Backend.max_requests_per_file`,
  :attr:`~Backend.max_bytes_per_file` (request files are split at them),
  :attr:`~Backend.poll_seconds` (how often ``wait`` asks for the status).
* **Capabilities**: :attr:`~Backend.accepts_passthrough` and
  :attr:`~Backend.reserved_columns` (``passthrough=True``), :attr:`~Backend.extra_urls`
  (request-file endpoints beyond chat and embeddings), :meth:`~Backend.resume`
  with :attr:`JobStatus.stalled` (a job that stopped and can be restarted),
  :attr:`~Backend.exclusive_machine` (jobs that take this machine's cores run
  one at a time side by side), :meth:`~Backend.discard_staging` (what
  ``pdbatch jobs prune`` deletes besides the job's folder).
* **Set-up**: :meth:`~Backend.check` (``pdbatch check``: the project a first job needs).
* **Models**: :meth:`~Backend.known_models` (for messages).
* **BigQuery tables** (``pdbatch.table``): :attr:`~Backend.accepts_tables`,
  :meth:`~Backend.check_table_job` (before anything is created) and
  :meth:`~Backend.submit_tables` (one job per request table).
* **What a call may contain**: :meth:`~Backend.body_fields`,
  :meth:`~Backend.unsupported_params`, :attr:`~Backend.schema_support`
  (what a ``schema=`` may use); :attr:`~Backend.scores_labels`
  (``df.llama.classify``: label probabilities, or an enum schema).
* **Estimates**: :meth:`~Backend.count_tokens`, :meth:`~Backend.context_window`,
  :meth:`~Backend.batch_price` and :attr:`~Backend.prices_as_of` (``preview``, ``max_cost``).
* **The response cache**: :meth:`~Backend.cache_identity`.
* **Settings**: a backend is constructed with its settings as keyword
  arguments (``Vertex(project=...)``); for a setting left out, read
  :func:`pdbatch.config.backend_default` (``configure(<name>={...})``, then
  ``PDBATCH_<NAME>_<SETTING>``), so users set defaults for any backend the
  same way. It must be rebuildable from :meth:`~Backend.settings` alone,
  without credentials, so that ``pdbatch.attach`` can re-create it in a new
  process; :meth:`~Backend.from_settings` is where settings read from a job
  folder are checked before they are trusted (an endpoint credentials would
  be sent to).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError
from ..lines.schemacheck import SchemaSupport
from ..models import Kind
from ..pricing import PRICES_AS_OF, published_price

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ACTIVE_STATES", "STATES", "TERMINAL_STATES", "Backend", "JobStatus"]

#: Job states, as Vertex AI names them; every backend reports these names.
STATES = (
    "JOB_STATE_UNSPECIFIED",
    "JOB_STATE_QUEUED",
    "JOB_STATE_PENDING",
    "JOB_STATE_RUNNING",
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLING",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_PAUSED",
    "JOB_STATE_EXPIRED",
    "JOB_STATE_UPDATING",
    "JOB_STATE_PARTIALLY_SUCCEEDED",
)
#: States a job never leaves. EXPIRED and PARTIALLY_SUCCEEDED are terminal too,
#: though the official SDK's wait loop forgets them.
TERMINAL_STATES = frozenset(
    {
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_FAILED",
        "JOB_STATE_CANCELLED",
        "JOB_STATE_EXPIRED",
        "JOB_STATE_PARTIALLY_SUCCEEDED",
    }
)
ACTIVE_STATES = frozenset(STATES) - TERMINAL_STATES
#: Terminal states whose output is complete enough to join without ``partial=True``.
OK_STATES = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"})


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of a job, as a backend reports it.

    Attributes
    ----------
    state : str
        One of :data:`STATES`.
    total : int or None
        Requests in the job, when known.
    succeeded, failed : int
        Rows finished so far (``completionStats`` on Vertex).
    error : str or None
        The job-level error, set when it failed or was cancelled.
    output : str or None
        Where the output lives (a folder, ``gs://`` prefix or ``bq://`` table).
    console_url : str or None
        A link for people to look at the job.
    stalled : bool
        The job is not finished but nothing runs it any more (a local worker
        that died): :meth:`Backend.resume` can restart it, and ``wait`` does.
    extra : dict
        Anything else the backend wants to show (create/update times, ...).
    """

    state: str
    total: int | None = None
    succeeded: int = 0
    failed: int = 0
    error: str | None = None
    output: str | None = None
    console_url: str | None = None
    stalled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """True when the job is in a terminal state."""
        return self.state in TERMINAL_STATES

    @property
    def finished(self) -> int:
        """Rows finished, succeeded or failed."""
        return self.succeeded + self.failed


class Backend(abc.ABC):
    """Where jobs run. Subclass it, and register it with :func:`pdbatch.backends.register`."""

    #: The registry name (``"local"``, ``"vertex"``, ...).
    name: ClassVar[str]
    #: Largest input file the provider accepts, in request lines and in bytes
    #: (``None``: no limit). Request files are split at these limits while
    #: they are written, so a backend is handed files it can send as they are.
    max_requests_per_file: int | None = None
    max_bytes_per_file: int | None = None
    #: Seconds ``wait`` and the status widget sleep between two status checks
    #: (a class default, or set per object from a setting).
    poll_seconds: float = 10.0
    #: Whether :meth:`submit` can take ``extra_columns`` (``passthrough=True``:
    #: the frame's other columns copied into the backend's input and output).
    accepts_passthrough: ClassVar[bool] = False
    #: Lower-case column names a passed-through column may not take, because
    #: the backend's service reads or writes them (``passthrough=True`` refuses
    #: them, or renames them with ``rename_reserved=True``).
    reserved_columns: ClassVar[tuple[str, ...]] = ()
    #: Whether a job takes this machine's cores for itself (a local engine):
    #: side by side (``model=[...]``) then runs such jobs one after another
    #: rather than at once, where they would fight over the same cores.
    exclusive_machine: ClassVar[bool] = False
    #: When the prices :meth:`batch_price` gives were read (shown with every estimate).
    prices_as_of: ClassVar[str] = PRICES_AS_OF
    #: Endpoints a request file's lines may name besides chat completions and
    #: embeddings, each with the kind whose result columns its answers fill
    #: (``{"/v1/responses": "chat"}``); :meth:`submit` then finds the endpoint
    #: in the lines' ``url``. Lines naming another endpoint fail alone.
    extra_urls: ClassVar[Mapping[str, Kind]] = {}
    #: What the backend's structured output honours in a ``schema=``: the
    #: types, keywords and shapes anything else in the schema is refused for,
    #: before anything is sent (:mod:`pdbatch.lines.schemacheck`). None: no limit
    #: is declared; the schema is only checked against the JSON Schema metaschema.
    schema_support: ClassVar[SchemaSupport | None] = None
    #: Whether :meth:`submit_tables` runs jobs that read BigQuery request
    #: tables and write BigQuery output tables (``pdbatch.table(...)``).
    accepts_tables: ClassVar[bool] = False
    #: Whether the backend's engine reads the ``label_scores`` body field
    #: (:mod:`pdbatch.results.classify`) and answers with each label's
    #: log-probability. ``df.llama.classify`` sends other backends the labels
    #: as an ``enum`` JSON schema instead: they name a label, without probabilities.
    scores_labels: ClassVar[bool] = False

    @abc.abstractmethod
    def model_name(self, model: str | None, kind: Kind) -> str:
        """Resolve a user's model name to the one written into request bodies.

        Raises :class:`pdbatch.errors.ConfigError` with close matches for an
        unknown model.
        """

    @abc.abstractmethod
    def submit(
        self,
        files: list[Path],
        *,
        model: str,
        kind: Kind,
        n_requests: int,
        display_name: str,
        extra_columns: pa.Table | None = None,
    ) -> list[str]:
        """Start the job(s) for the request lines in ``files`` and return their ids.

        ``files`` are JSONL files within :attr:`max_requests_per_file` and
        :attr:`max_bytes_per_file`; the backend may take them over (move them).
        ``extra_columns`` (given only to a backend that :attr:`accepts_passthrough`)
        holds the frame's columns for the rows sent, in request-line order,
        renamed away from :attr:`reserved_columns`. Returns a list because a
        backend may spread the files over several jobs to stay under its
        provider's limits; most return one id. Must return quickly: the job
        runs on without the caller.
        """

    @abc.abstractmethod
    def status(self, job_id: str) -> JobStatus:
        """The job's current status (one call to the service)."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Ask the job to stop. Rows already written stay readable."""

    @abc.abstractmethod
    def fetch_output(self, job_id: str, dest: Path) -> list[Path]:
        """Make the job's output lines available as local JSONL files under ``dest``."""

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """JSON-serialisable settings that rebuild this backend (never credentials)."""

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Backend:
        """Rebuild a backend from :meth:`settings` saved in a job folder (used by ``pdbatch.attach``).

        A job folder is data anyone could have written: override this to
        refuse settings that are not trusted before building the backend
        (Vertex refuses an endpoint its credentials should not be sent to).
        """
        return cls(**settings)

    def serves(self, kind: Kind) -> bool:
        """Whether this backend runs requests of ``kind`` at all (a request file's other lines still run).

        A request file's lines of a kind the backend does not serve are each
        that line's error (``invalid request: ...``), not a refusal of the file;
        a frame's call of that kind is refused by :meth:`model_name`.
        """
        return True

    def known_models(self, kind: Kind) -> list[str]:
        """The models of ``kind`` this backend offers, for messages that say what it has ([]: it cannot list them).

        A request file naming a model the backend does not have is refused
        with this list (pdbatch never guesses a replacement).
        """
        return []

    def count_tokens(self, model: str, kind: Kind, bodies: list[dict[str, Any]]) -> list[int] | None:
        """Prompt tokens of each request body with the model's own tokenizer, or None if unavailable.

        ``preview`` falls back to an approximation when a backend returns None.
        """
        return None

    def context_window(self, model: str) -> int | None:
        """Tokens a request (prompt plus answer) may use, when known."""
        return None

    def batch_price(self, model: str) -> tuple[float, float] | None:
        """US$ per million (input, output) tokens of a batch job on ``model``, or None if unknown.

        ``preview`` and ``max_cost`` use it when the user passed no ``prices=``
        for the model. The default looks the model up in pdbatch's table of
        published prices (:mod:`pdbatch.pricing`); a backend that runs models
        for free returns ``(0.0, 0.0)``.
        """
        return published_price(model)

    def check(self, model: str | None = None, *, kind: Kind | None = None) -> Any:
        """Check the set-up a first job of ``model`` needs, without running one (``pdbatch check``).

        Returns an object whose ``str`` is one line per check and whose ``ok``
        says whether all passed, or None when the backend has nothing to check
        (the default).
        """
        return None

    def body_fields(self, kind: Kind) -> Mapping[str, Callable[[Any], str | None]]:
        """Request body fields this backend takes beyond OpenAI's, each with its check.

        A check returns what is wrong with a value, or None (see
        :mod:`pdbatch.lines.params`). Most backends add none.
        """
        return {}

    def unsupported_params(self, kind: Kind, params: Mapping[str, Any]) -> dict[str, str]:
        """The body fields among ``params`` that this backend cannot honour, each with why.

        Called before anything is submitted, with fields already checked by
        type and range; a field named here refuses the call rather than being
        ignored by the service. Most backends honour everything.
        """
        return {}

    def unsupported_for_model(self, model: str, kind: Kind, params: Mapping[str, Any]) -> dict[str, str]:
        """The body fields among ``params`` that ``model`` cannot honour, each with why.

        As :meth:`unsupported_params`, for a backend whose models differ in what
        they take (``model`` as request bodies name it, from :meth:`model_name`);
        asked before anything is written or sent. A frame's call asks once
        with its shared fields (and is refused whole), then, when
        :meth:`checks_messages` says so, per row with ``{"messages": ...}``
        (the row's own list: a row named here gets its own error); a request
        file asks per line with the line's whole body but ``model``
        (``messages`` too), and a line named here gets its own error. Most
        backends refuse nothing here.
        """
        return {}

    def checks_messages(self, model: str, kind: Kind) -> bool:
        """Whether :meth:`unsupported_for_model` may refuse a body's ``messages`` for ``model``.

        A frame's ``messages=`` call then asks it about each row's own
        messages, and a row it refuses gets its own error
        (:mod:`pdbatch.jobs.rowmodel`); otherwise no row is looked at, so a
        large frame costs nothing more. Most backends take any messages.
        """
        return False

    def cache_identity(self, model: str, kind: Kind) -> dict[str, Any]:
        """What decides this backend's answers besides its name, the model name and the request body.

        The response cache keys each answer on these too, so that settings
        that give different answers (other weights for the same model name,
        another context window) never share cached answers. The default,
        nothing more, suits services where the model name fixes the weights.

        Returns
        -------
        dict
            JSON-serialisable values; an empty dict adds nothing to the key.
        """
        return {}

    def discard_staging(self, job_id: str) -> list[str]:
        """Delete what :meth:`submit` staged for an ended job away from its folder; returns what it deleted.

        ``pdbatch jobs prune`` calls it before removing the job's folder, best
        effort (a failure is reported, and the folder goes anyway). Only what
        pdbatch itself wrote may go, never a user's own files nor the answers
        the job wrote. The default deletes nothing: request files staged on
        this machine live in the job's folder, removed with it.
        """
        return []
    def check_table_job(self, *, model: str, kind: Kind, tables: Mapping[str, str]) -> None:
        """Refuse, before anything is created, a table job this backend cannot run.

        ``tables`` maps what each table is (for the message) to its dataset's
        location; ``model`` is as written in the bodies. The default refuses
        every table job: only a backend that :attr:`accepts_tables` runs them.
        """
        raise ConfigError(f"the {self.name!r} backend cannot run a job on a BigQuery table; "
                          f"use a backend that reads tables, e.g. backend='vertex'")

    def submit_tables(
        self, tables: list[tuple[str, str, int]], *, model: str, kind: Kind, display_name: str
    ) -> list[str]:
        """Start one job per ``(input table, output table, rows)`` and return their ids.

        The input tables hold ``custom_id``, ``method``, ``url``, ``body`` (JSON)
        and pass-through columns (created by :mod:`pdbatch.jobs.tablejob`); each job
        writes its answers, with the pass-through columns, to its output table,
        which must not exist. Only a backend that :attr:`accepts_tables` implements it.
        """
        raise ConfigError(f"the {self.name!r} backend cannot run a job on BigQuery tables; "
                          f"use a backend that reads tables, e.g. backend='vertex'")

    def resume(self, job_id: str) -> bool:
        """Restart a job whose status says it :attr:`~JobStatus.stalled`; returns True if it did.

        ``wait`` and the status widget call it when a status is ``stalled``.
        Most backends' jobs never stall (the service runs them), and cannot.
        """
        return False

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"
