"""A BigQuery table's job: checked, priced and submitted without a row passing through the client.

The steps, each before anything is created or paid for:

1. one metadata call: the table's columns (a template field that is not one is
   refused with them) and location (refused unless the backend's jobs can
   read it, :meth:`Backend.check_table_location`);
2. the call rendered as SQL (:mod:`pdbatch.sqlbuild`), pass-through columns
   named like the service's own refused or renamed;
3. one aggregate query: rows, rows with a null the prompt reads
   (``on_null``), a key column's nulls and duplicates, and the prompt tokens
   approximated in SQL; a dry run gives BigQuery's bytes processed;
4. ``max_rows`` / ``max_cost``, the result table's name.

Then one ``CREATE TABLE ... AS SELECT`` writes the request table beside the
source (past the backend's per-job limit: one table partitioned by part, and
one table per part), :meth:`Backend.submit_tables` starts a job per request
table, and the manifest is saved as for any job, so the same status panel and
:func:`pdbatch.attach` work. :meth:`TableJob.result` writes the result table
(:mod:`pdbatch.tableresult`).
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import job as jobs
from . import jobdir
from .backends import Backend
from .call import KEYWORDS, Call, Options
from .errors import ConfigError, InputError
from .join import output_columns
from .models import CHAT, kind_of_url
from .params import body_params
from .pricing import given_price
from .sqlbuild import Rendered, TableRef, ident, render
from .structured import Schema, as_schema

if TYPE_CHECKING:
    from .table import Table
    from .tableresult import TableResult

__all__ = ["TableJob", "TablePreview", "get_table", "preview", "render_call", "resubmit", "submit"]

#: The key of a table job in its saved call (``pdbatch.attach`` then returns a :class:`TableJob`).
TYPE = "table"
#: The service's request columns: a pass-through column may never take these names.
REQUEST_COLUMNS = ("custom_id", "method", "url", "body")
TOKENS_HOW = "approximation (UTF-8 bytes / 4 per message text, plus 4 per message), computed in SQL over every row"
PART = "_pdbatch_part"
#: Hash buckets of a split request table at most: BigQuery allows 10,000 partitions per table.
MAX_BUCKETS = 4000


@dataclass
class Planned:
    """A call rendered for one table and backend."""

    rendered: Rendered
    kind: str
    model: str
    params: dict[str, Any]
    schema: Schema | None


def get_table(client: Any, ref: TableRef) -> Any:
    """The table's metadata (one call); a missing table is refused naming it."""
    from google.api_core.exceptions import NotFound

    try:
        return client.get_table(ref.table_id)
    except NotFound as exc:
        raise ConfigError(f"BigQuery has no table {ref} ({getattr(exc, 'message', exc)}); check the project, "
                          f"dataset and table names, and that these credentials can see them") from exc


def render_call(table: Table, call: Call, backend: Backend, *, with_schema: bool = True,
                rename_reserved: bool = False) -> Planned:
    """Check the call's parameters and render it for ``table`` (with its schema unless ``with_schema`` is False)."""
    kind = kind_of_url(call.url)
    params = body_params(call.params, kind, backend, keywords=KEYWORDS)
    schema = as_schema(call.schema) if call.schema is not None else None
    if schema is not None:
        if kind != CHAT:
            raise ConfigError("schema= applies to chat completions, not embeddings")
        if "response_format" in params:
            raise ConfigError("pass schema= or response_format=, not both (schema= sets response_format)")
        params["response_format"] = schema.response_format
    if call.system is not None and not isinstance(call.system, str):
        raise InputError(f"system= must be a str, got {type(call.system).__name__}")
    model = backend.model_name(call.model, kind)
    columns = table.columns if with_schema else None
    reserved = tuple(dict.fromkeys((*REQUEST_COLUMNS, *backend.reserved_columns)))
    rendered = render(table.ref, prompt=call.prompt, messages=call.messages, system=call.system, model=model,
                      url=call.url, kind=kind, params=params, custom_id=call.custom_id, on_null=call.on_null,
                      columns=columns, reserved=reserved, rename_reserved=rename_reserved)
    return Planned(rendered, kind, model, params, schema)


