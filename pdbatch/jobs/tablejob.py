"""A BigQuery table's job: checked, priced and submitted without a row passing through the client.

The steps, each before anything is created or paid for:

1. one metadata call: the table's columns (a template field that is not one is
   refused with them) and location (refused unless the backend's jobs can
   read it, or the model cannot run on tables: :meth:`Backend.check_table_job`);
2. the call rendered as SQL (:mod:`pdbatch.builders.sqlbuild`), pass-through columns
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
(:mod:`pdbatch.jobs.tableresult`).
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..backends import Backend
from ..builders.bqsource import Source, check_output, dataset_location
from ..builders.sqlbuild import Rendered, TableRef, ident, render
from ..call import KEYWORDS, Call, Options
from ..errors import ConfigError, InputError
from ..lines.params import body_params
from ..lines.structured import Schema, apply_schema, as_schema
from ..models import CHAT, Kind, kind_of_url
from ..pricing import given_price
from ..results import classify
from . import tableclassify
from .tableresult import TableJob, result_columns
from .tablestart import materialize, start

__all__ = ["TablePreview", "preview", "render_call", "submit"]

#: The service's request columns: a pass-through column may never take these names.
REQUEST_COLUMNS = ("custom_id", "method", "url", "body")
TOKENS_HOW = "approximation (UTF-8 bytes / 4 per message text, plus 4 per message), computed in SQL over every row"


@dataclass
class Planned:
    """A call rendered for one table and backend."""

    rendered: Rendered
    kind: Kind
    model: str
    params: dict[str, Any]
    schema: Schema | None


def render_call(table: Source, call: Call, backend: Backend, *, with_schema: bool = True,
                rename_reserved: bool = False) -> Planned:
    """Check the call's parameters and render it for ``table`` (with its schema unless ``with_schema`` is False)."""
    kind = kind_of_url(call.url)
    if call.system is not None and not isinstance(call.system, str):
        raise InputError(f"system= must be a str, got {type(call.system).__name__}")
    schema = as_schema(call.schema) if call.schema is not None else None
    columns = table.columns if with_schema else None
    if call.classify is not None:  # the frames' classify bodies (results.classify), the labels' columns checked
        tableclassify.check_names(tableclassify.label_spec(call.classify))
        names = [c.name for c in columns] if columns is not None else []
        model, params = classify.request_params(call, backend, names)
    else:
        params = body_params(call.params, kind, backend, keywords=KEYWORDS)
        apply_schema(params, schema, kind, backend.schema_support)
        model = backend.model_name(call.model, kind)
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
        Jobs the requests need at the backend's per-job limit (the split by
        hashed buckets may make a few more: 257 rather than 250 for 50M rows).
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


def _stats(table: Source, p: Planned, key: str | None) -> dict[str, int]:
    r = p.rendered
    select = ["COUNT(*) AS n_rows", f"COUNTIF({r.null_condition}) AS n_null",
              f"COALESCE(SUM(IF({r.null_condition}, 0, {r.tokens})), 0) AS tokens"]
    if key is not None:
        select += [f"COUNT(DISTINCT src.{ident(key)}) AS n_ids", f"COUNTIF(src.{ident(key)} IS NULL) AS null_ids"]
    sql = f"SELECT {', '.join(select)} FROM {table.ref.sql} AS src"
    row = next(iter(table.client.query(sql).result()))
    return {k: int(v or 0) for k, v in row.items()}


def _check_stats(table: Source, p: Planned, call: Call, stats: dict[str, int]) -> None:
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


def _dry_run(table: Source, sql: str) -> int | None:
    from google.cloud import bigquery

    job = table.client.query(sql, job_config=bigquery.QueryJobConfig(dry_run=True, use_query_cache=False))
    value = job.total_bytes_processed
    return int(value) if value is not None else None


def _plan_preview(table: Source, call: Call, backend: Backend, options: Options) -> tuple[Planned, TablePreview]:
    planned = render_call(table, call, backend, rename_reserved=options.rename_reserved)
    backend.check_table_job(model=planned.model, kind=planned.kind, tables={f"the table {table.uri}": table.location})
    if call.messages is not None and backend.checks_messages(planned.model, planned.kind):
        # A frame's rows whose messages the model cannot take each get their error (pdbatch.jobs.rowmodel);
        # a table's rows never pass through the client to be asked about, and the service would fail them
        # (or the job) instead. (Vertex refuses its Gemini models, the ones that check messages, just above.)
        raise ConfigError(f"messages={call.messages!r}: {planned.model} cannot take some messages, and a table "
                          f"job's rows are not read here to check each one's; run it on a frame of the rows "
                          f"(df.llama.batch_predict(messages={call.messages!r}, ...): a row it cannot take gets "
                          f"its own error), or choose a model that takes any chat messages")
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


def preview(table: Source, call: Call, backend: Backend, options: Options) -> TablePreview:
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


def submit(table: Source, call: Call, backend: Backend, options: Options, *, output: str | None = None) -> TableJob:
    """Check, price, create the request table(s) and start the job(s); see the module's steps."""
    if not backend.accepts_tables:  # says which backends read tables, before any call
        backend.check_table_job(model=str(call.model), kind=kind_of_url(call.url), tables={})
    planned, pv = _plan_preview(table, call, backend, options)
    _enforce(pv, options)
    if pv.n_requests == 0:
        raise ConfigError(f"nothing to submit: {table.uri} has no rows to send ({pv.n_rows} rows, "
                          f"{pv.n_skipped} skipped for a null)")
    new = {c.lower() for c in result_columns(call, planned.kind)}  # BigQuery's column names ignore case
    clash = [out for _, out in planned.rendered.passthrough if out.lower() in new]
    if clash and not options.overwrite:
        raise ConfigError(f"the table has column(s) {clash}, which the result table would also have; rename them "
                          f"in a view, or pass overwrite=True to keep the result's")
    run = time.strftime("%Y%m%d_%H%M%S_") + secrets.token_hex(3)
    base = f"{table.ref.table}_pdbatch_{run}"
    result = TableRef.parse(output, "output") if output else table.ref.sibling(f"{base}_results")
    check_output(table.client, result, options.overwrite)
    if result.dataset_id != table.ref.dataset_id:
        where = {f"the output dataset {result.dataset_id}": dataset_location(table.client, result.dataset_id)}
        backend.check_table_job(model=planned.model, kind=planned.kind, tables=where)
    limit = backend.max_requests_per_file
    parts = materialize(table, planned.rendered.select, base, pv.n_requests, limit)
    r = planned.rendered
    spec = {"source": table.uri, "model": planned.model, "result": str(result), "passthrough": r.passthrough,
            "kind": planned.kind, "used": r.used, "skipped": call.on_null == "skip" and pv.n_skipped > 0}
    record, folder = start(table, call, backend, options, parts, base, spec,
                           options.display_name or f"pdbatch-{run}", n_rows=pv.n_rows)
    return TableJob(record, folder, backend, client=table.client)


