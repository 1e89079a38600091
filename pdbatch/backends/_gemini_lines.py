"""What Gemini output files share, chat and embeddings alike: int64 counts written as strings, and the rewrite.

Vertex writes a Gemini job's output in Gemini's own shape; :mod:`._gemini_chat`
and :mod:`._gemini_embed` each say how one line becomes an OpenAI-shaped
line, and this module rewrites a downloaded file with that, so that the shared
reader (:mod:`pdbatch.results`) sees one line format whatever the model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

__all__ = ["count", "rewrite"]


def count(value: Any) -> int | None:
    """A token count written as a number or as an int64 string (``"7"``: JSON's int64); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def rewrite(path: Path, output_line: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Rewrite a downloaded output file in place with ``output_line``; unreadable lines are kept as they are."""
    tmp = path.with_name(path.name + ".openai")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        for raw in src:
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                dst.write(raw.rstrip(b"\n") + b"\n")  # the shared parser reports it on its row
                continue
            dst.write((orjson.dumps(output_line(obj)) if isinstance(obj, dict) else raw.rstrip(b"\n")) + b"\n")
    os.replace(tmp, path)
