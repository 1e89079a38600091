"""A table job's answers, kept in BigQuery: the result table, and retrying only its failures.

:func:`write_result` turns the job's output table(s) into one result table with
one ``CREATE TABLE ... AS SELECT``: each request row (its pass-through
columns, as the request table holds them) joined with its answer by
``custom_id``, plus the typed answer columns a result frame gets
(``response``, ``finish_reason``, ``prompt_tokens``, ``completion_tokens``,
``error``; ``embedding`` for embeddings) and the ``schema=`` columns read with
``JSON_VALUE`` / ``SAFE_CAST`` (a classify call's label columns instead:
:mod:`pdbatch.jobs.tableclassify`). A request row without an answer gets the
frames' "missing" error, and rows left out for a null (``on_null="skip"``)
come back from the source with theirs: no row is dropped.

:class:`TableResult` is the handle: ``.table``, ``.sample(n)``, ``.count()``,
``.to_pandas(max_rows=...)`` (refused above the limit, with the size), and
``.retry_failed()``, which reruns only the rows whose ``error`` is set and
writes a merged table.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ..backends import Backend
from ..backends.base import OK_STATES
from ..builders.bqsource import Source, bigquery_client, check_output, get_table, run_sql, table_exists
from ..builders.sqlbuild import TableRef, id_sql, ident, literal, null_sql
from ..call import Call
from ..errors import ConfigError, JobError
from ..lines.structured import as_schema
from ..models import EMBEDDINGS, Kind
from ..results.join import MISSING, output_columns
from . import job as jobs
from . import tableclassify
from .tablestart import TYPE, materialize, start

__all__ = ["TableJob", "TableResult", "resubmit", "result_columns", "result_of", "result_sql", "write_result"]

_CONTENT = "JSON_VALUE(o.response, '$.choices[0].message.content')"
_SQL_TYPES = {"integer": "INT64", "number": "FLOAT64", "boolean": "BOOL", "string": "STRING"}
#: Failed rows: an error that is not a skip (a skipped row would fail the same way again).
FAILED = "error IS NOT NULL AND NOT STARTS_WITH(error, 'skipped:') AND custom_id IS NOT NULL"


def _answers(kind: str, error_col: str | None, call: Call) -> list[str]:
    """The answer columns of a request row ``r`` joined with its output row ``o`` (``o.custom_id`` null: none)."""
    status = f"NULLIF(TRIM(o.{ident(error_col)}), '')" if error_col else "CAST(NULL AS STRING)"
    failure = (f"CASE WHEN o.custom_id IS NULL THEN {literal(MISSING)} WHEN {status} IS NOT NULL THEN {status} "
               f"WHEN o.response IS NULL THEN 'no response' END")
    if call.classify is not None:  # the label in place of the answer's text, as a frame's classify result
        return tableclassify.answer_columns(tableclassify.label_spec(call.classify), _CONTENT, failure)
    error = f"{failure} AS error"
    schema = call.schema
    if kind == EMBEDDINGS:
        return [("ARRAY(SELECT CAST(JSON_VALUE(x) AS FLOAT64) FROM UNNEST(JSON_QUERY_ARRAY(o.response, "
                 "'$.data[0].embedding')) AS x WITH OFFSET AS i ORDER BY i) AS embedding"), error]
    cols = [f"{_CONTENT} AS response",
            "JSON_VALUE(o.response, '$.choices[0].finish_reason') AS finish_reason",
            "SAFE_CAST(JSON_VALUE(o.response, '$.usage.prompt_tokens') AS INT64) AS prompt_tokens",
            "SAFE_CAST(JSON_VALUE(o.response, '$.usage.completion_tokens') AS INT64) AS completion_tokens",
            error]
    return cols + _schema_columns(schema)


def _schema_columns(schema: Any) -> list[str]:
    if schema is None:
        return []
    props = as_schema(schema).json_schema.get("properties", {})
    out = []
    for name, spec in props.items():
        typ = _sql_type(spec)
        if '"' in name or "\\" in name:
            raise ConfigError(f"schema field {name!r}: a name with quotes or backslashes cannot be read in SQL")
        path = literal(f'$."{name}"')
        out.append(f"SAFE_CAST(JSON_VALUE({_CONTENT}, {path}) AS {typ}) AS {ident(name)}")
    return out


def _sql_type(spec: Any) -> str:
    """The SQL type of a schema property: its JSON type's, text for anything else (as the frames' columns)."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    return _SQL_TYPES.get(kind, "STRING") if isinstance(kind, str) else "STRING"


