"""The frames a command reads and writes: CSV, Parquet, JSON Lines (CSV on stdout without ``-o``)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

from ..errors import ConfigError

__all__ = ["OUTPUTS", "check_output", "read_frame", "write_frame"]


def read_frame(path: str) -> pd.DataFrame:
    """Read a CSV, Parquet, JSON or JSONL file into a frame."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"input file {path!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(p)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(p)
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(p, lines=True)
    if suffix == ".json":
        return pd.read_json(p)
    raise ConfigError(f"input {path!r}: use a .csv, .parquet, .jsonl or .json file")


#: Output formats by file extension.
OUTPUTS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def check_output(path: str | None) -> None:
    """Refuse an output path that :func:`write_frame` could not write, before any job is submitted.

    Parameters
    ----------
    path : str or None
        The ``-o`` argument (None or ``-``: CSV on stdout).

    Raises
    ------
    ConfigError
        An unknown extension, a folder, a missing or unwritable parent folder.
    """
    if path in (None, "-"):
        return
    p = Path(path)
    if p.suffix.lower() not in OUTPUTS:
        raise ConfigError(f"-o {path}: use a .parquet, .csv or .jsonl file (nothing was submitted)")
    if p.is_dir():
        raise ConfigError(f"-o {path} is a folder; name a file in it, e.g. -o {p / ('out' + p.suffix)}")
    folder = p.parent
    if not folder.is_dir():
        raise ConfigError(f"-o {path}: the folder {folder} does not exist; create it (mkdir -p {folder}) "
                          f"or write elsewhere (nothing was submitted)")
    try:  # the one test that holds for every user, root and read-only disks included: write something
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".pdbatch-check-"):
            pass
        if p.exists() and not os.access(p, os.W_OK):
            raise PermissionError(13, "permission denied", str(p))
    except OSError as exc:
        raise ConfigError(f"-o {path}: cannot write there ({exc.strerror or exc}); "
                          f"write elsewhere (nothing was submitted)") from None


def write_frame(frame: pd.DataFrame, path: str | None) -> None:
    """Write ``frame`` by the file's extension (CSV to stdout when no path)."""
    if path in (None, "-"):
        frame.to_csv(sys.stdout, index=False)
        return
    check_output(path)
    suffix = Path(path).suffix.lower()
    out = frame.copy()
    if "embedding" in out.columns and suffix != ".parquet":
        out["embedding"] = out["embedding"].map(lambda v: None if v is None else v.tolist())
    if OUTPUTS[suffix] == "parquet":
        out.to_parquet(path, index=False)
    elif OUTPUTS[suffix] == "csv":
        out.to_csv(path, index=False)
    else:
        out.to_json(path, orient="records", lines=True, force_ascii=False)
