"""Never pay twice: identical requests in a frame are sent once, cached answers are not sent.

Before a job is submitted, each row's request gets a key (backend, model, the
backend's cache identity, url, canonical body). Rows whose key already
appeared in the frame become aliases of the first such row; rows whose key
is in the response cache are answered from it. Only the rest is sent. After
the job, the answers fan out to every alias (:func:`pdbatch.results.readside.fan_out`),
and the new successful answers go into the cache (:func:`fill_cache`).

The plan is worked out once, as a :class:`Part` per kind and model (the
request plan, its :class:`Reuse`, what is still to send, the row counts),
gathered into a :class:`JobPlan` that the limits, the preview and submit read;
the reuse state a job keeps on disk is written and read by
:mod:`pdbatch.store.reusestate`. A frame's trip through ``batch_predict``
enters this module twice: :func:`plan_part`, then :func:`fill_cache`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from ..builders.requests import RequestPlan
from ..call import CacheMode
from ..display.reporter import RowCounts
from ..errors import JobFolderError
from ..lines.outputs import outcome
from ..store import jobdir, reusestate, trust
from ..store.cache import ResponseCache, RowKeys, deterministic

if TYPE_CHECKING:
    from ..backends.base import Backend

__all__ = ["JobPlan", "Part", "Reuse", "fill_cache", "plan_part", "plan_reuse", "remember"]

CHUNK = 65_536


@dataclass
class Reuse:
    """What a call sends, reuses and caches.

    Attributes
    ----------
    alias : numpy.ndarray
        For each frame row, the position whose answer it takes, or -1 (its own).
    cached : dict of int to bytes
        Output lines from the cache, by the frame position they answer.
    key_rows, keys : numpy.ndarray
        The frame positions of the rows sent, and their cache keys (to store
        their answers once the job succeeded).
    """

    alias: np.ndarray
    cached: dict[int, bytes] = field(default_factory=dict)
    key_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))

    @property
    def reused(self) -> int:
        """Rows that are not sent: duplicates and cache hits."""
        return int((self.alias >= 0).sum()) + len(self.cached)

    def counts(self, plan: RequestPlan) -> RowCounts:
        """What becomes of ``plan``'s rows: sent, merged as duplicates, answered from the cache, skipped."""
        alias = self.alias
        source = np.where(alias >= 0, alias, np.arange(len(alias)))  # whose answer each row takes
        from_cache = np.zeros(len(alias), dtype=bool)
        from_cache[list(self.cached)] = True
        cached = int(from_cache[source].sum())  # the repeats of a cached row are answered from the cache too
        merged = int(((alias >= 0) & ~from_cache[source]).sum())
        skipped = len(plan.skipped)
        return RowCounts(rows=plan.n_rows, sent=plan.n_rows - skipped - merged - cached, merged=merged,
                         cached=cached, skipped=skipped)

    def sending_plan(self, plan: RequestPlan) -> RequestPlan:
        """``plan`` restricted to the rows that must be sent."""
        extra = {int(p): "reused" for p in np.flatnonzero(self.alias >= 0)}
        extra.update({p: "cached" for p in self.cached})
        return replace(plan, skipped={**plan.skipped, **extra}) if extra else plan


@dataclass(frozen=True)
class Part:
    """One part of a job (one kind and model): its request plan and what of it is reused, worked out once.

    Attributes
    ----------
    plan : RequestPlan
        Every row of the part (rows of other parts are skipped in it).
    reuse : Reuse
        Which rows repeat another, which are answered by the cache.
    send : RequestPlan
        ``plan`` restricted to the rows still to be sent.
    counts : RowCounts
        What becomes of the rows: sent, merged, cached, skipped.
    """

    plan: RequestPlan
    reuse: Reuse
    send: RequestPlan
    counts: RowCounts

    @classmethod
    def of(cls, plan: RequestPlan, reuse: Reuse | None = None) -> Part:
        """The part for ``plan`` with ``reuse`` (None: every row is sent as it is)."""
        r = reuse if reuse is not None else Reuse(np.full(plan.n_rows, -1, dtype=np.int64))
        return cls(plan, r, r.sending_plan(plan), r.counts(plan))


@dataclass(frozen=True)
class JobPlan:
    """What a call or a request file sends, part by part: built once, then checked, previewed, submitted."""

    parts: tuple[Part, ...]


def plan_part(plan: RequestPlan, backend: Backend, cache: CacheMode) -> Part:
    """:func:`plan_reuse` on ``plan``, as a :class:`Part`."""
    return Part.of(plan, plan_reuse(plan, backend, cache))