def _empty_answers(kind: str, call: Call, error: str) -> list[str]:
    """The answer columns of a row that was never sent, typed as :func:`_answers` types them."""
    if call.classify is not None:
        return tableclassify.empty_columns(tableclassify.label_spec(call.classify), error)
    schema = call.schema
    err = f"{error} AS error"
    if kind == EMBEDDINGS:
        return ["CAST(NULL AS ARRAY<FLOAT64>) AS embedding", err]
    cols = ["CAST(NULL AS STRING) AS response", "CAST(NULL AS STRING) AS finish_reason",
            "CAST(NULL AS INT64) AS prompt_tokens", "CAST(NULL AS INT64) AS completion_tokens", err]
    props = as_schema(schema).json_schema.get("properties", {}) if schema is not None else {}
    for name, spec in props.items():
        typ = _sql_type(spec)
        cols.append(f"CAST(NULL AS {typ}) AS {ident(name)}")
    return cols


def result_sql(spec: dict[str, Any], call: Call, outputs: list[tuple[TableRef, str | None] | None],
               keep: list[tuple[str, str]]) -> str:
    """The result SELECT of a table job.

    Parameters
    ----------
    spec : dict
        The job's tables (:attr:`TableJob.spec`).
    call : Call
        The call (kind, schema).
    outputs : list
        Per request table: its output table and the column holding a row's
        failure (``status`` or ``error``), or None when it was never written.
    keep : list of (str, str)
        The pass-through columns kept (source name, name in the tables).
    """
    kind = spec["kind"]
    passed = ", ".join(f"r.{ident(out)}" for _, out in keep)
    selects = []
    for req, out in zip(spec["requests"], outputs, strict=True):
        r = TableRef.parse(req)
        head = f"SELECT {passed + ', ' if passed else ''}r.custom_id, "
        if out is None:
            empty = ", ".join(_empty_answers(kind, call, literal(MISSING)))
            selects.append(f"{head}{empty} FROM {r.sql} AS r")
            continue
        o, error_col = out
        # several lines for one row: a success beats a failure, as in a frame's join
        failed = "response IS NULL" + (f" OR NULLIF(TRIM({ident(error_col)}), '') IS NOT NULL" if error_col else "")
        dedup = (f"(SELECT * EXCEPT(_pdbatch_rank) FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY custom_id "
                 f"ORDER BY IF({failed}, 1, 0)) AS _pdbatch_rank FROM {o.sql}) WHERE _pdbatch_rank = 1)")
        selects.append(head + ", ".join(_answers(kind, error_col, call))
                       + f" FROM {r.sql} AS r LEFT JOIN {dedup} AS o ON o.custom_id = r.custom_id")
    if spec.get("skipped"):
        # SQL is rebuilt from names, never read from the manifest: a job folder is data anyone could edit
        used = [str(c) for c in spec["used"]]
        null = null_sql(used, messages=call.messages is not None)
        src = TableRef.parse(spec["source"])
        passed_src = ", ".join(f"src.{ident(col)} AS {ident(out)}" for col, out in keep)
        cid = id_sql(str(call.custom_id)) if call.custom_id is not None else "CAST(NULL AS STRING)"
        names = "CONCAT(" + ", ".join(f"IF(src.{ident(c)} IS NULL, {literal(repr(c) + ', ')}, '')"
                                      for c in used) + ")"
        error = f"CONCAT('skipped: null in column(s) ', RTRIM({names}, ', '))"
        selects.append(f"SELECT {passed_src + ', ' if passed_src else ''}{cid} AS custom_id, "
                       + ", ".join(_empty_answers(kind, call, error))
                       + f" FROM {src.sql} AS src WHERE {null}")
    return "\nUNION ALL\n".join(selects)


def result_columns(call: Call, kind: Kind) -> list[str]:
    """The columns a table job's result adds to the request rows' (a source column of the same name gives way)."""
    if call.classify is not None:
        return tableclassify.label_spec(call.classify).columns
    return list(output_columns(kind)) + (as_schema(call.schema).columns if call.schema is not None else [])