@dataclass
class TablePreview:
    """What a table's call would send and may cost; nothing was created.

    Attributes
    ----------
    n_rows, n_requests, n_skipped : int
        Rows in the table, requests it would send, rows left out for a null (``on_null="skip"``).
    prompt_tokens : int
        Prompt tokens of the requests, as :attr:`token_counts` says.
    token_counts : str
        How they were counted.
    estimated_cost : float or None
        US$ at most (answers at ``max_tokens``), None without a known price.
    bytes_processed : int or None
        BigQuery's dry-run figure for the request SELECT (what creating the request table reads).
    n_jobs : int
        Jobs the requests are split into at the backend's per-job limit.
    sql : str
        The request SELECT.
    """

    backend: str
    model: str
    kind: str
    n_rows: int
    n_requests: int
    n_skipped: int
    prompt_tokens: int
    token_counts: str
    max_tokens: int | None
    estimated_cost: float | None
    bytes_processed: int | None
    n_jobs: int
    sql: str

    def __repr__(self) -> str:
        cost = "unknown (no price for the model)" if self.estimated_cost is None else f"${self.estimated_cost:,.4f}"
        scanned = "unknown" if self.bytes_processed is None else f"{self.bytes_processed:,} bytes"
        return (f"TablePreview: {self.n_requests:,} requests ({self.n_rows:,} rows, {self.n_skipped:,} skipped) "
                f"to {self.backend} {self.model} in {self.n_jobs} job(s)\n"
                f"  prompt tokens: {self.prompt_tokens:,} ({self.token_counts})\n"
                f"  answers: up to {self.max_tokens} tokens each\n"
                f"  estimated cost: {cost}\n  BigQuery dry run: {scanned} processed")


def _stats(table: Table, p: Planned, key: str | None) -> dict[str, int]:
    r = p.rendered
    select = ["COUNT(*) AS n_rows", f"COUNTIF({r.null_condition}) AS n_null",
              f"COALESCE(SUM(IF({r.null_condition}, 0, {r.tokens})), 0) AS tokens"]
    if key is not None:
        select += [f"COUNT(DISTINCT src.{ident(key)}) AS n_ids", f"COUNTIF(src.{ident(key)} IS NULL) AS null_ids"]
    sql = f"SELECT {', '.join(select)} FROM {table.ref.sql} AS src"
    row = next(iter(table.client.query(sql).result()))
    return {k: int(row[k] or 0) for k in row.keys()}


def _check_stats(table: Table, p: Planned, call: Call, stats: dict[str, int]) -> None:
    key = call.custom_id
    if key is not None:
        if stats["null_ids"]:
            raise InputError(f"column {key!r} (custom_id) has {stats['null_ids']} null value(s); every row needs an "
                             f"id. Filter them out in a view, or omit custom_id= to number the rows")
        if stats["n_ids"] != stats["n_rows"] - stats["null_ids"]:
            dup = stats["n_rows"] - stats["n_ids"]
            sql = (f"SELECT CAST({ident(key)} AS STRING) AS id FROM {table.ref.sql} GROUP BY {ident(key)} "
                   f"HAVING COUNT(*) > 1 LIMIT 10")
            shown = [row["id"] for row in table.client.query(sql).result()]
            raise InputError(f"column {key!r} (custom_id) has {dup} duplicate id(s), e.g. {shown}; ids must be unique "
                             f"so that each answer finds its row. Deduplicate, or omit custom_id= to number the rows")
    if call.on_null == "raise" and stats["n_null"]:
        cols = p.rendered.used
        if key is not None:
            sql = (f"SELECT CAST(src.{ident(key)} AS STRING) AS id FROM {table.ref.sql} AS src "
                   f"WHERE {p.rendered.null_condition} LIMIT 10")
            rows = ", ".join(row["id"] for row in table.client.query(sql).result())
            where = f": {rows}" + (f" and {stats['n_null'] - 10} more" if stats["n_null"] > 10 else "")
        else:
            where = " (give custom_id= to see which)"
        raise InputError(f"{stats['n_null']} row(s) have a null in column(s) {cols} used by the prompt{where}. "
                         f"Filter them out in a view, or pass on_null='skip' to keep those rows with an error.")