def plan_reuse(plan: RequestPlan, backend: Backend, cache: CacheMode) -> Reuse:
    """Find duplicate and cached requests in ``plan``.

    Parameters
    ----------
    plan : RequestPlan
    backend : Backend
        Its name and :meth:`~pdbatch.backends.Backend.cache_identity` are part
        of the cache key.
    cache : {True, False, "always"}
        ``False`` bypasses the cache and sends duplicates as they are;
        ``True`` reuses answers of reproducible requests (greedy, seeded,
        embeddings); ``"always"`` reuses every answer.

    Returns
    -------
    Reuse
    """
    alias = np.full(plan.n_rows, -1, dtype=np.int64)
    if cache is False or (cache is True and not deterministic(plan.url, plan.params)):
        return Reuse(alias)
    chunks = list(_row_keys(plan, backend.name, backend.cache_identity(plan.model, plan.kind)))
    positions = np.concatenate([pos for pos, _ in chunks]) if chunks else np.empty(0, dtype=np.int64)
    codes, keys = pd.factorize(np.array([k for _, ks in chunks for k in ks], dtype=object))
    first = np.unique(codes, return_index=True)[1]  # the first row of each key, keys in order of appearance
    repeat = first[codes] != np.arange(len(codes))
    alias[positions[repeat]] = positions[first[codes[repeat]]]
    with ResponseCache() as store:
        hits = store.get_many(keys.tolist())
    sent = np.ones(len(keys), dtype=bool)
    cached = {}
    if hits:
        found = pd.Index(keys).get_indexer(list(hits))
        sent[found] = False
        for i, line in zip(found.tolist(), hits.values(), strict=True):
            p = int(positions[first[i]])
            cached[p] = _with_id(line, plan.ids_at(np.array([p]))[0])
    return Reuse(alias, cached, positions[first[sent]], np.asarray(keys[sent], dtype=object))


def _row_keys(plan: RequestPlan, backend: str, identity: dict[str, Any]) -> Iterator[tuple[np.ndarray, list[str]]]:
    """The cache key of each sent row (:class:`~pdbatch.store.cache.RowKeys`), a chunk of rows at a time.

    A prompt template's rows are keyed from their prompts rendered as Arrow
    arrays; rows given as message lists from each list.
    """
    if plan.template is not None:
        keys = RowKeys(backend, plan.model, plan.url, plan.body(""), "text", identity)
        for pos, texts in plan.payload_texts(CHUNK):
            offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64, count=len(texts) + 1, offset=8 * texts.offset)
            data = texts.buffers()[2]
            yield pos, keys.keys(memoryview(data) if data is not None else b"", offsets.tolist())
        return
    keys = RowKeys(backend, plan.model, plan.url, plan.body([]), "messages", identity)
    positions = plan.positions
    for start in range(0, len(positions), CHUNK):
        pos = positions[start : start + CHUNK]
        yield pos, [keys.key(p) for p in plan.payloads(pos)]


def fill_cache(folder: Path, record: Any, outputs: list[Path]) -> None:
    """Once, after a good job, put its new answers into the cache under the keys saved at submit.

    ``outputs`` are the job's output files; they are read only when there
    are keys (the cache stores whole output lines), and only the lines this
    home can prove it got for those keys are stored (:mod:`pdbatch.store.trust`).
    """
    done = folder / jobdir.CACHE_FILLED
    if done.exists():
        return
    try:  # the one reader of the reuse state (its alias was checked by result() already)
        saved = reusestate.load(folder, None, outputs)
        raw = saved.keys
        by_id = orjson.loads(raw) if raw is not None else None
    except (OSError, orjson.JSONDecodeError, JobFolderError):
        return  # only the cache needed it: the answers are all here
    if raw is None or not isinstance(by_id, dict):
        return  # no row was sent under a key (or the keys are damaged: only the cache needed them)
    # only what this home can prove it got for these keys (pdbatch.store.trust); a copied folder feeds nothing
    lines = trust.lines_to_cache(folder, record, raw, saved.seal, outputs)
    remember(record.backend, record.model, by_id, lines)
    with contextlib.suppress(OSError):  # a read-only job folder: cached again next time, harmlessly
        jobdir.write_file(done, b"")


def _with_id(line: bytes, custom_id: str) -> bytes:
    obj = orjson.loads(line)
    obj["custom_id"] = custom_id
    obj["cached"] = True
    return orjson.dumps(obj)


def remember(backend: str, model: str, keys: dict[str, str], lines: list[bytes]) -> int:
    """Store the successful answers among ``lines`` under their rows' keys; returns how many."""
    found: dict[str, tuple[Any, bytes]] = {}
    conflicted = set()
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        cid = obj.get("custom_id") if isinstance(obj, dict) else None
        key = keys.get(cid) if isinstance(cid, str) else None
        if not key:
            continue
        read = outcome(obj)  # the one meaning of a line decides, whatever its shape (read once: 200k lines)
        if read.error is None:
            answer = read.answer
            if key in found and found[key][0] != answer:
                conflicted.add(key)  # two different answers to one row: its result fails it, the cache keeps neither
            found[key] = (answer, line)
    rows = [(key, backend, model, line) for key, (_, line) in found.items() if key not in conflicted]
    if not rows:
        return 0
    with ResponseCache() as store:
        return store.put_many(rows)
