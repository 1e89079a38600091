"""``gs://`` and ``bq://`` locations: the one parser of each, for the Vertex backend and for table jobs.

A BigQuery location is ``bq://project.dataset`` or ``bq://project.dataset.table``
in one grammar: the project may be domain-scoped (``example.com:my-project``),
the dataset is letters, digits and underscores (BigQuery's "Creating datasets"),
and the table anything but a dot, a backtick, a backslash or a space (table names
allow Unicode letters and dashes, "Creating and using tables"). When a table
reading exists it wins: ``bq://a.b.c`` is table ``c`` of dataset ``a.b``.
:class:`pdbatch.builders.sqlbuild.TableRef` (a table in SQL) parses with
:func:`parse_bq` too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["BqUri", "GcsUri", "parse_bq", "parse_uri"]

_GCS = re.compile(r"^gs://([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(?:/(.*))?$")
#: The project is matched lazily, so that a table reading is found first (see above).
_BQ = re.compile(r"^bq://([A-Za-z0-9][A-Za-z0-9_:.-]*?)\.([A-Za-z0-9_]+)(?:\.([^.`\\\s]+))?$")


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


def parse_bq(uri: str) -> BqUri | None:
    """``bq://project.dataset[.table]`` as a :class:`BqUri`, or None when ``uri`` is not one."""
    m = _BQ.match(uri)
    return BqUri(*m.groups()) if m else None


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
    bq = parse_bq(uri)
    if bq is not None:
        return bq
    raise ConfigError(hint)
