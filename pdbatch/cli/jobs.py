"""The bodies of ``pdbatch jobs [prune]`` and ``pdbatch cache stats|clear``: housekeeping of ``PDBATCH_HOME``.

:mod:`pdbatch.cli.commands` wires the arguments; these read the job folders and the
cache. ``pdbatch jobs`` shows each job's last known state from its folder
(:func:`pdbatch.store.jobdir.last_state`) without asking any backend; ``--refresh``
asks only about the jobs not known to have ended. ``pdbatch jobs prune``
removes the folders of ended jobs (and what their backends staged), never a
job that may still run, and never the cache.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends.base import TERMINAL_STATES
from ..display.reporter import RowCounts, short_state
from ..errors import ConfigError, PdbatchError
from ..store import cache, jobdir

__all__ = ["cmd_cache_clear", "cmd_cache_stats", "cmd_jobs", "cmd_prune", "one_line", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def parse_duration(text: str, option: str = "--older-than") -> float:
    """``"7d"``, ``"12h"``, ``"30m"`` (also ``s`` and ``w``) in seconds.

    Raises
    ------
    ConfigError
        Anything else (a bare number, a negative one, another unit), naming the option.
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise ConfigError(f"{option} {text!r}: write a number and a unit, e.g. {option} 7d (days), 12h (hours), "
                          f"30m (minutes), 2w (weeks)")
    return float(match[1]) * _UNITS[match[2]]


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An error on one line, at most ``limit`` characters; non-pdbatch errors keep their type's name."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, PdbatchError):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def _clean(value: Any, limit: int = 200) -> str:
    # read from a job folder: one line, no control characters, bounded
    text = " ".join(str(value).split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _state_text(st: dict[str, Any] | None, rows: RowCounts | None) -> str:
    if st is None:
        return "submitted (state not seen yet: --refresh asks)"
    counts = ""
    total = st.get("total")
    ok, bad = st.get("succeeded"), st.get("failed")
    if rows is not None and rows.sent == 0:  # no request to count: say how the rows were answered
        counts = f" ({rows.describe().partition(': ')[2]})"
    elif isinstance(ok, int) and isinstance(bad, int):
        sent = " sent" if rows is not None and rows.reused else ""  # requests, not rows: some were not sent
        counts = f" {ok + bad}/{total if isinstance(total, int) else '?'}{sent} ({ok} ok, {bad} failed)"
    seen = st.get("seen")
    as_of = f" as of {_when(seen)}" if isinstance(seen, int | float) and seen > 0 else ""
    return f"{_clean(short_state(st['state']), 40)}{counts}{as_of}"


def _refreshed(rec: jobdir.Manifest) -> dict[str, Any]:
    from ..jobs.job import attach

    st = attach(rec.id).refresh()  # also keeps it in last-status.json
    return {"state": st.state, "total": st.total, "succeeded": st.succeeded, "failed": st.failed,
            "seen": time.time()}


def cmd_jobs(args: argparse.Namespace) -> int:
    """``pdbatch jobs``: each job's last known state, from its folder; ``--refresh`` asks about the running ones."""
    root = jobdir.root()
    rows = []
    damaged = 0
    for path, modified, record in jobdir.jobs():
        try:
            if isinstance(record, Exception):
                raise record
            st = jobdir.last_state(path.parent)
            if args.refresh and (st is None or st["state"] not in TERMINAL_STATES):
                try:
                    st = _refreshed(record)
                except Exception as exc:  # the state is unknown now; the row still lists the job
                    st = {"state": f"? ({one_line(exc)})"}
            rows.append(f"{_when(record.created)}  {_clean(record.id)}  {_clean(record.backend, 40)}:"
                        f"{_clean(record.model)}  "
                        f"{record.n_rows} rows  {_state_text(st, RowCounts.from_record(record.rows))}")
        except Exception as exc:  # one damaged folder must not hide the others: show it, with where it is
            damaged += 1
            rows.append(f"{_when(modified)}  {path.parent.name}  DAMAGED: {path}: {one_line(exc)}")
    if not rows:
        print(f"no jobs under {root}")
    for row in rows[-args.last:]:
        print(row)
    if damaged:
        print(f"pdbatch: {damaged} job folder(s) under {root} have a manifest that cannot be read (marked "
              f"DAMAGED); move them away or delete them", file=sys.stderr)
    return 0


@dataclass
class _Candidate:
    record: jobdir.Manifest
    folder: Path
    state: str


def _candidates(cutoff: float) -> tuple[list[_Candidate], list[str]]:
    """Ended jobs submitted before ``cutoff``, and why other old jobs are kept."""
    found, kept = [], []
    for path, _, record in jobdir.jobs():
        folder = path.parent
        if isinstance(record, Exception) or folder.is_symlink():
            continue  # shown as DAMAGED by `pdbatch jobs`; not ours to judge
        if not isinstance(record.created, int | float) or record.created > cutoff:
            continue
        try:
            own = jobdir.folder_for(record.id) == folder.resolve()
        except PdbatchError:
            own = False
        if not own:  # a manifest is untrusted data: one naming another job's id is not acted upon
            kept.append(f"{folder}: kept, its manifest names job {_clean(record.id)!r}, not this folder")
            continue
        st = jobdir.last_state(folder)
        state = st["state"] if st else None
        if state not in TERMINAL_STATES:
            try:  # not known to have ended: ask, rather than remove a job that may still run
                state = _refreshed(record)["state"]
            except Exception as exc:
                kept.append(f"{_clean(record.id)}: kept, its state cannot be checked ({one_line(exc)})")
                continue
        if state not in TERMINAL_STATES:
            kept.append(f"{_clean(record.id)}: kept, it is {short_state(state or '')}")
            continue
        found.append(_Candidate(record, folder, state))
    return found, kept


def _remove(c: _Candidate) -> list[str]:
    """Delete what the job staged on its backend (best effort), then its folders; returns notes."""
    from ..backends import backend_class

    notes = []
    try:
        backend = backend_class(c.record.backend).from_settings(c.record.backend_settings)
        for part in c.record.parts:
            for what in backend.discard_staging(part):
                notes.append(f"deleted {what}")
    except Exception as exc:  # the folder goes anyway: the staged files are the backend's, and said
        notes.append(f"its staged request files could not be deleted ({one_line(exc)}); delete them by hand")
    for part in c.record.parts:
        if part == c.record.id:
            continue
        try:
            other = jobdir.folder_for(part)
            # a part's folder goes only if it says it is a part of this job: a manifest is untrusted data
            ours = (other / jobdir.POINTER).read_text().strip() == c.record.id
        except (PdbatchError, OSError, UnicodeDecodeError):
            continue
        if ours and other.is_dir() and not other.is_symlink():
            shutil.rmtree(other, ignore_errors=True)
    shutil.rmtree(c.folder)
    return notes


def cmd_prune(args: argparse.Namespace) -> int:
    """``pdbatch jobs prune --older-than 7d [--yes]``: list, or with ``--yes`` remove, ended jobs' folders."""
    age = parse_duration(args.older_than)
    found, kept = _candidates(time.time() - age)
    for line in kept:
        print(line, file=sys.stderr)
    if not found:
        print(f"no ended job older than {args.older_than} under {jobdir.root()}")
        return 0
    verb = "removing" if args.yes else "would remove"
    for c in found:
        print(f"{verb} {_clean(c.record.id)}  {_clean(c.record.backend, 40)}:{_clean(c.record.model)}  "
              f"{short_state(c.state)}, submitted {_when(c.record.created)}  ({c.folder})")
        if args.yes:
            for note in _remove(c):
                print(f"  {_clean(c.record.id)}: {note}")
    if not args.yes:
        print(f"{len(found)} job folder(s) would be removed (the response cache is kept); "
              f"run again with --yes to remove them")
    else:
        print(f"removed {len(found)} job folder(s); the response cache is kept")
    return 0


def cmd_cache_stats(args: argparse.Namespace) -> int:
    """``pdbatch cache stats``: cached answers and their size, by backend and model."""
    with cache.ResponseCache() as store:
        rows = store.stats()
        path = store.path
    if not rows:
        print(f"the response cache {path} is empty")
        return 0
    width = max(len(f"{_clean(r['backend'], 40)}:{_clean(r['model'])}") for r in rows)
    print(f"{'backend:model':<{width}}  {'answers':>8}  {'size':>9}  newest")
    for r in rows:
        name = f"{_clean(r['backend'], 40)}:{_clean(r['model'])}"
        print(f"{name:<{width}}  {r['entries']:>8}  {_size(r['bytes']):>9}  {_when(r['newest'])}")
    total = sum(r["entries"] for r in rows)
    disk = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    print(f"{total} cached answers in {path} ({_size(disk)} on disk)")
    return 0


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def cmd_cache_clear(args: argparse.Namespace) -> int:
    """``pdbatch cache clear [--backend B] [--model M] [--older-than D]``: delete cached answers, say how many."""
    older = parse_duration(args.older_than) if args.older_than else None
    n = cache.clear(backend=args.backend, model=args.model,
                    before=None if older is None else time.time() - older)
    if n == 0 and (args.backend or args.model or older is not None):
        what = ", ".join(f"{k} {v!r}" for k, v in (("backend", args.backend), ("model", args.model),
                                                   ("older than", args.older_than)) if v)
        with cache.ResponseCache() as store:
            models = [f"{r['backend']}:{r['model']}" for r in store.stats()]
        print(f"nothing matched: no cached answers for {what}"
              + (f" (cached: {', '.join(_clean(m) for m in models)}; see `pdbatch cache stats`)" if models
                 else " (the cache is empty)"))
        return 0
    print(f"removed {n} cached answers")
    return 0