def _dry_run(table: Table, sql: str) -> int | None:
    from google.cloud import bigquery

    job = table.client.query(sql, job_config=bigquery.QueryJobConfig(dry_run=True, use_query_cache=False))
    value = job.total_bytes_processed
    return int(value) if value is not None else None


def _plan_preview(table: Table, call: Call, backend: Backend, options: Options) -> tuple[Planned, TablePreview]:
    planned = render_call(table, call, backend, rename_reserved=options.rename_reserved)
    backend.check_table_location(table.location, f"the table {table.uri}")
    stats = _stats(table, planned, call.custom_id)
    _check_stats(table, planned, call, stats)
    n_skip = stats["n_null"] if call.on_null == "skip" else 0
    n_send = stats["n_rows"] - n_skip
    max_tokens = planned.params.get("max_completion_tokens", planned.params.get("max_tokens"))
    price = given_price(planned.model, dict(options.prices or {})) or backend.batch_price(planned.model)
    cost = None
    if price is not None:
        out = (max_tokens or 0) * n_send if planned.kind == CHAT else 0
        cost = (stats["tokens"] * price[0] + out * price[1]) / 1e6
    limit = backend.max_requests_per_file
    pv = TablePreview(backend=backend.name, model=planned.model, kind=planned.kind, n_rows=stats["n_rows"],
                      n_requests=n_send, n_skipped=n_skip, prompt_tokens=stats["tokens"], token_counts=TOKENS_HOW,
                      max_tokens=max_tokens, estimated_cost=cost,
                      bytes_processed=_dry_run(table, planned.rendered.select),
                      n_jobs=max(1, math.ceil(n_send / limit)) if limit else 1, sql=planned.rendered.select)
    return planned, pv


def preview(table: Table, call: Call, backend: Backend, options: Options) -> TablePreview:
    """The preview of ``call`` on ``table``: nothing is created (see the module's steps 1-3)."""
    return _plan_preview(table, call, backend, options)[1]


def _enforce(pv: TablePreview, options: Options) -> None:
    if options.max_rows is not None and pv.n_requests > options.max_rows:
        raise ConfigError(f"this call would send {pv.n_requests} requests, over max_rows={options.max_rows}; nothing "
                          f"was created. Select fewer rows in a view (or TABLESAMPLE), or raise max_rows.")
    if options.max_cost is None:
        return
    if pv.estimated_cost is None:
        raise ConfigError(f"max_cost={options.max_cost} is set but no price is known for model {pv.model!r}; "
                          f"pass prices={{'{pv.model}': (input_per_million, output_per_million)}}")
    if pv.estimated_cost > options.max_cost:
        raise ConfigError(f"this call may cost up to ${pv.estimated_cost:.4f} ({pv.n_requests} requests), over "
                          f"max_cost={options.max_cost}; nothing was created. table.llama.preview(...) shows the "
                          f"details.")


def run_sql(client: Any, sql: str) -> None:
    """Run one statement to the end (a CREATE TABLE ... AS SELECT)."""
    client.query(sql).result()


def table_exists(client: Any, ref: TableRef) -> bool:
    from google.api_core.exceptions import NotFound

    try:
        client.get_table(ref.table_id)
    except NotFound:
        return False
    return True


def check_output(client: Any, out: TableRef, overwrite: bool) -> None:
    """Refuse an existing result table unless ``overwrite``."""
    if not overwrite and table_exists(client, out):
        raise ConfigError(f"the result table {out} exists already; name another with output='bq://...', "
                          f"or pass overwrite=True to replace it")


