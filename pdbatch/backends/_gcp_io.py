"""Cloud Storage and BigQuery I/O for the Vertex backend: uploads, downloads, load jobs, output tables.

Everything here goes through the services' own client libraries (streamed
uploads and downloads, load jobs, ``to_arrow``), never row by row. The callers
wrap each step in :func:`._gcp.translate`, which names the permission it needs.
"""

from __future__ import annotations

import base64
import decimal
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from ..errors import ConfigError
from ._gcp import BqUri, GcsUri, parse_uri

__all__ = ["OUTPUT_COLUMNS", "RESERVED_COLUMNS", "check_bucket", "check_region", "download_jsonl", "load_requests",
           "read_output_table", "same_region", "upload_files"]

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
