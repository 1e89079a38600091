"""Output files -> one typed row per output line, read a block at a time.

There are two readers with one meaning, that of :func:`pdbatch.lines.outputs.outcome`:
:func:`parse_lines` reads one line at a time with it (the reference), and
:func:`parse_bytes` / :func:`parse_files` cut buffers and files into blocks of
whole lines for :mod:`pdbatch.results.blocks`, which decodes a block at a time with
msgspec into a typed schema of only the fields that decide a row (the echoed
request, most of a line, is skipped unread), handing back to the reference
only the lines it cannot decide (malformed, failed with an error object,
unusual shapes). ``tests/test_scale.py`` holds the two to the same rows.
The typed columns are :mod:`pdbatch.results.rows`; joining the rows to the frame is
:mod:`pdbatch.results.join`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ..lines import outputs
from ..lines.outputs import iter_file_lines  # re-exported: the reader of a file's lines lives with the line format
from .blocks import Parser
from .rows import INT, PARSED_COLUMNS, STRING, flat, parsed_names, typed

__all__ = ["INT", "PARSED_COLUMNS", "STRING", "dedupe", "iter_file_lines", "parse_bytes", "parse_files",
           "parse_lines", "read_predictions", "typed"]

#: Bytes decoded at once: small enough to stay in cache and to bound the
#: per-line reading a bad line costs its block, large enough that the
#: per-block work does not show.
BLOCK_BYTES = 256 << 10


def _warn_unreadable(unreadable: int) -> None:
    if unreadable:
        warnings.warn(
            f"{unreadable} output line(s) were not JSON and had no readable custom_id; their rows show as missing",
            RuntimeWarning,
            stacklevel=3,
        )


def parse_lines(lines: Iterable[bytes]) -> pd.DataFrame:
    """Parse output lines of any supported shape into one row per line, one line at a time.

    The simple reference parser; :func:`parse_bytes` gives the same rows with
    typed columns and is the one to use for large outputs. A line that is not
    JSON keeps its ``custom_id`` when one can be read from the raw bytes, with
    an ``error`` saying the line was malformed; one without a readable id is
    reported in a warning (it cannot be joined to a row).

    Parameters
    ----------
    lines : iterable of bytes
        JSONL lines, with or without their newline.

    Returns
    -------
    pandas.DataFrame
        Object columns ``custom_id``, ``response``, ``finish_reason``,
        ``prompt_tokens``, ``completion_tokens``, ``embedding``, those of
        declared kinds (:func:`pdbatch.results.rows.parsed_names`), ``error``,
        with ``None`` where a line has no value.
    """
    rows, _, unreadable = outputs.read_lines(lines)
    _warn_unreadable(unreadable)
    # object columns throughout: None stays None (pandas would otherwise infer
    # its str dtype and turn a missing error into NaN)
    names = parsed_names()
    columns = list(zip(*map(flat, rows), strict=True)) if rows else [()] * len(names)
    out = pd.DataFrame({c: pd.Series(list(v), dtype=object) for c, v in zip(names, columns, strict=True)})
    bad_id = out["custom_id"].map(lambda v: not isinstance(v, str))
    if bad_id.any():
        # An id that is not a str cannot match a request; keep it visible as text.
        out.loc[bad_id, "custom_id"] = out.loc[bad_id, "custom_id"].map(lambda v: None if v is None else str(v))
    return out


def _blocks(data: memoryview, size: int) -> Iterator[memoryview]:
    """Slices of about ``size`` bytes, each ending after a newline (the last may not)."""
    start, n = 0, len(data)
    while start < n:
        stop = min(start + size, n)
        while stop < n:  # extend to the end of the line that straddles the cut
            window = data[stop : stop + (64 << 10)].tobytes()
            i = window.find(b"\n")
            if i >= 0:
                stop += i + 1
                break
            stop += len(window)
        yield data[start:stop]
        start = stop


def _frame_of(blocks: Iterable[memoryview]) -> pd.DataFrame:
    parser = Parser()
    for block in blocks:
        parser.add(block)
    _warn_unreadable(parser.unreadable)
    return parser.frame()




def parse_bytes(data: bytes | bytearray | memoryview) -> pd.DataFrame:
    """Parse a buffer of output JSONL into one row per line, a block at a time.

    Gives the rows of :func:`parse_lines` (a malformed line keeps a readable
    ``custom_id`` with an error; one without is reported in a warning), in
    line order, but decodes only the fields that decide a row, with a typed
    schema, and keeps typed columns.

    Parameters
    ----------
    data : bytes-like
        JSONL; a last line without newline is parsed too (and is likely
        malformed if a writer died mid-line).

    Returns
    -------
    pandas.DataFrame
        ``custom_id``, ``response``, ``finish_reason`` and ``error`` as
        ``"string"``, ``prompt_tokens`` and ``completion_tokens`` as
        ``"Int64"``, ``embedding`` as objects (float32 arrays or None).
    """
    view = memoryview(data).cast("B")
    return _frame_of(_blocks(view, BLOCK_BYTES))


def _file_blocks(path: Path, complete_only: bool) -> Iterator[memoryview]:
    """Blocks of whole lines, read into one reused buffer: each is parsed before the next is read."""
    buf = bytearray(BLOCK_BYTES)
    kept = 0  # bytes of an unfinished line at the front of buf
    with open(path, "rb", buffering=0) as fh:
        while True:
            if kept == len(buf):  # a line longer than the buffer: a new one, as a view may be alive
                buf = buf + bytearray(len(buf))
            with memoryview(buf) as view:
                got = fh.readinto(view[kept:])
                end = kept + got
                cut = buf.rfind(b"\n", kept, end) + 1 if got else 0
                if cut:
                    yield view[:cut]
                elif not got:  # end of file
                    if kept and not complete_only:  # a half-written last line is not data for a live job
                        yield view[:kept]
                    return
            if cut:
                buf[: end - cut] = buf[cut:end]
                kept = end - cut
            else:
                kept = end


def parse_files(paths: Iterable[str | os.PathLike[str]], *, complete_only: bool = False) -> pd.DataFrame:
    """Parse output JSONL files, streaming, into one frame (the rows of :func:`parse_bytes`).

    Parameters
    ----------
    paths : iterable of path
        JSONL files, read in order, a block at a time.
    complete_only : bool
        Drop a last line without newline: for files a worker may still be
        writing or may have died writing.

    Returns
    -------
    pandas.DataFrame
        See :func:`parse_bytes`.
    """
    return _frame_of(b for p in paths for b in _file_blocks(Path(p), complete_only))


def read_predictions(path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Read output JSONL (a file, a folder of ``*.jsonl``, or several files) into a frame keyed by ``custom_id``.

    Parameters
    ----------
    path : path or list of paths
        A JSONL file, a folder whose ``*.jsonl`` files are all read, or a list of files.

    Returns
    -------
    pandas.DataFrame
        One row per ``custom_id`` (a success wins over a failure when an id
        appears twice), indexed by ``custom_id``, with the columns of
        :func:`parse_bytes`.
    """
    paths: list[Path] = []
    for p in [path] if isinstance(path, (str, os.PathLike)) else list(path):
        p = Path(p)
        paths.extend(sorted(p.rglob("*.jsonl")) if p.is_dir() else [p])
    return dedupe(parse_files(paths)).set_index("custom_id")


def dedupe(parsed: pd.DataFrame) -> pd.DataFrame:
    """One line per custom_id: a success beats a failure, later beats earlier."""
    if not parsed["custom_id"].duplicated().any():
        return parsed
    order = np.lexsort((np.arange(len(parsed)), parsed["error"].isna().to_numpy()))
    return parsed.iloc[order].drop_duplicates("custom_id", keep="last").sort_index()