def submit(table: Table, call: Call, backend: Backend, options: Options, *, output: str | None = None) -> TableJob:
    """Check, price, create the request table(s) and start the job(s); see the module's steps."""
    if not backend.accepts_tables:
        backend.check_table_location("", f"the table {table.uri}")  # says which backends read tables
    planned, pv = _plan_preview(table, call, backend, options)
    _enforce(pv, options)
    if pv.n_requests == 0:
        raise ConfigError(f"nothing to submit: {table.uri} has no rows to send ({pv.n_rows} rows, "
                          f"{pv.n_skipped} skipped for a null)")
    new = list(output_columns(planned.kind)) + (planned.schema.columns if planned.schema else [])
    clash = [out for _, out in planned.rendered.passthrough if out in new]
    if clash and not options.overwrite:
        raise ConfigError(f"the table has column(s) {clash}, which the result table would also have; rename them "
                          f"in a view, or pass overwrite=True to keep the result's")
    run = time.strftime("%Y%m%d_%H%M%S_") + secrets.token_hex(3)
    base = f"{table.ref.table}_pdbatch_{run}"
    result = TableRef.parse(output, "output") if output else table.ref.sibling(f"{base}_results")
    check_output(table.client, result, options.overwrite)
    backend.check_table_location(_dataset_location(table, result), f"the output dataset {result.dataset_id}")
    limit = backend.max_requests_per_file
    parts = _materialize(table, planned.rendered.select, base, pv.n_requests, limit)
    spec = {"source": table.uri, "model": planned.model, "result": str(result), "passthrough": planned.rendered.passthrough,
            "kind": planned.kind, "custom_id": planned.rendered.custom_id, "used": planned.rendered.used,
            "null_condition": planned.rendered.null_condition if call.on_null == "skip" and pv.n_skipped else None}
    return _start(table, call, backend, options, parts, base, spec, options.display_name or f"pdbatch-{run}",
                  n_rows=pv.n_rows)


def resubmit(job: TableJob, select: str, n: int, run: str, display_name: str | None) -> TableJob:
    """A new job for the request rows ``select`` picks from ``job``'s request tables (``retry_failed``)."""
    from .table import Table

    spec = job.spec
    src = Table(TableRef.parse(spec["source"]), job.client)
    base = f"{src.ref.table}_pdbatch_{run}"
    parts = _materialize(src, select, base, n, job.backend.max_requests_per_file)
    new = {**spec, "null_condition": None, "result": str(src.ref.sibling(f"{base}_results"))}
    call = Call(**{k: v for k, v in job.call.record().items() if k != TYPE})
    return _start(src, call, job.backend, job.options, parts, base, new, display_name or f"pdbatch-retry-{run}",
                  n_rows=n)


def _start(table: Table, call: Call, backend: Backend, options: Options, parts: list[tuple[TableRef, int]],
           base: str, spec: dict[str, Any], name: str, *, n_rows: int) -> TableJob:
    """Start one job per request table, save the manifest, return the handle."""
    outputs = [table.ref.sibling(f"{base}_predictions" + (f"_{i:03d}" if len(parts) > 1 else ""))
               for i in range(1, len(parts) + 1)]
    ids = backend.submit_tables([(str(r), str(o), n) for (r, n), o in zip(parts, outputs, strict=True)],
                                model=spec["model"], kind=spec["kind"], display_name=name)
    spec = {**spec, "requests": [str(r) for r, _ in parts], "outputs": [str(o) for o in outputs]}
    saved = Call(**{**{k: getattr(call, k) for k in Call.__dataclass_fields__}, TYPE: spec})
    record = jobdir.Manifest(id=ids[0], parts=ids, backend=backend.name, backend_settings=backend.settings(),
                             model=spec["model"], kind=spec["kind"], n_rows=n_rows,
                             call=saved.record(), options=options.record())
    folder = jobdir.save(record, pd.DataFrame())
    return TableJob(record, folder, backend, client=table.client)


def _dataset_location(table: Table, out: TableRef) -> str:
    if out.dataset_id == table.ref.dataset_id:
        return table.location
    return dataset_location(table.client, out.dataset_id)


def dataset_location(client: Any, dataset_id: str) -> str:
    """The dataset's location (a table's is its dataset's); a missing dataset is refused naming it."""
    from google.api_core.exceptions import NotFound

    try:
        return str(client.get_dataset(dataset_id).location or "")
    except NotFound as exc:
        raise ConfigError(f"BigQuery has no dataset {dataset_id}; create it, or name another") from exc


