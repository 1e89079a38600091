"""Google Cloud plumbing for the Vertex backend: imports, URIs, retries, errors, storage I/O.

Everything here talks to Cloud Storage and BigQuery through their own client
libraries (streamed uploads and downloads, load jobs, ``to_arrow``), never
row by row. Vendor exceptions become pdbatch errors in one place,
:func:`translate`, so that every message says what to check.
"""

from __future__ import annotations

import base64
import contextlib
import decimal
import importlib.util
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pyarrow as pa

from ..errors import BackendError, ConfigError, JobNotFoundError, MissingDependencyError

__all__ = ["BqUri", "GcsUri", "import_google", "parse_uri", "retrying", "translate"]

T = TypeVar("T")

#: Columns of a BigQuery request table, as the service reads them.
REQUEST_COLUMNS = ("custom_id", "method", "url", "body")
#: Output columns the shared parser reads (pass-through columns are left in BigQuery):
#: ``response`` and ``id`` (doc: reserved for the output), ``status`` (Gemini
#: shape) or ``error`` (Model Garden shape) for a failed row.
OUTPUT_COLUMNS = ("custom_id", "response", "status", "error", "id")
#: The one list of names a pass-through column may not take: the request
#: columns, and what the job writes next to them (a pass-through ``error``
#: or ``status`` would read as the row's failure).
RESERVED_COLUMNS = (*REQUEST_COLUMNS, *OUTPUT_COLUMNS[1:], "processed_time")


def import_google() -> None:
    """Check that the Google client libraries are installed, or say which extra installs them.

    Only found, not imported: importing them takes seconds, which building a
    backend to resolve a model name should not cost.
    """
    for module, package in (
        ("google.cloud.aiplatform_v1", "google-cloud-aiplatform"),
        ("google.cloud.storage", "google-cloud-storage"),
        ("google.cloud.bigquery", "google-cloud-bigquery"),
    ):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # ValueError: a module blocked in sys.modules
            found = False
        if not found:
            raise MissingDependencyError(package, "vertex", "The Vertex AI backend")


# --------------------------------------------------------------------- URIs
_GCS = re.compile(r"^gs://([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(?:/(.*))?$")
_BQ_PART = re.compile(r"^[A-Za-z0-9_:.-]+$")


@dataclass(frozen=True)
class GcsUri:
    """``gs://bucket/prefix/`` (the prefix always ends with ``/`` or is empty)."""

    bucket: str
    prefix: str

    def child(self, name: str) -> GcsUri:
        return GcsUri(self.bucket, f"{self.prefix}{name.strip('/')}/")

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class BqUri:
    """``bq://project.dataset`` or ``bq://project.dataset.table``."""

    project: str
    dataset: str
    table: str | None = None

    @property
    def dataset_id(self) -> str:
        return f"{self.project}.{self.dataset}"

    def with_table(self, table: str) -> BqUri:
        return BqUri(self.project, self.dataset, table)

    def __str__(self) -> str:
        return f"bq://{self.dataset_id}" + (f".{self.table}" if self.table else "")


def parse_uri(uri: str, what: str) -> GcsUri | BqUri:
    """Parse a ``gs://bucket/prefix`` or ``bq://project.dataset[.table]`` URI.

    Raises :class:`ConfigError` naming the setting (``what``) and the two accepted forms.
    """
    hint = (
        f"{what}={uri!r} is not a Cloud Storage prefix or BigQuery dataset; "
        f"use 'gs://my-bucket/some/prefix/' or 'bq://my-project.my_dataset'"
    )
    if not isinstance(uri, str):
        raise ConfigError(hint)
    m = _GCS.match(uri)
    if m:
        prefix = (m.group(2) or "").strip("/")
        return GcsUri(m.group(1), f"{prefix}/" if prefix else "")
    if uri.startswith("bq://"):
        # Project ids may hold ':' (domain-scoped) and '.'-free names otherwise.
        parts = uri[len("bq://") :].split(".")
        if 2 <= len(parts) <= 3 and all(p and _BQ_PART.match(p) for p in parts):
            return BqUri(*parts)
    raise ConfigError(hint)


