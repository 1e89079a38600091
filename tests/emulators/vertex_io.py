"""Reading batch inputs from and writing outputs to the GCS/BigQuery emulators,
with the real client libraries (as the service itself would)."""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import re

OUTPUT_FILE = "predictions.jsonl"
OUTPUT_SHARD = "predictions_{:05d}.jsonl"  # when one job writes several files
RESERVED_INPUT_COLUMNS = {"response", "id"}  # produced by the job itself (doc)
DROPPED_OUTPUT_COLUMNS = {"method", "url"}

GCS_URI = re.compile(r"^gs://([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(?:/(.*))?$")
BQ_URI = re.compile(r"^bq://([A-Za-z0-9_.:-]+)$")


class JobFailure(Exception):
    """The job as a whole fails (state JOB_STATE_FAILED) with this message."""

    def __init__(self, message: str, code: int = 3):
        super().__init__(message)
        self.code = code  # google.rpc.Code: 3 INVALID_ARGUMENT, 5 NOT_FOUND, ...


def split_gcs(uri: str) -> tuple[str, str]:
    m = GCS_URI.match(uri)
    if not m:
        raise ValueError(f"invalid Cloud Storage URI {uri!r}")
    return m.group(1), m.group(2) or ""


def split_bq(uri: str) -> list[str]:
    """bq://p.d.t -> [p, d, t]; bq://p.d -> [p, d]; bq://p -> [p]."""
    m = BQ_URI.match(uri)
    parts = m.group(1).split(".") if m else []
    if not parts or len(parts) > 3 or not all(parts):
        raise ValueError(f"invalid BigQuery URI {uri!r}")
    return parts


# ---------------------------------------------------------------- Cloud Storage
def read_gcs_lines(client, uris: list[str]) -> list[str]:
    """Every non-blank line of every object named by uris; a trailing '*'
    matches all objects with that prefix."""
    from google.api_core.exceptions import NotFound

    lines: list[str] = []
    for uri in uris:
        bucket, name = split_gcs(uri)
        try:
            if name.endswith("*"):
                blobs = sorted(client.list_blobs(bucket, prefix=name[:-1]), key=lambda b: b.name)
                if not blobs:
                    raise JobFailure(f"No files match the input pattern {uri}", code=5)
                texts = [b.download_as_text() for b in blobs if not b.name.endswith("/")]
            else:
                texts = [client.bucket(bucket).blob(name).download_as_text()]
        except NotFound:
            raise JobFailure(f"Input file not found: {uri}", code=5) from None
        for text in texts:
            lines.extend(line for line in text.splitlines() if line.strip())
    return lines


def write_gcs_output(client, directory: str, lines: list[str], rows_per_file: int) -> list[str]:
    """Write JSONL under directory: one predictions.jsonl, or numbered shards."""
    bucket, prefix = split_gcs(directory.rstrip("/") + "/")
    chunks = [lines[i:i + rows_per_file] for i in range(0, len(lines), rows_per_file)]
    names = ([OUTPUT_FILE] if len(chunks) == 1
             else [OUTPUT_SHARD.format(i + 1) for i in range(len(chunks))])
    written = []
    for name, chunk in zip(names, chunks, strict=False):
        blob = client.bucket(bucket).blob(prefix + name)
        blob.upload_from_string("".join(line + "\n" for line in chunk),
                                content_type="application/jsonl")
        written.append(f"gs://{bucket}/{prefix}{name}")
    return written


def check_gcs_bucket(client, prefix: str) -> None:
    from google.api_core.exceptions import NotFound

    bucket, _ = split_gcs(prefix)
    try:
        client.get_bucket(bucket)
    except NotFound:
        raise JobFailure(f"Output bucket does not exist: gs://{bucket}", code=5) from None


# ---------------------------------------------------------------- BigQuery
def _json_safe(value):
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def read_bq_rows(client, uri: str):
    """(schema, rows as dicts) of the input table; JSON columns come back parsed."""
    from google.api_core.exceptions import NotFound

    parts = split_bq(uri)
    if len(parts) != 3:
        raise JobFailure(f"BigQuery input must be a table bq://project.dataset.table: {uri}")
    try:
        table = client.get_table(".".join(parts))
    except NotFound:
        raise JobFailure(f"Input table not found: {uri}", code=5) from None
    names = {f.name.lower() for f in table.schema}
    reserved = sorted(names & RESERVED_INPUT_COLUMNS)
    if reserved:
        raise JobFailure(f"The input table {uri} must not have the reserved column(s) "
                         f"{', '.join(reserved)}: they are written by the batch prediction job.")
    if "body" not in names:
        raise JobFailure(f"The input table {uri} has no `body` column.")
    rows = [{k: _json_safe(v) for k, v in row.items()} for row in client.list_rows(table)]
    return table.schema, rows


def output_schema(input_schema, shape: str = "gemini"):
    """The output table: the input's columns but method/url, then response and id
    (doc: reserved for the output), and the row's failure as status
    (Gemini shape, with processed_time) or error (Model Garden shape)."""
    from google.cloud.bigquery import SchemaField

    failure = ([SchemaField("error", "STRING")] if shape == "model_garden"
               else [SchemaField("status", "STRING"), SchemaField("processed_time", "TIMESTAMP")])
    written = [SchemaField("response", "JSON"), SchemaField("id", "STRING"), *failure]
    # A pass-through column named like one the job writes is overwritten by it.
    names = DROPPED_OUTPUT_COLUMNS | {f.name for f in written}
    return [f for f in input_schema if f.name.lower() not in names] + written


def check_bq_destination(client, table_id: str) -> None:
    """The dataset must exist and the table must not."""
    from google.api_core.exceptions import NotFound

    project, dataset, _ = table_id.split(".")
    try:
        client.get_dataset(f"{project}.{dataset}")
    except NotFound:
        raise JobFailure(f"Output dataset not found: bq://{project}.{dataset}", code=5) from None
    try:
        client.get_table(table_id)
    except NotFound:
        return
    raise JobFailure(f"Output table already exists: bq://{table_id}", code=6)


def write_bq_output(client, table_id: str, schema, rows: list[dict]) -> None:
    from google.cloud import bigquery

    json_cols = {f.name for f in schema if f.field_type == "JSON"}
    client.create_table(bigquery.Table(table_id, schema=schema))
    # JSON columns travel as JSON text in the streaming API.
    encoded = [{k: (json.dumps(v) if k in json_cols and v is not None else v)
                for k, v in row.items()} for row in rows]
    for i in range(0, len(encoded), 500):
        errors = client.insert_rows_json(table_id, encoded[i:i + 500])
        if errors:
            raise RuntimeError(f"writing {table_id} failed: {errors[:3]}")
