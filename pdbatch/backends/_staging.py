"""Where a Vertex AI job reads its requests and writes its answers.

Request files go to Cloud Storage (uploaded JSONL under ``<staging>/<run>/input/``)
or BigQuery (a new table per job, loaded from them, optionally with
pass-through columns); answers go to a folder or a table pdbatch names, so
that several jobs of one submission never collide. :func:`preflight` checks
the buckets and datasets before anything is uploaded or paid for, and
:func:`group` packs request files into jobs of at most the per-job limit.

The Google clients are handed in as factories: a submission to Cloud Storage
never builds a BigQuery client, nor the other way round. :func:`fetch` brings
a job's answers back, as the OpenAI-shaped lines the shared parser reads.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _gcp_io, _gemini_chat, _gemini_embed
from ._gcp import BqUri, GcsUri, parse_uri, translate
from ._job_resource import output_table

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["count_lines", "destination", "discard", "fetch", "group", "preflight", "stage", "table_name"]

#: ``where(*places)``: the project and region, then the places named, for an error message.
Where = Callable[..., str]


def preflight(
    staging: GcsUri | BqUri,
    output: GcsUri | BqUri | None,
    *,
    location: str,
    storage: Callable[[], Any],
    bigquery: Callable[[], Any],
    where: Where,
    served: tuple[str, ...] = (),
) -> None:
    """Refuse a missing bucket, or a dataset outside ``location``, before anything is staged.

    Parameters
    ----------
    staging, output : GcsUri or BqUri
        Where requests go and answers go (``output`` None: beside the requests).
    location : str
        The jobs' region: a BigQuery dataset must be in it.
    served : tuple of str
        The locations that serve the model (empty: not known): the message then
        says whether to move the job or the dataset.
    storage, bigquery : callable
        Build a Cloud Storage / BigQuery client (only the ones needed are built).
    where : callable
        Names the project, region and given places in error messages.
    """
    for uri, what in ((staging, "staging"), (output, "output")):
        if isinstance(uri, GcsUri):
            with translate(
                f"checking the {what} bucket gs://{uri.bucket}",
                where=where(f"bucket gs://{uri.bucket}"),
                permission=f"{_gcp_io.LIST_PERMISSION} on gs://{uri.bucket}",
            ):
                _gcp_io.check_bucket(storage(), uri)
        elif isinstance(uri, BqUri):
            with translate(
                f"checking the {what} dataset {uri.dataset_id}",
                where=where(f"dataset {uri.dataset_id}"),
            ):
                _gcp_io.check_region(bigquery(), uri, location, f"{what}={uri}", served)


def stage(
    files: list[Path],
    staging: GcsUri | BqUri,
    run: str,
    part: str,
    extra: pa.Table | None,
    *,
    storage: Callable[[], Any],
    bigquery: Callable[[], Any],
    where: Where,
) -> dict[str, Any]:
    """Upload one job's request files (or load them into a new table) and return the job's ``input_config``.

    Parameters
    ----------
    files : list of Path
        The job's JSONL request files.
    staging : GcsUri or BqUri
        A ``gs://`` prefix or a ``bq://project.dataset``.
    run, part : str
        The submission and which of its jobs (``""`` when it has one): they name the place.
    extra : pyarrow.Table, optional
        Pass-through columns, one row per request line (BigQuery only).
    storage, bigquery, where : callable
        As for :func:`preflight`.

    Returns
    -------
    dict
        ``instances_format`` and ``gcs_source`` or ``bigquery_source``.
    """
    if isinstance(staging, GcsUri):
        dest = staging.child(run).child("input")
        with translate(
            f"uploading the requests to {dest}",
            where=where(f"bucket gs://{dest.bucket}"),
            permission=f"{_gcp_io.UPLOAD_PERMISSION} on gs://{dest.bucket}",
        ):
            uris = _gcp_io.upload_files(storage(), files, dest)
        return {"instances_format": "jsonl", "gcs_source": {"uris": uris}}
    table = staging.with_table(table_name(run, part, "requests"))
    with translate(f"loading the requests into {table}", where=where(f"dataset {staging.dataset_id}")):
        _gcp_io.load_requests(bigquery(), files, table, extra)
    return {"instances_format": "bigquery", "bigquery_source": {"input_uri": str(table)}}


def destination(staging: GcsUri | BqUri, output: GcsUri | BqUri | None, run: str, part: str) -> dict[str, Any]:
    """The ``output_config`` of one job: under ``output``, else beside its requests in ``staging``.

    Parameters
    ----------
    staging, output : GcsUri or BqUri
        As for :func:`preflight`; an ``output`` table gets ``_part_NNN`` when there are several jobs.
    run, part : str
        As for :func:`stage`.

    Returns
    -------
    dict
        ``predictions_format`` and ``gcs_destination`` or ``bigquery_destination``.
    """
    out = output or staging
    if isinstance(out, GcsUri):
        base = out.child(run) if output else out.child(run).child("output")
        prefix = base.child(part) if part else base
        return {
            "predictions_format": "jsonl",
            "gcs_destination": {"output_uri_prefix": str(prefix)},
        }
    # Name the table ourselves: predictable, and several jobs never collide.
    table = (
        out.table + (f"_{part.replace('-', '_')}" if part else "")
        if out.table
        else table_name(run, part, "predictions")
    )
    return {
        "predictions_format": "bigquery",
        "bigquery_destination": {"output_uri": str(out.with_table(table))},
    }


def table_name(run: str, part: str, what: str) -> str:
    """A BigQuery table name for ``what`` ("requests", "predictions") of one job of submission ``run``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"pdbatch_{run}_{what}" + (f"_{part}" if part else ""))