def _output_of(job: TableJob, client: Any, part: str, uri: str) -> tuple[TableRef, str | None] | None:
    """The part's output table (as the job reports it) and its failure column; None when not written."""
    status = job.backend.status(part)
    ref = TableRef.parse(status.output if status.output and status.output.startswith("bq://") else uri)
    if not table_exists(client, ref):
        return None
    names = {f.name for f in get_table(client, ref).schema}
    return ref, next((c for c in ("status", "error") if c in names), None)


def write_result(job: TableJob, out: TableRef, overwrite: bool) -> TableResult:
    """Write ``job``'s result table to ``out`` (refused if it exists, unless ``overwrite``)."""
    client = job.client
    check_output(client, out, overwrite)
    spec, call = job.spec, job.call
    new = {c.lower() for c in result_columns(call, spec["kind"])}  # BigQuery's column names ignore case
    # overwrite=True: the answer's column wins over a source column of the same name
    keep = [(str(col), str(name)) for col, name in spec["passthrough"] if str(name).lower() not in new]
    outputs = [_output_of(job, client, part, uri) for part, uri in zip(job.ids, spec["outputs"], strict=True)]
    verb = "CREATE OR REPLACE TABLE" if overwrite else "CREATE TABLE"
    run_sql(client, f"{verb} {out.sql} AS\n{result_sql(spec, call, outputs, keep)}")
    return TableResult(out, client, job)


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
        """The BigQuery client the result is written with (made for the source's project when none was given)."""
        if self._client is None:
            self._client = bigquery_client(TableRef.parse(self.spec["source"]).project)
        return self._client

    @client.setter
    def client(self, client: Any) -> None:
        self._client = client

    def result(self, partial: bool = False, *, output: str | None = None,  # type: ignore[override]
               overwrite: bool = False) -> TableResult:
        """Write the result table (one CREATE TABLE ... AS SELECT) and return it.

        Parameters
        ----------
        partial : bool
            Also for a job that failed, was cancelled or is running (rows without an answer get an error).
        output : str, optional
            ``bq://project.dataset.table``; default: the one named at submit.
        overwrite : bool
            Replace an existing table. Never taken from the saved job: a job
            folder is data anyone could edit, and it must not choose a table to replace.

        Returns
        -------
        TableResult
        """
        status = self.refresh()
        if not partial and status.state not in OK_STATES:
            raise JobError(f"job {self.id} is {status.state}" + (f": {status.error}" if status.error else "")
                                + "; pass partial=True for the rows answered so far", job_id=self.id,
                                state=status.state, detail=status.error)
        return write_result(self, TableRef.parse(output or self.spec["result"], "output"), overwrite)



def resubmit(job: TableJob, select: str, n: int, run: str, display_name: str | None) -> TableJob:
    """A new job for the request rows ``select`` picks from ``job``'s request tables (``retry_failed``)."""
    spec = job.spec
    src = Source(TableRef.parse(spec["source"]), job.client)
    base = f"{src.ref.table}_pdbatch_{run}"
    parts = materialize(src, select, base, n, job.backend.max_requests_per_file)
    new = {**spec, "skipped": False, "result": str(src.ref.sibling(f"{base}_results"))}
    call = Call(**{k: v for k, v in job.call.record().items() if k != TYPE})
    record, folder = start(src, call, job.backend, job.options, parts, base, new,
                           display_name or f"pdbatch-retry-{run}", n_rows=n)
    return TableJob(record, folder, job.backend, client=job.client)


def result_of(table: Source, job_id: str | None) -> TableResult:
    """``table`` as the result of its job: ``job_id``'s, or the newest saved job whose result table it is."""
    from ..store import jobdir

    if job_id is None:
        found = [item.record.id for item in jobdir.jobs() if isinstance(item.record, jobdir.Manifest)
                 and (item.record.call.get(TYPE) or {}).get("result") == table.uri]
        if not found:
            raise ConfigError(f"no job under PDBATCH_HOME wrote {table.uri}; pass job_id= (the job's id, as "
                              f"submit printed it)")
        job_id = found[-1]
    job = jobs.attach(job_id)
    if not isinstance(job, TableJob):
        raise ConfigError(f"job {job_id} did not run on a BigQuery table")
    job.client = table.client
    return TableResult(table.ref, table.client, job)


