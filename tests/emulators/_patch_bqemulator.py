"""Make bqemulator 1.4.0 usable offline; run by setup.sh with the venv's python.

1. At start-up it runs `INSTALL spatial`, which downloads a DuckDB extension
   (no network here) and aborts on failure: make it best-effort (GEOGRAPHY
   queries are then unsupported, which pdbatch never needs).
2. It rejects the `*/*` media type google-cloud-bigquery sends for the second
   part of small multipart loads: allow it.
Each patch is applied once (it checks for its marker) and fails loudly if the
code it expects has moved, rather than silently doing nothing.
"""
from __future__ import annotations

import pathlib

import bqemulator

PKG = pathlib.Path(bqemulator.__file__).parent
MARK = "# patched by pdbatch setup.sh"

PATCHES = [
    ("storage/engine.py",
     '            raise InternalError(\n                "DuckDB spatial extension is required',
     f'            return  {MARK}: offline, run without spatial\n'
     '            raise InternalError(\n                "DuckDB spatial extension is required'),
    ("api/routes/upload.py",
     "_PERMITTED_MEDIA_CONTENT_TYPES = (",
     f'_PERMITTED_MEDIA_CONTENT_TYPES = (  {MARK}\n    "*/*",'),
]

for rel, old, new in PATCHES:
    path = PKG / rel
    text = path.read_text()
    if MARK in text:
        continue
    if old not in text:
        raise SystemExit(f"bqemulator patch: {rel} changed, cannot find {old[:40]!r}")
    path.write_text(text.replace(old, new, 1))
    print(f"[emulators] bq: patched {rel}")
