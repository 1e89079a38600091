"""The Vertex AI backend: batch prediction jobs on Google's open models (Llama, gpt-oss, ...).

A job's request lines are staged in Cloud Storage (uploaded JSONL files) or in
BigQuery (a table loaded from them), one batch prediction job is created per
``max_requests_per_job`` requests with google-cloud-aiplatform, and the output
(JSONL files under ``outputInfo.gcsOutputDirectory``, or an output table) is
brought back as local JSONL files for :mod:`pdbatch.results.parse`. Where requests
and answers go is :mod:`._staging`; the job resource that is created and read
back is :mod:`._job_resource`; submitting a frame's files is :mod:`._submit`.

Settings come from the constructor, then ``pdbatch.configure(vertex={...})``,
then ``PDBATCH_VERTEX_<NAME>`` environment variables, then the defaults below.
Credentials come from ``credentials=`` or Application Default Credentials and
are never saved: :meth:`Vertex.settings` rebuilds everything else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .. import config
from ..errors import ConfigError, PdbatchError
from ..lines.params import Check
from ..models import Kind, parse_vertex, resolve_vertex, vertex_default
from . import _gcp, _gcp_io, _gemini_chat, _gemini_embed, _preflight, _staging, _submit, _tables
from ._endpoint import check_saved_settings
from ._gcp import BqUri, parse_uri, retrying, translate
from ._job_resource import job_status, location_of
from ._schema_support import OPENAI_STRICT
from .base import Backend, JobStatus

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Vertex"]

DEFAULTS: dict[str, Any] = {
    "project": None,
    # None: each job runs where its model is served (models.VertexModel.region).
    "location": None,
    "staging": None,
    "output": None,
    "api_endpoint": None,
    # REST everywhere: the transport the emulator tests exercise is the one that ships.
    "api_transport": "rest",
    "max_requests_per_file": 200_000,
    "max_bytes_per_file": 1_000_000_000,
    "max_requests_per_job": 200_000,
    "poll_seconds": 10.0,
    # Check the project before the first job of a model (free checks, and one
    # online request of max_tokens=1): see ._preflight.
    "preflight": True,
}
_INTS = {"max_requests_per_file", "max_bytes_per_file", "max_requests_per_job"}
#: Multi-regions served from their own hosts (sdk: aiplatform.constants.base.MREP_JURISDICTIONS,
#: aiplatform.utils.mrep_endpoint), not "<location>-aiplatform.googleapis.com".
MULTI_REGIONS = ("us", "eu")
#: The global location is served from the host without a region (sdk: aiplatform.utils, "global").
GLOBAL = "global"


class Vertex(Backend):
    """Run batch jobs on Vertex AI batch prediction.

    Parameters
    ----------
    project : str
        Google Cloud project id (``PDBATCH_VERTEX_PROJECT``, else ``GOOGLE_CLOUD_PROJECT``).
    location : str, optional
        Where the jobs run, e.g. ``"us-central1"``. Default: each model's own
        region (gpt-oss-120b ``us-central1``, Llama 4 ``us-east5``, ...; see
        ``pdbatch models``). A location that does not serve the model is
        refused before anything is uploaded; ``"global"`` runs batch jobs for
        the models that list it (gemini-embedding-2) only.
    staging : str
        Where request lines are put: ``"gs://bucket/prefix/"`` (JSONL files) or
        ``"bq://project.dataset"`` (a new table per job). Needed to submit.
    output : str, optional
        Where answers go: a ``gs://`` prefix, ``bq://project.dataset`` or
        ``bq://project.dataset.table`` (the table must not exist). Default: next
        to the input (a folder beside the uploaded files, or a table in the
        staging dataset).
    credentials : google.auth.credentials.Credentials, optional
        Default: Application Default Credentials. Never saved.
    api_endpoint : str, optional
        Another Vertex AI endpoint, e.g. ``"http://127.0.0.1:8080"`` for an emulator.
    api_transport : {"rest", "grpc"}
        How to talk to Vertex AI.
    max_requests_per_file, max_bytes_per_file : int
        Limits per input file (default 200,000 requests, 1 GB).
    max_requests_per_job : int
        Requests per batch prediction job (default 200,000); a larger frame
        runs as several jobs behind one :class:`~pdbatch.jobs.job.BatchJob`.
    poll_seconds : float
        Seconds between status checks while waiting (default 10).
    preflight : bool
        Check the project before the first job of a model in a location (default
        True): free checks (project, staging rights, service agent) and, for a
        chat model, one online request of ``max_tokens=1`` (a fraction of a
        cent), remembered under ``PDBATCH_HOME``. ``PDBATCH_VERTEX_PREFLIGHT=0``
        turns it off too. :meth:`check` runs every check on demand.

    Examples
    --------
    >>> vx = Vertex(project="my-proj", staging="gs://my-bucket/pdbatch/")  # doctest: +SKIP
    >>> print(vx.check())  # doctest: +SKIP
    >>> df.llama.batch_predict("Summarize: {text}", model="gpt-oss-120b-maas",
    ...                        backend=vx, max_tokens=256)  # doctest: +SKIP
    """

    name = "vertex"
    #: BigQuery input tables can carry the frame's other columns into the output table.
    accepts_passthrough: ClassVar[bool] = True
    #: Names a pass-through column may not take (the service reads or writes them).
    reserved_columns: ClassVar[tuple[str, ...]] = _gcp_io.RESERVED_COLUMNS
    schema_support = OPENAI_STRICT
    #: Jobs read BigQuery request tables and write output tables (``pdbatch.table``).
    accepts_tables: ClassVar[bool] = True

    def __init__(
        self,
        *,
        project: str | None = None,
        location: str | None = None,
        staging: str | None = None,
        output: str | None = None,
        credentials: Any = None,
        api_endpoint: str | None = None,
        api_transport: str | None = None,
        max_requests_per_file: int | None = None,
        max_bytes_per_file: int | None = None,
        max_requests_per_job: int | None = None,
        poll_seconds: float | None = None,
        preflight: bool | str | None = None,
    ) -> None:
        _gcp.import_google()
        given = {k: v for k, v in locals().items() if k in DEFAULTS}
        s = {k: _setting(k, v) for k, v in given.items()}
        s["project"] = s["project"] or os.environ.get("GOOGLE_CLOUD_PROJECT")
        if not s["project"]:
            raise ConfigError(
                "Vertex needs a Google Cloud project: Vertex(project='my-project'), "
                "pdbatch.configure(vertex={'project': ...}) or PDBATCH_VERTEX_PROJECT"
            )
        if s["api_transport"] not in ("rest", "grpc"):
            raise ConfigError(f"api_transport={s['api_transport']!r}: use 'rest' or 'grpc'")
        for key in ("staging", "output"):
            if s[key]:
                uri = parse_uri(s[key], key)  # refuse a bad URI now, not after the upload
                if key == "staging" and isinstance(uri, BqUri) and uri.table:
                    raise ConfigError(
                        f"staging={s[key]!r} names a table; give the dataset "
                        f"('bq://{uri.dataset_id}'): each job gets a new table in it"
                    )
        for key in _INTS:
            if int(s[key]) < 1:
                raise ConfigError(f"{key}={s[key]}: must be a positive number")
        self.project: str = s["project"]
        self.location: str | None = s["location"]
        self.staging: str | None = s["staging"]
        self.output: str | None = s["output"]
        self.api_endpoint: str | None = s["api_endpoint"]
        self.api_transport: str = s["api_transport"]
        self.max_requests_per_job = int(s["max_requests_per_job"])
        # One file never holds more than one job may take, so files group into jobs.
        self.max_requests_per_file = min(int(s["max_requests_per_file"]), self.max_requests_per_job)
        self.max_bytes_per_file = int(s["max_bytes_per_file"])
        self.poll_seconds = float(s["poll_seconds"])
        self.preflight = _boolean("preflight", s["preflight"])
        self._credentials = credentials
        self._job_clients: dict[str, Any] = {}

    def settings(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this backend elsewhere (credentials excluded)."""
        return {
            "project": self.project,
            "location": self.location,
            "staging": self.staging,
            "output": self.output,
            "api_endpoint": self.api_endpoint,
            "api_transport": self.api_transport,
            "max_requests_per_file": self.max_requests_per_file,
            "max_bytes_per_file": self.max_bytes_per_file,
            "max_requests_per_job": self.max_requests_per_job,
            "poll_seconds": self.poll_seconds,
            "preflight": self.preflight,
        }

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Vertex:
        """Rebuild from settings saved in a job folder, refusing an endpoint that is not trusted.

        See :mod:`pdbatch.backends._endpoint`: credentials go only to Google's
        own hosts, the endpoint this session is configured with, or a loopback
        emulator.
        """
        check_saved_settings(settings, _setting("api_endpoint", None))
        return cls(**settings)

    def body_fields(self, kind: Kind) -> Mapping[str, Check]:
        """Gemini embeddings' own fields: ``input_type`` ("query", "passage"), ``task_type``, ``title``, ..."""
        return _gemini_embed.BODY_FIELDS if kind == "embeddings" else {}

    def unsupported_for_model(self, model: str, kind: Kind, params: Mapping[str, Any]) -> dict[str, str]:
        """What a Gemini model cannot take of an OpenAI body (see :mod:`._gemini_chat`, :mod:`._gemini_embed`).

        A request file's line is asked with its whole body (``messages`` too),
        a frame's ``messages=`` row with its own messages (:meth:`checks_messages`):
        what the conversion to Gemini lines would refuse at submit time.
        """
        spec = parse_vertex(model, kind)
        if spec.wire == "gemini-chat" and kind == "chat":
            return _gemini_chat.unsupported(params)
        if spec.wire == "gemini-embedding" and kind == "embeddings":
            return _gemini_embed.unsupported(spec, params)
        return {}

    def checks_messages(self, model: str, kind: Kind) -> bool:
        """Gemini chat models: the conversion to Gemini lines refuses some messages (a tool role, image parts)."""
        return kind == "chat" and parse_vertex(model, kind).wire == "gemini-chat"

    def model_name(self, model: str | None, kind: Kind) -> str:
        """The model as request bodies name it (``meta/llama-4-scout-17b-16e-instruct-maas``).

        Accepts ``id``, ``publisher/id`` or ``publishers/<p>/models/<id>`` (any
        publisher model, even one missing from :data:`pdbatch.models.VERTEX_MODELS`:
        the live service is asked about it before submitting). A retired model is
        refused here, before anything is written; a deprecated one warns.
        """
        return resolve_vertex(model, kind, location=self.location).body_name

    def check(self, model: str | None = None, *, kind: Kind | None = None) -> _preflight.Report:
        """Check this project for ``model`` without creating a job; print the result to read it.

        Checks, one line each (✔ passed, ✘ failed with its fix, ? could not tell):
        credentials resolve and the project answers (free); the model is served
        in the location and enabled for the project, by one online chat
        completion of ``max_tokens=1`` (a fraction of a cent, shown; embedding
        models are asked of Model Garden, free); the caller's rights on the
        staging bucket (``testIamPermissions``) or dataset and its location;
        the Vertex AI service agent's access where the IAM policy is readable.

        Parameters
        ----------
        model : str, optional
            The model (default: the default chat model, or of ``kind``).
        kind : {"chat", "embeddings"}, optional
            What the model is for, when ``model`` is a name the catalog does not know.

        Returns
        -------
        Report
            ``.ok`` (no check failed), ``.lines``, ``.cost`` (US$ of the online request).
        """
        spec = parse_vertex(model or vertex_default(kind or "chat", self.location), kind)
        return _preflight.check(self, spec, self.location or spec.region)

    # ------------------------------------------------------------- clients
    def _endpoint(self, location: str) -> str:
        if self.api_endpoint:
            return self.api_endpoint
        if location in MULTI_REGIONS:
            return f"aiplatform.{location}.rep.googleapis.com"
        if location == GLOBAL:
            return "aiplatform.googleapis.com"
        return f"{location}-aiplatform.googleapis.com"

    def _base_url(self, location: str) -> str:
        """The REST root for plain HTTP calls (the preflight's online request): the same host as the clients."""
        endpoint = self._endpoint(location).rstrip("/")
        return endpoint if "://" in endpoint else f"https://{endpoint}"

    def _client(self, service: str, location: str) -> Any:
        # One client per region: the regional endpoint serves only its own jobs.
        key = f"{service}:{location}"
        if key not in self._job_clients:
            from google.cloud import aiplatform_v1

            endpoint = self._endpoint(location)
            credentials = self._credentials
            if credentials is None and endpoint.startswith("http://"):
                credentials = _anonymous()  # a local emulator: no Google sign-in
            with translate("connecting to Vertex AI", where=self._where()):
                self._job_clients[key] = getattr(aiplatform_v1, service)(
                    transport=self.api_transport,
                    credentials=credentials,
                    client_options={"api_endpoint": endpoint},
                )
        return self._job_clients[key]

    def _jobs(self, location: str) -> Any:
        return self._client("JobServiceClient", location)

    def _storage(self) -> Any:
        from google.cloud import storage  # type: ignore[attr-defined]

        creds = self._credentials or (
            _anonymous() if _gcp.emulated("STORAGE_EMULATOR_HOST") else None
        )
        return storage.Client(project=self.project, credentials=creds)

    def _bigquery(self) -> Any:
        from google.cloud import bigquery

        creds = self._credentials or (
            _anonymous() if _gcp.emulated("BIGQUERY_EMULATOR_HOST") else None
        )
        return bigquery.Client(project=self.project, credentials=creds)

    def _where(self, *uris: object, location: str | None = None) -> str:
        extra = "".join(f", {u}" for u in uris if u)
        region = location or self.location
        shown = repr(region) if region else "the model's own"
        return f"project {self.project!r}, region {shown}{extra}"

    # ------------------------------------------------------------- submit
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
        """Stage the request files and create one batch prediction job per ``max_requests_per_job``.

        Parameters
        ----------
        files : list of Path
            JSONL request files within this backend's file limits.
        model : str
            The model as in request bodies (``publisher/id``).
        kind : {"chat", "embeddings"}
        n_requests : int
            Lines in all files.
        display_name : str
            The job's name in the console (numbered when there are several jobs).
        extra_columns : pyarrow.Table, optional
            Pass-through columns, one row per request line in file order
            (BigQuery staging only): copied into the input and output tables.

        Returns
        -------
        list of str
            The jobs' resource names, ``projects/P/locations/L/batchPredictionJobs/N``.
        """
        return _submit.submit(self, files, model=model, kind=kind, display_name=display_name,
                              extra_columns=extra_columns)

    def check_table_job(self, *, model: str, kind: Kind, tables: Mapping[str, str]) -> None:
        """Refuse tables outside this backend's region, and a model that cannot run (see :mod:`._tables`)."""
        _tables.check(self, model=model, kind=kind, tables=tables)

    def submit_tables(
        self, tables: list[tuple[str, str, int]], *, model: str, kind: Kind, display_name: str
    ) -> list[str]:
        """One batch prediction job per request table, BigQuery in and out (see :mod:`._tables`)."""
        return _tables.submit(self, tables, model=model, kind=kind, display_name=display_name)

    # ------------------------------------------------------------- status
    def _get(self, job_id: str) -> Any:
        client = self._jobs(location_of(job_id))
        with translate(f"reading job {job_id}", where=self._where(), job_id=job_id):
            return retrying(lambda: client.get_batch_prediction_job(name=job_id))

    def status(self, job_id: str) -> JobStatus:
        """The job's state, counts (``completionStats``), error and output location."""
        return job_status(job_id, self._get(job_id))

    def cancel(self, job_id: str) -> None:
        """Ask Vertex AI to stop the job (best effort: rows already written stay)."""
        from google.api_core import exceptions as gexc

        client = self._jobs(location_of(job_id))
        try:
            with translate(f"cancelling job {job_id}", where=self._where(), job_id=job_id):
                retrying(lambda: client.cancel_batch_prediction_job(name=job_id))
        except PdbatchError as exc:
            # Cancelling a job that already ended is refused: nothing left to stop.
            refused = isinstance(exc.__cause__, (gexc.BadRequest, gexc.FailedPrecondition))
            if not (refused and self.status(job_id).done):
                raise

    def discard_staging(self, job_id: str) -> list[str]:
        """Delete the request files uploaded for the job under ``staging=`` (``pdbatch jobs prune``).

        The answers the job wrote, BigQuery tables and files outside
        ``staging=`` stay.
        """
        if not self.staging:
            return []
        source = self._get(job_id).input_config.gcs_source
        return _staging.discard(list(source.uris) if source else [], parse_uri(self.staging, "staging"),
                                storage=self._storage, where=self._where)

    def fetch_output(self, job_id: str, dest: Path) -> list[Path]:
        """Download the job's output (every ``*.jsonl`` file, or its output table) into ``dest``."""
        return _staging.fetch(self._get(job_id), dest / job_id.rsplit("/", 1)[-1], storage=self._storage,
                              bigquery=self._bigquery, where=self._where)


def _setting(name: str, value: Any) -> Any:
    """Explicit argument, ``configure(vertex=...)``, ``PDBATCH_VERTEX_<NAME>``, then the default."""
    return config.backend_setting("vertex", name, value, DEFAULTS[name])


def _boolean(name: str, value: Any) -> bool:
    """A yes/no setting, from Python (True/False) or an environment variable ("1", "0", "true", ...)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r}: use True or False (PDBATCH_VERTEX_{name.upper()}=1 or 0)")


def _anonymous() -> Any:
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()