def _materialize(table: Table, select: str, base: str, n: int, limit: int | None) -> list[tuple[TableRef, int]]:
    """The request table(s): one CREATE TABLE ... AS SELECT, split into parts of at most ``limit`` rows."""
    client = table.client
    if not limit or n <= limit:
        ref = table.ref.sibling(f"{base}_requests")
        run_sql(client, f"CREATE TABLE {ref.sql} AS\n{select}")
        return [(ref, n)]
    # Rows go to buckets by a hash of their fixed custom_id (computed in parallel: no global ordering),
    # many more buckets than jobs; the buckets are then packed into parts of at most `limit` rows. The
    # full table is partitioned by bucket, so each part's CREATE TABLE reads only its own buckets.
    n_buckets = min(MAX_BUCKETS, 16 * math.ceil(n / limit))
    full = table.ref.sibling(f"{base}_requests_all")
    run_sql(client, f"CREATE TABLE {full.sql}\nPARTITION BY RANGE_BUCKET({PART}, GENERATE_ARRAY(0, {n_buckets}, 1)) "
                    f"AS\nSELECT *, MOD(ABS(FARM_FINGERPRINT(custom_id)), {n_buckets}) AS {PART} FROM (\n{select}\n)")
    counts = {int(r["part"]): int(r["n"]) for r in client.query(
        f"SELECT {PART} AS part, COUNT(*) AS n FROM {full.sql} GROUP BY {PART}").result()}
    parts: list[tuple[list[int], int]] = []
    for bucket, count in sorted(counts.items(), key=lambda kv: -kv[1]):  # first fit, largest first
        if count > limit:
            raise ConfigError(f"{count} requests hash to one bucket, over the backend's {limit} per job; nothing was "
                              f"submitted (the table {full} can be deleted). Raise the backend's per-job limit.")
        home = next((p for p in parts if p[1] + count <= limit), None)
        if home is None:
            parts.append(([bucket], count))
        else:
            parts[parts.index(home)] = (home[0] + [bucket], home[1] + count)
    out = []
    for i, (buckets, count) in enumerate(parts, 1):
        ref = table.ref.sibling(f"{base}_requests_{i:03d}")
        run_sql(client, f"CREATE TABLE {ref.sql} AS SELECT * EXCEPT({PART}) FROM {full.sql} "
                        f"WHERE {PART} IN ({', '.join(map(str, sorted(buckets)))})")
        out.append((ref, count))
    return out


class TableJob(jobs.BatchJob):
    """A job on a BigQuery table: the status panel as for any job; its result is a table.

    Create one with ``pdbatch.table(...).llama.submit(...)`` or :func:`pdbatch.attach`.
    """

    def __init__(self, record: Any, folder: Path, backend: Backend, *, allow_pickle: bool = False,
                 client: Any = None) -> None:
        super().__init__(record, folder, backend, allow_pickle=allow_pickle)
        self._client = client

    @property
    def spec(self) -> dict[str, Any]:
        """The tables of the job: source, requests, outputs, result."""
        return dict(self._record.call[TYPE])

    @property
    def client(self) -> Any:
        if self._client is None:
            from .table import bigquery_client

            self._client = bigquery_client(TableRef.parse(self.spec["source"]).project)
        return self._client

    def result(self, partial: bool = False, *, output: str | None = None,  # type: ignore[override]
               overwrite: bool | None = None) -> TableResult:
        """Write the result table (one CREATE TABLE ... AS SELECT) and return it.

        Parameters
        ----------
        partial : bool
            Also for a job that failed, was cancelled or is running (rows without an answer get an error).
        output : str, optional
            ``bq://project.dataset.table``; default: the one named at submit.
        overwrite : bool, optional
            Replace an existing table (default: as at submit).

        Returns
        -------
        TableResult
        """
        from .tableresult import write_result

        status = self.refresh()
        if not partial and status.state not in jobs.OK_STATES:
            raise jobs.JobError(f"job {self.id} is {status.state}" + (f": {status.error}" if status.error else "")
                                + "; pass partial=True for the rows answered so far", job_id=self.id,
                                state=status.state, detail=status.error)
        over = self.options.overwrite if overwrite is None else overwrite
        return write_result(self, TableRef.parse(output or self.spec["result"], "output"), over)


jobs.JOB_TYPES[TYPE] = TableJob
