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

The cache is only an optimisation: every job keeps its own answers in its
folder. A cache file that is damaged (truncated, overwritten, a folder in its
place) is moved aside, kept under a new name, with one warning naming both
paths, and the call goes on (with a fresh cache); any other failure to use it
(locked too long, read-only) is warned about once and the call goes on
without it. The file, and SQLite's ``-wal`` and ``-shm`` files beside it, are
private to the user (``0600``).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import secrets
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson

from .. import config
from ..atomic import PRIVATE_FILE, open_private
from ..errors import PdbatchWarning

__all__ = ["ResponseCache", "RowKeys", "clear", "deterministic"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    line BLOB NOT NULL,
    created REAL NOT NULL
)
"""
#: SQLite's own names for a file that is not (or no longer) a sound database
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_warned: set[str] = set()
#: Starts every key: keys made another way (before 2026-12 each whole body was hashed) are never matched.
KEY_VERSION = b"pdbatch response key 2\0"
T = TypeVar("T")


class RowKeys:
    """The cache keys of the rows of one call: what the rows share is hashed once, then each row's own payload.

    A row's answer depends on the backend (and what else decides its answers,
    :meth:`Backend.cache_identity`), the model, the url and the request body.
    The rows of one call share all of it but each row's payload (its prompt
    text, or its message list: :meth:`RequestPlan.payloads`), so a row's key
    is a hash of one digest of everything shared, then of the payload's
    bytes: no body, and no dict, is built per row. Two rows get one key
    exactly when they send the same body to the same model.

    Parameters
    ----------
    backend, model, url : str
    body : mapping
        A row's body with an empty payload (what every row shares).
    payload : {"text", "messages"}
        What each row adds: a prompt text, or a list of chat messages.
    identity : mapping, optional
        :meth:`Backend.cache_identity`; an empty one adds nothing.
    """

    def __init__(self, backend: str, model: str, url: str, body: Mapping[str, Any], payload: str,
                 identity: Mapping[str, Any] | None = None) -> None:
        h = hashlib.sha256(KEY_VERSION)
        for part in (backend, model, url, payload):
            h.update(part.encode())
            h.update(b"\0")
        h.update(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
        if identity:
            h.update(b"\0" + orjson.dumps(identity, option=orjson.OPT_SORT_KEYS))
        # a digest of fixed length first: no payload can read as a part of what the rows share
        self._start = hashlib.sha256(h.digest())
        self._messages = payload == "messages"

    def key(self, payload: Any) -> str:
        """The key of one row's payload (a str, or a list of messages)."""
        data = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS) if self._messages else payload.encode()
        h = self._start.copy()
        h.update(data)
        return h.hexdigest()

    def keys(self, data: bytes | memoryview, offsets: Sequence[int]) -> list[str]:
        """The keys of prompt texts held as one UTF-8 buffer: row ``i`` is ``data[offsets[i]:offsets[i + 1]]``.

        The same keys as :meth:`key` on each text (``tests/test_scale.py``).
        """
        start = self._start
        out: list[str] = []
        append = out.append
        for a, b in itertools.pairwise(offsets):
            h = start.copy()
            h.update(data[a:b])
            append(h.hexdigest())
        return out


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
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._connect()
        except (sqlite3.Error, OSError) as exc:
            if self._recover(exc):  # a fresh cache in its place
                try:
                    self._db = self._connect()
                except (sqlite3.Error, OSError) as again:
                    self._give_up(again)

    def _connect(self) -> sqlite3.Connection:
        if self.path.exists() and not self.path.is_file():
            raise IsADirectoryError(f"{self.path} is not a file")
        # created private, so that SQLite's -wal and -shm files (which take its mode) are too. Never opened
        # and closed here once it exists: closing any descriptor of the file drops every POSIX lock this
        # process holds on it, the shared lock of a cache already open in this process among them, and
        # another process closing its last connection would then take the WAL away from under it (SQLite's
        # "How To Corrupt An SQLite Database File", 2.2: posix advisory locks cancelled by close()).
        if self.path.exists():
            os.chmod(self.path, PRIVATE_FILE)
        else:
            with contextlib.suppress(FileExistsError):  # another process created it first
                os.close(open_private(self.path, os.O_RDWR | os.O_EXCL))
        for extra in ("-wal", "-shm"):
            if os.path.exists(f"{self.path}{extra}"):
                os.chmod(f"{self.path}{extra}", PRIVATE_FILE)
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            _wal(db)
            db.execute("PRAGMA busy_timeout=60000")
            with db:  # two first users at once: one creates the table, the other waits (no "locked")
                db.execute("BEGIN IMMEDIATE")
                db.execute(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def use(self, action: Callable[[sqlite3.Connection], T], default: T) -> T:
        """Run ``action`` on the database; a failure closes it, says why once, and gives ``default``."""
        if self._db is None:
            return default
        try:
            return action(self._db)
        except sqlite3.Error as exc:
            self.close()
            self._recover(exc)
            return default

    def _recover(self, exc: Exception) -> bool:
        """Move a damaged cache (with its -wal and -shm) aside, kept, and return True; else warn and go without."""
        name = getattr(exc, "sqlite_errorname", "") or ""
        if not (name.startswith(_DAMAGED) or isinstance(exc, IsADirectoryError)):
            self._give_up(exc)
            return False
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-"
                                    f"{secrets.token_hex(2)}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True  # another process moved it first, and warned
        except OSError as move:
            self._give_up(exc, f"; it could not be moved aside either ({move})")
            return False
        for extra in ("-wal", "-shm"):
            with contextlib.suppress(OSError):  # none, when SQLite had cleaned up
                os.rename(f"{self.path}{extra}", f"{aside}{extra}")
        _warn_once(f"the response cache {self.path} is damaged ({exc}); it was moved to {aside} and pdbatch "
                   f"goes on with a new, empty cache. No answer is lost: every job keeps its own answers in "
                   f"its folder. Delete {aside} when you no longer need it.")
        return True

    def _give_up(self, exc: Exception, more: str = "") -> None:
        self._db = None
        _warn_once(f"the response cache {self.path} cannot be used ({type(exc).__name__}: {exc}){more}; "
                   f"pdbatch goes on without it (rows are sent instead of answered from the cache).")

    def close(self) -> None:
        """Close the database connection."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The cached output lines of the keys that have one (none when the cache cannot be read)."""
        keys = list(dict.fromkeys(keys))

        def get(db: sqlite3.Connection) -> dict[str, bytes]:
            wanted = keys
            # Asking for more keys than the cache holds: reading its keys (the
            # primary key's index alone) and asking only for those found costs
            # less than a look-up per key, and nothing when the cache is new.
            if len(keys) > 900 and db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] < len(keys):
                ask = set(keys)
                wanted = [k for (k,) in db.execute("SELECT key FROM responses") if k in ask]
            found: dict[str, bytes] = {}
            for start in range(0, len(wanted), 900):  # SQLite's limit on bound parameters
                chunk = wanted[start : start + 900]
                marks = ",".join("?" * len(chunk))
                for key, line in db.execute(f"SELECT key, line FROM responses WHERE key IN ({marks})", chunk):
                    found[key] = bytes(line)
            return found

        return self.use(get, {})

    def put_many(self, rows: Iterable[tuple[str, str, str, bytes]]) -> int:
        """Store ``(key, backend, model, output line)`` rows; returns how many (0 when the cache is unusable)."""
        now = time.time()
        data = [(k, b, m, line, now) for k, b, m, line in rows]

        def put(db: sqlite3.Connection) -> int:
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)", data)
            return len(data)

        return self.use(put, 0) if data else 0

    def count(self) -> int:
        """Number of cached answers."""
        return self.use(lambda db: int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]), 0)

    def stats(self) -> list[dict[str, Any]]:
        """Cached answers by backend and model: ``entries``, ``bytes`` (of answers), ``oldest``, ``newest``."""
        sql = ("SELECT backend, model, COUNT(*), COALESCE(SUM(LENGTH(line)), 0), MIN(created), MAX(created) "
               "FROM responses GROUP BY backend, model ORDER BY backend, model")

        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            return [{"backend": b, "model": m, "entries": n, "bytes": size, "oldest": old, "newest": new}
                    for b, m, n, size, old, new in db.execute(sql)]

        return self.use(read, [])

    def clear(self, *, backend: str | None = None, model: str | None = None, before: float | None = None) -> int:
        """Delete cached answers (all, or of one backend and/or model, or cached before an epoch time); how many."""
        where: list[str] = []
        args: list[Any] = []
        if before is not None:
            where.append("created < ?")
            args.append(before)
        if backend is not None:
            where.append("backend = ?")
            args.append(backend)
        if model is not None:
            where.append("model = ?")
            args.append(model)
        sql = "DELETE FROM responses" + (" WHERE " + " AND ".join(where) if where else "")

        def delete(db: sqlite3.Connection) -> int:
            with db:
                return db.execute(sql, args).rowcount

        return self.use(delete, 0)


def _wal(db: sqlite3.Connection, tries: int = 200) -> None:
    """Switch to WAL mode. Two first users of a new cache at once: the switch fails at once with "locked"
    for one of them (SQLite does not wait for it), which tries again once the other is done."""
    for attempt in range(tries):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.05)


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, PdbatchWarning, stacklevel=4)


def clear(*, backend: str | None = None, model: str | None = None, before: float | None = None) -> int:
    """Delete cached answers from the cache in ``PDBATCH_HOME``.

    Parameters
    ----------
    backend, model : str, optional
        Only the answers of this backend (``"local"``, ``"vertex"``) and/or model.
    before : float, optional
        Only the answers cached before this time (epoch seconds).

    Returns
    -------
    int
        The number of answers deleted.
    """
    with ResponseCache() as cache:
        return cache.clear(backend=backend, model=model, before=before)