def count_lines(path: Path) -> int:
    """Request lines in a JSONL file (every line ends with a newline)."""
    n = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


def group(files: list[Path], counts: list[int], limit: int) -> list[tuple[list[Path], int]]:
    """Files in order, packed into jobs of at most ``limit`` requests."""
    groups: list[tuple[list[Path], int]] = []
    for path, n in zip(files, counts, strict=True):
        if groups and groups[-1][1] + n <= limit:
            groups[-1][0].append(path)
            groups[-1] = (groups[-1][0], groups[-1][1] + n)
        else:
            groups.append(([path], n))
    return groups


#: An uploaded request file, as :func:`stage` names it: ``<staging prefix><run>/input/<file>``.
_STAGED = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}/input/[^/]+\.jsonl")


def discard(uris: list[str], staging: GcsUri | BqUri, *, storage: Callable[[], Any], where: Where) -> list[str]:
    """Delete the request files :func:`stage` uploaded (``uris`` from a job's ``input_config``); returns them.

    Only objects under ``staging`` named as :func:`stage` names them are
    deleted: a job whose input is a user's own file keeps it. A file already
    gone counts as deleted. BigQuery request tables are not touched.
    """
    if not isinstance(staging, GcsUri):
        return []
    ours = []
    for uri in uris:
        parsed = parse_uri(uri.rsplit("/", 1)[0] + "/", "input") if uri.startswith("gs://") else None
        name = uri[len(f"gs://{staging.bucket}/"):]
        if (isinstance(parsed, GcsUri) and parsed.bucket == staging.bucket and name.startswith(staging.prefix)
                and _STAGED.fullmatch(name[len(staging.prefix):])):
            ours.append(name)
    if not ours:
        return []
    from google.api_core import exceptions as gexc

    bucket = storage().bucket(staging.bucket)
    deleted = []
    for name in ours:
        with translate(f"deleting the staged requests gs://{staging.bucket}/{name}",
                       where=where(f"bucket gs://{staging.bucket}"),
                       permission=f"storage.objects.delete on gs://{staging.bucket}"), \
                contextlib.suppress(gexc.NotFound):  # deleted already: what was asked
            bucket.blob(name).delete()
        deleted.append(f"gs://{staging.bucket}/{name}")
    return deleted


#: Output files of Gemini jobs, rewritten as the OpenAI-shaped lines pdbatch.results.parse reads.
_FROM_GEMINI = {"gemini-embedding": _gemini_embed.from_gemini_file, "gemini-chat": _gemini_chat.from_gemini_file}


def fetch(job: Any, folder: Path, *, storage: Callable[[], Any], bigquery: Callable[[], Any],
          where: Where) -> list[Path]:
    """Download the output of ``job`` (the job resource) into ``folder``: its ``*.jsonl`` files, or its table.

    Returns no files while the job has written nothing yet.
    """
    info = job.output_info
    if info.gcs_output_directory:
        directory = info.gcs_output_directory
        with translate(
            f"downloading the output from {directory}",
            where=where(directory),
            permission=f"{_gcp_io.DOWNLOAD_PERMISSION} on {directory}",
        ):
            paths = _gcp_io.download_jsonl(storage(), directory, folder)
        convert = _FROM_GEMINI.get(_gemini_embed.job_wire(job))
        if convert is not None:
            for path in paths:
                convert(path)
        return paths
    if info.bigquery_output_table:
        table_id = output_table(info.bigquery_output_dataset, info.bigquery_output_table)
        with translate(
            f"reading the output table {table_id}", where=where(f"table {table_id}")
        ):
            return _gcp_io.read_output_table(bigquery(), table_id, folder)
    return []  # nothing written yet
