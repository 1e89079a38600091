"""The response cache: never pay twice for the same request.

Answers are kept in an SQLite file under ``PDBATCH_HOME``, keyed by the
backend, the model, what else decides the backend's answers (for the local
backend: the weights file and its conversion, the context window) and the
canonical request body (JSON with sorted keys), so
re-running a notebook cell sends only the rows that are new. Only successful
answers are kept. SQLite in WAL mode with a busy timeout lets several kernels
read and write the cache at once.

Requests whose answer is not reproducible (sampling with temperature > 0 and
no seed) are not served from the cache unless the call passes
``cache="always"``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from . import config

__all__ = ["ResponseCache", "clear", "deterministic", "request_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    line BLOB NOT NULL,
    created REAL NOT NULL
)
"""


def request_key(backend: str, model: str, url: str, body: Mapping[str, Any],
                identity: Mapping[str, Any] | None = None) -> str:
    """The cache key of one request: a hash of backend, model, url, canonical body and the backend's identity.

    ``identity`` is :meth:`Backend.cache_identity` (the weights a local model
    runs, ...). An empty one adds nothing, so the keys of backends that need
    none stay what they were before it existed: answers already paid for are
    still found.
    """
    canon = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    h = hashlib.sha256()
    parts = [backend.encode(), model.encode(), url.encode(), canon]
    if identity:
        parts.append(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS))
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()


def deterministic(url: str, params: Mapping[str, Any]) -> bool:
    """True when a request's answer is reproducible: embeddings, greedy decoding, or a seed."""
    if url.endswith("/embeddings"):
        return True
    temperature = params.get("temperature", 1.0)  # OpenAI's default
    return temperature == 0 or params.get("seed") is not None


class ResponseCache:
    """The response store of one ``PDBATCH_HOME``.

    Parameters
    ----------
    path : path, optional
        The SQLite file; default ``<PDBATCH_HOME>/cache.sqlite3``.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else config.home() / "cache.sqlite3"
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=60000")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The cached output lines of the keys that have one."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), 900):  # SQLite's limit on bound parameters
            chunk = keys[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for key, line in self._db.execute(f"SELECT key, line FROM responses WHERE key IN ({marks})", chunk):
                found[key] = bytes(line)
        return found

    def put_many(self, rows: Iterable[tuple[str, str, str, bytes]]) -> int:
        """Store ``(key, backend, model, output line)`` rows; returns how many."""
        now = time.time()
        data = [(k, b, m, line, now) for k, b, m, line in rows]
        if data:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)", data)
        return len(data)

    def count(self) -> int:
        """Number of cached answers."""
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def clear(self, *, backend: str | None = None, model: str | None = None) -> int:
        """Delete cached answers (all, or of one backend and/or model); returns how many."""
        where, args = [], []
        if backend is not None:
            where.append("backend = ?")
            args.append(backend)
        if model is not None:
            where.append("model = ?")
            args.append(model)
        sql = "DELETE FROM responses" + (" WHERE " + " AND ".join(where) if where else "")
        with self._db:
            return self._db.execute(sql, args).rowcount


def clear(*, backend: str | None = None, model: str | None = None) -> int:
    """Delete cached answers from the cache in ``PDBATCH_HOME``.

    Parameters
    ----------
    backend, model : str, optional
        Only the answers of this backend (``"local"``, ``"vertex"``) and/or model.

    Returns
    -------
    int
        The number of answers deleted.
    """
    with ResponseCache() as cache:
        return cache.clear(backend=backend, model=model)
