"""Request lines written to files: whole, or split at a backend's limits in one pass.

The plans (:mod:`.requests`, :mod:`.bodies`) hand over their lines as chunks
of bytes (an Arrow buffer or bytes, with the number of lines in each); these
write them without decoding them again, except a chunk that crosses a limit,
which is placed line by line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from ..errors import InputError

__all__ = ["Chunks", "write_all", "write_split"]

#: Complete request lines (bytes or any bytes-like buffer) and how many, chunk by chunk.
Chunks = Iterable[tuple[bytes | pa.Buffer, int]]


def write_all(buffers: Chunks, path: str | os.PathLike[str]) -> int:
    """Write every chunk to ``path``; returns the number of lines."""
    n = 0
    # a BufferedWriter passes writes larger than its buffer straight through
    with open(path, "wb", buffering=1 << 20) as fh:
        for chunk, rows in buffers:
            fh.write(chunk)
            n += rows
    return n


def write_split(buffers: Chunks, folder: str | os.PathLike[str], *, max_requests: int | None = None,
                max_bytes: int | None = None, stem: str = "requests") -> list[tuple[Path, int]]:
    """Write the lines into as many files as the limits need (see :meth:`.requests.RequestPlan.write_jsonl_parts`).

    Raises
    ------
    InputError
        A single line is over ``max_bytes``.
    """
    folder = Path(folder)
    max_requests = max_requests or 2**62
    max_bytes = max_bytes or 2**62
    parts: list[tuple[Path, int]] = []
    fh = None
    lines = size = 0

    def roll() -> None:
        nonlocal fh, lines, size
        if fh is not None:
            fh.close()
        path = folder / f"{stem}-{len(parts):05d}.jsonl"
        fh = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed by the next roll
        parts.append((path, 0))
        lines = size = 0

    try:
        for chunk, rows in buffers:
            if lines + rows <= max_requests and size + len(chunk) <= max_bytes and fh is not None:
                fh.write(chunk)
                lines += rows
                size += len(chunk)
                parts[-1] = (parts[-1][0], lines)
                continue
            # the chunk crosses a limit: place it line by line
            for line in memoryview(chunk).tobytes().splitlines(keepends=True):
                if len(line) > max_bytes:
                    raise InputError(
                        f"a request line is {len(line)} bytes, over the backend's limit of "
                        f"{max_bytes} bytes per file: {line[:80]!r}..."
                    )
                if fh is None or lines + 1 > max_requests or size + len(line) > max_bytes:
                    roll()
                assert fh is not None
                fh.write(line)
                lines += 1
                size += len(line)
                parts[-1] = (parts[-1][0], lines)
    finally:
        if fh is not None:
            fh.close()
    return parts