# ------------------------------------------------------------------ retries
def transient() -> tuple[type[BaseException], ...]:
    from google.api_core import exceptions as gexc
    from requests import exceptions as rexc

    return (
        gexc.TooManyRequests,
        gexc.ResourceExhausted,
        gexc.InternalServerError,
        gexc.BadGateway,
        gexc.ServiceUnavailable,
        gexc.GatewayTimeout,
        rexc.ConnectionError,
        rexc.Timeout,
        ConnectionResetError,
    )


#: Tries per call, and the first back-off in seconds (doubled each time, with jitter).
TRIES = 5
BACKOFF = 0.5


def retrying(fn: Callable[[], T], *, only: tuple[type[BaseException], ...] | None = None) -> T:
    """Call ``fn``, retrying rate limits (429), 5xx and connection resets with exponential back-off.

    The number of tries is bounded (:data:`TRIES`); the last error propagates.
    ``only`` narrows the retried exceptions (job creation retries only what
    cannot have created a job).
    """
    retry_on = only or transient()
    for attempt in range(TRIES):
        try:
            return fn()
        except retry_on:
            if attempt == TRIES - 1:
                raise
            time.sleep(BACKOFF * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


# ------------------------------------------------------------------- errors
@contextlib.contextmanager
def translate(
    action: str, *, where: str, job_id: str | None = None, permission: str | None = None
) -> Iterator[None]:
    """Turn Google client exceptions into pdbatch errors that say what to check.

    Parameters
    ----------
    action : str
        What was being done, e.g. ``"uploading the requests to gs://b/p/"``.
    where : str
        The settings involved (project, region, bucket, dataset), shown in the message.
    job_id : str, optional
        For calls about one job: a 404 then means :class:`JobNotFoundError`.
    permission : str, optional
        The IAM permission the call needs (and the role that grants it), named
        when the service answers 403.
    """
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as aexc

    try:
        yield
    except (ConfigError, BackendError, JobNotFoundError):
        raise
    except gexc.NotFound as exc:
        if job_id is not None:
            raise JobNotFoundError(
                f"Vertex AI has no batch prediction job {job_id!r} ({_msg(exc)}). Check the "
                f"project and region in the id, and that these credentials can see that project."
            ) from exc
        raise BackendError(
            f"{action} failed: not found ({_msg(exc)}). Check that {where} exist "
            f"and that the names are spelled right."
        ) from exc
    except (gexc.Forbidden, gexc.PermissionDenied) as exc:
        if permission is None:
            raise _denied(action, where, exc) from exc
        raise BackendError(
            f"{action} failed: permission denied ({_msg(exc)}). The credentials in use need {permission}; "
            f"ask for it, or use a bucket or dataset where you have it ({where})."
        ) from exc
    except (gexc.Unauthorized, gexc.Unauthenticated) as exc:
        raise _denied(action, where, exc) from exc
    except aexc.DefaultCredentialsError as exc:
        raise BackendError(
            f"{action} failed: no Google credentials found. Run `gcloud auth application-default "
            f"login`, set GOOGLE_APPLICATION_CREDENTIALS, or pass credentials= to Vertex(...)."
        ) from exc
    except aexc.GoogleAuthError as exc:
        raise BackendError(
            f"{action} failed: the credentials were refused ({type(exc).__name__}). "
            f"Refresh them (`gcloud auth application-default login`)."
        ) from exc
    except (gexc.BadRequest, gexc.FailedPrecondition, gexc.Conflict) as exc:
        raise BackendError(f"{action} was refused: {_msg(exc)}. Check {where}.") from exc
    except gexc.RetryError as exc:
        raise BackendError(
            f"{action} failed: the service kept failing ({exc}). Try again later."
        ) from exc
    except gexc.GoogleAPICallError as exc:
        raise BackendError(
            f"{action} failed after {TRIES} tries: {_msg(exc)}. Check {where}; "
            f"if the service is overloaded, try again later."
        ) from exc
    except OSError as exc:  # connection refused / reset once retries ran out
        raise BackendError(
            f"{action} failed: cannot reach the service ({type(exc).__name__}: "
            f"{exc}). Check the network and api_endpoint."
        ) from exc


def _denied(action: str, where: str, exc: Any) -> BackendError:
    return BackendError(
        f"{action} failed: permission denied ({_msg(exc)}). Check {where}, that the Vertex AI "
        f"API is enabled there, and that the credentials in use (Application Default "
        f"Credentials unless credentials= was given) may use them."
    )


def _msg(exc: Any) -> str:
    # .message is the service's text without the request URL (which can be long); the REST
    # transport puts "METHOD URL: " in front of it, which says nothing the caller does not know.
    text = str(getattr(exc, "message", None) or exc)
    return _REQUEST_PREFIX.sub("", text, count=1)


_REQUEST_PREFIX = re.compile(r"^(?:GET|POST|PUT|PATCH|DELETE) \S+: ")


# ------------------------------------------------------------ Cloud Storage
def upload_files(client: Any, files: list[Path], dest: GcsUri) -> list[str]:
    """Upload ``files`` under ``dest`` (streamed, resumable in 8 MiB chunks); returns their URIs."""
    bucket = client.bucket(dest.bucket)
    uris = []
    for path in files:
        blob = bucket.blob(f"{dest.prefix}{path.name}")
        blob.chunk_size = 8 * 1024 * 1024  # resumable: a dropped connection resends one chunk
        blob.upload_from_filename(str(path), content_type="application/jsonl")
        uris.append(f"gs://{dest.bucket}/{blob.name}")
    return uris


def download_jsonl(client: Any, directory: str, dest: Path) -> list[Path]:
    """Download every ``*.jsonl`` under the ``gs://`` ``directory`` into ``dest``."""
    uri = parse_uri(directory.rstrip("/") + "/", "output directory")
    assert isinstance(uri, GcsUri)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for blob in sorted(client.list_blobs(uri.bucket, prefix=uri.prefix), key=lambda b: b.name):
        if not blob.name.endswith(".jsonl"):
            continue
        path = dest / blob.name[len(uri.prefix) :].replace("/", "__")
        blob.download_to_filename(str(path))
        paths.append(path)
    return paths


#: What each Cloud Storage step needs (doc, IAM): object rights only. Storage
#: Object User / Admin grant them but not storage.buckets.get, so pdbatch never
#: reads the bucket's metadata.
LIST_PERMISSION = "storage.objects.list (roles/storage.objectViewer, objectUser or objectAdmin)"
UPLOAD_PERMISSION = "storage.objects.create (roles/storage.objectCreator, objectUser or objectAdmin)"
DOWNLOAD_PERMISSION = "storage.objects.list and storage.objects.get (roles/storage.objectViewer or objectUser)"


def check_bucket(client: Any, uri: GcsUri) -> None:
    """Fail before submitting when the bucket is missing or unreadable (the job would fail later).

    Lists at most one object under the prefix: a missing bucket answers 404,
    missing rights 403, and nothing needs ``storage.buckets.get``.
    """
    list(client.list_blobs(uri.bucket, prefix=uri.prefix, max_results=1))


# ----------------------------------------------------------------- BigQuery
def check_region(client: Any, uri: BqUri, location: str, what: str, served: tuple[str, ...] = ()) -> None:
    """Refuse a dataset in another region than the job: the service cannot use it.

    ``served`` (the locations that serve the model, when known) decides which
    to change: the job's location, if the model is served where the dataset
    is; otherwise the dataset.
    """
    dataset = client.get_dataset(uri.dataset_id)
    if same_region(dataset.location or "", location):
        return
    movable = not served or any(same_region(dataset.location or "", s) for s in served)
    change = (
        f"Use a dataset in {location}, or Vertex(location={(dataset.location or '').lower()!r}) to run the "
        f"job where the dataset is." if movable else
        f"Change the dataset: use one in {location} (the model runs batch jobs only in {', '.join(served)}, "
        f"so the job cannot move to {dataset.location})."
    )
    raise ConfigError(
        f"{what}: the BigQuery dataset {uri.dataset_id} is in {dataset.location}, but the "
        f"Vertex AI job runs in {location}; batch prediction needs the dataset and the job "
        f"in the same region. {change}"
    )


def same_region(dataset_location: str, job_location: str) -> bool:
    """Whether a dataset in ``dataset_location`` can serve a job in ``job_location``.

    The open-models batch page says "The batch prediction job and the table
    must be in the same region" (Gemini's adds "Multi-region datasets are not
    supported"): the locations must be equal. A ``US`` dataset serves a job in
    the ``us`` multi-region, not one in ``us-central1``; only the page for
    custom-trained models allows that, and it is not this service.
    """
    return dataset_location.lower() == job_location.lower()


def request_schema() -> list[Any]:
    from google.cloud import bigquery

    return [
        bigquery.SchemaField("custom_id", "STRING", mode="REQUIRED"),
        bigquery.SchemaField("method", "STRING"),
        bigquery.SchemaField("url", "STRING"),
        bigquery.SchemaField("body", "JSON"),
    ]


def load_requests(client: Any, files: list[Path], table: BqUri, extra: pa.Table | None) -> None:
    """Load request JSONL files (and pass-through columns) into a new table with one load job.

    Newline-delimited JSON throughout: BigQuery fills a JSON column only from
    CSV, Avro or newline-delimited JSON files ("Working with JSON data"), not
    from Parquet. Without pass-through columns the files go as they are; with
    them, each request line gets its row's columns added as fields.
    """
    from google.cloud import bigquery

    table_id = f"{table.dataset_id}.{table.table}"
    schema = request_schema() + ([_bq_field(f) for f in extra.schema] if extra is not None else [])
    config = bigquery.LoadJobConfig(
        source_format="NEWLINE_DELIMITED_JSON", schema=schema, write_disposition="WRITE_APPEND"
    )
    if extra is None:
        for path in files:
            with open(path, "rb") as fh:
                client.load_table_from_file(fh, table_id, job_config=config).result()
        return
    with tempfile.TemporaryFile() as merged:
        _write_merged(files, extra, merged)
        merged.seek(0)
        client.load_table_from_file(merged, table_id, job_config=config).result()


def _write_merged(files: list[Path], extra: pa.Table, out: Any) -> None:
    """Write each request line with its pass-through row's fields added."""
    names = extra.column_names
    rows = (row for batch in extra.to_batches(max_chunksize=10_000) for row in batch.to_pylist())
    n = 0
    for path in files:
        with open(path, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                obj = orjson.loads(line)
                row = next(rows, None)
                if row is None:
                    raise ValueError(f"more request lines than the {extra.num_rows} pass-through rows")
                obj.update((k, _json_value(row[k])) for k in names)
                out.write(orjson.dumps(obj, default=_json_default) + b"\n")
                n += 1
    if next(rows, None) is not None:
        raise ValueError(f"{n} request lines but {extra.num_rows} pass-through rows")


def _json_value(value: Any) -> Any:
    # NaN is missing in pandas; JSON has no NaN, and BigQuery reads null as NULL.
    return None if isinstance(value, float) and value != value else value


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to BigQuery")


_BQ_TYPES = (
    (pa.types.is_boolean, "BOOLEAN"),
    (pa.types.is_integer, "INTEGER"),
    (pa.types.is_floating, "FLOAT"),
    (pa.types.is_string, "STRING"),
    (pa.types.is_large_string, "STRING"),
    (pa.types.is_binary, "BYTES"),
    (pa.types.is_large_binary, "BYTES"),
    (pa.types.is_timestamp, "TIMESTAMP"),
    (pa.types.is_date, "DATE"),
    (pa.types.is_decimal, "NUMERIC"),
)


def _bq_field(field: pa.Field) -> Any:
    from google.cloud import bigquery

    for test, name in _BQ_TYPES:
        if test(field.type):
            return bigquery.SchemaField(field.name, name)
    raise ConfigError(
        f"column {field.name!r} ({field.type}) cannot be passed through to BigQuery; "
        f"convert it to numbers, text, booleans or timestamps, or drop it"
    )


def read_output_table(client: Any, table_id: str, dest: Path) -> list[Path]:
    """Read an output table with ``to_arrow`` (in pages) into JSONL files for the shared parser."""
    from google.api_core.exceptions import NotFound

    try:
        table = client.get_table(table_id)
    except NotFound:
        return []  # not written yet (job still running, or failed early)
    keep = [f for f in table.schema if f.name in OUTPUT_COLUMNS]
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{table_id.replace(':', '_')}.jsonl"
    rows = client.list_rows(table, selected_fields=keep)
    # create_bqstorage_client=False: plain REST pages (the Storage Read API
    # would be one more service to enable and authorise, and emulators lack it).
    arrow = rows.to_arrow(create_bqstorage_client=False)
    with open(path, "wb") as out:
        for batch in arrow.to_batches(max_chunksize=10_000):
            for record in batch.to_pylist():
                out.write(orjson.dumps(record, default=str) + b"\n")
    return [path]


def emulated(env: str) -> bool:
    """True when a client library is pointed at a local emulator through ``env``."""
    return bool(os.environ.get(env))
