"""A BigQuery table as pdbatch's table jobs see it: its name, a client, its columns and location, and small helpers.

The leaf the table modules share (:mod:`pdbatch.table` builds on :class:`Source`,
:mod:`pdbatch.jobs.tablejob` and :mod:`pdbatch.jobs.tableresult` use it), so that none of
them imports another that imports it back. Every call here is one metadata
call or one statement; no row passes through.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

from ..errors import ConfigError, MissingDependencyError
from .sqlbuild import Column, TableRef

__all__ = ["Source", "bigquery_client", "check_output", "dataset_location", "get_table", "run_sql", "table_exists"]


def bigquery_client(project: str) -> Any:
    """A BigQuery client for ``project`` (anonymous against an emulator)."""
    try:
        from google.cloud import bigquery
    except ImportError as exc:
        raise MissingDependencyError("google-cloud-bigquery", "vertex", "pdbatch.table") from exc
    credentials = None
    if os.environ.get("BIGQUERY_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    return bigquery.Client(project=project, credentials=credentials)


class Source:
    """A BigQuery table: its reference and the client that reads its metadata and runs statements.

    Nothing is read when it is made; :attr:`columns` and :attr:`location` are
    one metadata call each, made once.
    """

    def __init__(self, ref: TableRef, client: Any = None) -> None:
        self.ref = ref
        self._client = client

    @property
    def uri(self) -> str:
        """``bq://project.dataset.table``."""
        return str(self.ref)

    @property
    def client(self) -> Any:
        """The BigQuery client (built on first use)."""
        if self._client is None:
            self._client = bigquery_client(self.ref.project)
        return self._client

    @cached_property
    def columns(self) -> list[Column]:
        """The table's columns, from one metadata call (cached)."""
        return [_column(f) for f in get_table(self.client, self.ref).schema]

    @cached_property
    def location(self) -> str:
        """Where the table's dataset lives (``us-central1``, ``US``, ...): where jobs on it must run."""
        return dataset_location(self.client, self.ref.dataset_id)


def _column(field: Any) -> Column:
    return Column(field.name, str(field.field_type).upper(), str(field.mode or "NULLABLE").upper(),
                  tuple(_column(f) for f in (field.fields or ())))


def get_table(client: Any, ref: TableRef) -> Any:
    """The table's metadata (one call); a missing table is refused naming it."""
    from google.api_core.exceptions import NotFound

    try:
        return client.get_table(ref.table_id)
    except NotFound as exc:
        raise ConfigError(f"BigQuery has no table {ref} ({getattr(exc, 'message', exc)}); check the project, "
                          f"dataset and table names, and that these credentials can see them") from exc


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


def dataset_location(client: Any, dataset_id: str) -> str:
    """The dataset's location (a table's is its dataset's); a missing dataset is refused naming it."""
    from google.api_core.exceptions import NotFound

    try:
        return str(client.get_dataset(dataset_id).location or "")
    except NotFound as exc:
        raise ConfigError(f"BigQuery has no dataset {dataset_id}; create it, or name another") from exc


