"""Never pay twice, concurrently: requests in flight are claimed in the response cache.

The cache answers a request only once a job has answered it. Two calls that
send the same rows at the same moment (two notebooks, two scripts) would both
miss the cache and both pay. So, just before a call submits, it claims the
cache keys of the rows it is about to send, in the ``claims`` table of the
cache's SQLite file, in one transaction:

- when none of its keys is claimed by another call, it claims them all, sends
  them, and binds the claims to its job's id;
- when some are, it claims nothing and waits (saying so once on stderr) until
  they are no longer claimed, then takes from the cache what the other job
  answered, and claims and sends only the rest (a failed row is not cached, so
  it is sent again).

A claim ends when its job's answers have gone into the cache (``result()``),
when its job ended otherwise (failed, cancelled, expired, paused: the waiting
call sees it and sends the rows itself), or, before it has a job, when the
process that made it is gone (a crash while submitting). A waiting call polls
the claiming job as ``wait()`` does: a local job whose worker died is
resumed, and a finished job's answers are read into the cache, whoever made
it. A call that holds claims never waits for another one, so two calls never
wait for each other.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..store.cache import ResponseCache

if TYPE_CHECKING:
    from ..builders.requests import RequestPlan
    from .reuse import Reuse

__all__ = ["Holder", "bind", "hold", "release"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    job TEXT,
    pid INTEGER NOT NULL,
    started TEXT NOT NULL,
    created REAL NOT NULL
)
"""
#: Seconds between two looks at the claims a call waits for.
POLL = 0.5
_CHUNK = 900  # SQLite's limit on bound parameters


@dataclass(frozen=True)
class Holder:
    """Who holds a claim: the claiming call's token, its job (once submitted), its process."""

    token: str
    job: str | None
    pid: int
    started: str


def _process_started(pid: int) -> str:
    """When process ``pid`` started, as the kernel counts it: with the pid, it names one process for ever.

    A pid alone is reused by a later process; its start time is not. Where
    ``/proc`` is missing (macOS), the empty string: the pid alone decides.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return ""
    # the command name (field 2) may hold spaces and parentheses: count from its closing one
    return stat[stat.rindex(b")") + 2 :].split()[19].decode()


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    return not started or _process_started(pid) in (started, "")


def _chunks(keys: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(keys), _CHUNK):
        yield keys[start : start + _CHUNK]


def _take(db: sqlite3.Connection, keys: list[str], token: str) -> dict[str, Holder]:
    """Claim every key for ``token``, unless another call holds one: then claim none, return their holders."""
    with db:
        db.execute("BEGIN IMMEDIATE")  # one writer at a time: two calls never both see a key free
        db.execute(_SCHEMA)  # inside: a table created by another first user is waited for, not raced
        held: dict[str, Holder] = {}
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            for key, *who in db.execute(f"SELECT key, token, job, pid, started FROM claims WHERE key IN ({marks})",
                                        chunk):
                held[key] = Holder(*who)
        # before its job exists, a claim lives as long as its process; a job's claim, until the job ends
        stale = [k for k, h in held.items() if h.token == token or (h.job is None and not _alive(h.pid, h.started))]
        for k in stale:
            del held[k]
        if held:
            return held
        me, now = os.getpid(), time.time()
        started = _process_started(me)
        db.executemany("INSERT OR REPLACE INTO claims VALUES (?, ?, NULL, ?, ?, ?)",
                       ((k, token, me, started, now) for k in keys))  # a generator: no row list in memory
    return {}


def hold(reused: Reuse, plan: RequestPlan, settle: Callable[[str], bool]) -> tuple[Reuse, str | None]:
    """Claim the keys of the rows ``reused`` sends, first waiting for those another call is answering.

    Parameters
    ----------
    reused : Reuse
        From :func:`pdbatch.jobs.reuse.plan_reuse`: its ``keys`` are the rows to send.
    plan : RequestPlan
        The plan the keys were made from (for the custom_ids of rows answered while waiting).
    settle : callable
        ``settle(job_id)`` looks at a claiming job as ``wait()`` would and
        returns True once it ended, its answers put into the cache
        (:func:`pdbatch.jobs.submit.settle`; given here, as this module stands below the job).

    Returns
    -------
    (Reuse, str or None)
        ``reused`` with the rows the other call answered moved to its
        ``cached`` answers, and the token of the claims held now (None: none),
        to :func:`bind` to the job once submitted or :func:`release` if not.
    """
    from .reuse import _with_id

    keys = [str(k) for k in reused.keys.tolist()]
    if not keys:
        return reused, None
    token = secrets.token_hex(8)
    found: dict[str, bytes] = {}
    told = False
    with ResponseCache() as store:
        while True:
            wanted = [k for k in keys if k not in found]
            none: dict[str, Holder] = {}
            held = store.use(functools.partial(_take, keys=wanted, token=token), none) if wanted else none
            if not held:
                break
            if not told:
                _tell(held, len(wanted))
                told = True
            for job_id in {h.job for h in held.values() if h.job}:
                if settle(job_id):
                    release(job=job_id)
            time.sleep(POLL)
            found.update(store.get_many(k for k in wanted if k in held))
        if told and wanted:
            # A claim ends only once its answers are in the cache: a key claimed just
            # now may have been answered between the last look and the claim.
            late = store.get_many(wanted)
            if late:
                found.update(late)
                store.use(functools.partial(_drop, token=token, keys=list(late)), None)
    if not found:
        return reused, token
    keep = np.array([k not in found for k in keys], dtype=bool)
    cached = dict(reused.cached)
    for p, k in zip(reused.key_rows[~keep].tolist(), np.asarray(keys, dtype=object)[~keep].tolist(), strict=True):
        cached[int(p)] = _with_id(found[k], plan.ids_at(np.array([p]))[0])
    out = replace(reused, cached=cached, key_rows=reused.key_rows[keep], keys=reused.keys[keep])
    return out, token if keep.any() else None


def _drop(db: sqlite3.Connection, token: str, keys: list[str]) -> None:
    with db:
        for chunk in _chunks(keys):
            db.execute(f"DELETE FROM claims WHERE token = ? AND key IN ({','.join('?' * len(chunk))})", [token, *chunk])


def _tell(held: dict[str, Holder], wanted: int) -> None:
    jobs = sorted({h.job or f"a call in process {h.pid}" for h in held.values()})
    print(f"pdbatch: {len(held)} of the {wanted} requests to send are being answered by {', '.join(jobs)}; "
          f"waiting for those answers instead of paying for them twice (cache=False sends them anyway)",
          file=sys.stderr, flush=True)


def bind(token: str, job_id: str) -> None:
    """Tie the claims of ``token`` to the submitted job ``job_id``: they now last until that job ends."""
    _update("UPDATE claims SET job = ? WHERE token = ?", (job_id, token))


def release(*, token: str | None = None, job: str | None = None) -> None:
    """End the claims of a call (its ``token``) or of a job: its rows can be sent by any call again."""
    if token is not None:
        _update("DELETE FROM claims WHERE token = ?", (token,))
    if job is not None:
        _update("DELETE FROM claims WHERE job = ?", (job,))


def _update(sql: str, args: tuple[str, ...]) -> None:
    def run(db: sqlite3.Connection) -> None:
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(_SCHEMA)
            db.execute(sql, args)

    with contextlib.suppress(OSError), ResponseCache() as store:
        store.use(run, None)