def _frame(rows: Any) -> pd.DataFrame:
    # Plain REST pages (the Storage Read API is one more service to enable), through Arrow.
    return rows.to_arrow(create_bqstorage_client=False).to_pandas()


class TableResult:
    """A result table in BigQuery, with ways to look at it that never load more than asked.

    Attributes
    ----------
    table : str
        Its URI, ``bq://project.dataset.table``.
    job : TableJob or None
        The job that wrote it (``retry_failed`` needs it).
    """

    def __init__(self, ref: TableRef, client: Any, job: TableJob | None = None) -> None:
        self.ref, self.client, self.job = ref, client, job

    @property
    def table(self) -> str:
        return str(self.ref)

    def count(self) -> int:
        """Rows in the result table (one query)."""
        return int(next(iter(self.client.query(f"SELECT COUNT(*) AS n FROM {self.ref.sql}").result()))["n"])

    def sample(self, n: int = 10) -> pd.DataFrame:
        """The first ``n`` rows as a DataFrame (a small page of the table, not a query over it)."""
        return _frame(self.client.list_rows(self.ref.table_id, max_results=int(n)))

    def to_pandas(self, max_rows: int = 100_000) -> pd.DataFrame:
        """The whole table as a DataFrame, refused when it has more than ``max_rows`` rows.

        Raises
        ------
        ConfigError
            The table is larger than ``max_rows`` (the message gives its size).
        """
        n = self.count()
        if n > max_rows:
            size = self.client.get_table(self.ref.table_id).num_bytes
            raise ConfigError(f"{self.table} has {n:,} rows ({size or 0:,} bytes), over max_rows={max_rows:,}; "
                              f"look at .sample(n), query it in BigQuery, or raise max_rows if it fits in memory")
        return _frame(self.client.list_rows(self.ref.table_id))

    def failed(self) -> int:
        """Rows whose ``error`` is set (skipped rows aside): what :meth:`retry_failed` reruns."""
        sql = f"SELECT COUNT(*) AS n FROM {self.ref.sql} WHERE {FAILED}"
        return int(next(iter(self.client.query(sql).result()))["n"])

    def retry_failed(self, *, output: str | None = None, overwrite: bool = False, progress: bool = True,
                     timeout: float | None = None, display_name: str | None = None) -> TableResult:
        """Rerun the rows whose ``error`` is set, and write a merged table (the rest as they were).

        Parameters
        ----------
        output : str, optional
            The merged table (default: ``<this table>_retry_<time>`` beside it).
        overwrite : bool
            Replace an existing ``output``.
        progress, timeout, display_name
            As for ``batch_predict``.

        Returns
        -------
        TableResult
            The merged table; this one is left as it is.
        """
        if self.job is None:
            raise ConfigError("retry_failed needs the job that wrote this table: use the result of job.result()")
        run = time.strftime("%Y%m%d_%H%M%S_") + secrets.token_hex(3)
        merged = TableRef.parse(output, "output") if output else self.ref.sibling(f"{self.ref.table}_retry_{run}")
        check_output(self.client, merged, overwrite)
        n = self.failed()
        if n == 0:
            raise ConfigError(f"{self.table} has no failed rows to retry")
        ids = f"SELECT custom_id FROM {self.ref.sql} WHERE {FAILED}"
        reqs = " UNION ALL ".join(f"SELECT * FROM {TableRef.parse(r).sql}" for r in self.job.spec["requests"])
        select = f"SELECT * FROM ({reqs}) WHERE custom_id IN ({ids})"
        retry = resubmit(self.job, select, n, run, display_name)
        fresh = retry.wait(timeout, progress=progress).result(partial=True)
        cols = ", ".join(ident(f.name) for f in self.client.get_table(self.ref.table_id).schema)
        verb = "CREATE OR REPLACE TABLE" if overwrite else "CREATE TABLE"
        run_sql(self.client, f"{verb} {merged.sql} AS\nSELECT {cols} FROM {self.ref.sql} WHERE NOT ({FAILED}) "
                             f"OR custom_id NOT IN (SELECT custom_id FROM {fresh.ref.sql})\n"
                             f"UNION ALL\nSELECT {cols} FROM {fresh.ref.sql}")
        return TableResult(merged, self.client, retry)

    def __repr__(self) -> str:
        return f"TableResult({self.table!r})"


jobs.JOB_TYPES[TYPE] = TableJob
