"""Starting a table job: the request table(s) created beside the source, one job per table, the manifest saved.

:func:`materialize` runs one ``CREATE TABLE ... AS SELECT`` for the request
rows; past the backend's per-job limit it hashes each row's (fixed)
``custom_id`` into many buckets, computed in parallel (no global ordering of
the rows), packs the buckets into parts of at most the limit, and creates one
table per part from a copy partitioned by bucket, so that each part reads only
its own rows. :func:`start` hands the tables to
:meth:`Backend.submit_tables` and saves the manifest as for any job.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..backends import Backend
from ..builders.bqsource import Source, run_sql
from ..builders.sqlbuild import TableRef
from ..call import Call, Options
from ..errors import ConfigError
from ..store import jobdir

__all__ = ["MAX_BUCKETS", "PART", "TYPE", "drop_tables", "materialize", "start"]

#: The key of a table job in its saved call (``pdbatch.attach`` then returns a ``TableJob``).
TYPE = "table"
PART = "_pdbatch_part"
#: Hash buckets of a split request table at most: BigQuery allows 10,000 partitions per table.
MAX_BUCKETS = 4000


def materialize(table: Source, select: str, base: str, n: int, limit: int | None) -> list[tuple[TableRef, int]]:
    """The request table(s): one CREATE TABLE ... AS SELECT, split into parts of at most ``limit`` rows."""
    try:
        return _materialize(table, select, base, n, limit)
    except BaseException:
        drop_tables(table, base)  # a part created before the failure: nothing will read it
        raise


def _materialize(table: Source, select: str, base: str, n: int, limit: int | None) -> list[tuple[TableRef, int]]:
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


def start(table: Source, call: Call, backend: Backend, options: Options, parts: list[tuple[TableRef, int]],
           base: str, spec: dict[str, Any], name: str, *, n_rows: int) -> tuple[jobdir.Manifest, Path]:
    """Start one job per request table and save the manifest; returns it and the job's folder."""
    outputs = [table.ref.sibling(f"{base}_predictions" + (f"_{i:03d}" if len(parts) > 1 else ""))
               for i in range(1, len(parts) + 1)]
    try:
        ids = backend.submit_tables([(str(r), str(o), n) for (r, n), o in zip(parts, outputs, strict=True)],
                                    model=spec["model"], kind=spec["kind"], display_name=name)
    except BaseException:  # no job runs on them (submit_tables cancels its own): the tables go too
        drop_tables(table, base)
        raise
    spec = {**spec, "requests": [str(r) for r, _ in parts], "outputs": [str(o) for o in outputs]}
    saved = Call(**{**{k: getattr(call, k) for k in Call.__dataclass_fields__}, TYPE: spec})
    record = jobdir.Manifest(id=ids[0], parts=ids, backend=backend.name, backend_settings=backend.settings(),
                             model=spec["model"], kind=spec["kind"], n_rows=n_rows,
                             call=saved.record(), options=options.record())
    return record, jobdir.save(record, pd.DataFrame())


def drop_tables(table: Source, base: str) -> None:
    """Delete, best effort, the tables a failed submission created beside ``table`` (named ``<base>_...``)."""
    with contextlib.suppress(Exception):  # the original error is the one to report
        for item in table.client.list_tables(table.ref.dataset_id):
            if item.table_id.startswith(f"{base}_"):
                table.client.delete_table(item, not_found_ok=True)
