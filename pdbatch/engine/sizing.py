"""How many KV cells a sequence of a job can need: ``n_ctx``, or less when every request bounds its answer.

The engine gives each of its ``parallel`` sequences a KV stream of ``n_ctx``
cells (2048 by default: 47 MB each for the bundled model, 377 MB for eight).
A classification job with ``max_tokens=4`` needs a few hundred. Allocating
and clearing the streams took 0.23 s of CPU at every job start for 8 x 2048
cells against 0.06 s for 8 x 512, and a stream copied for prompt reuse is
copied whole, so sizing the streams to the job saves start time, memory and
copies. When no bound can be trusted (a request without ``max_tokens``, a
file too large to scan quickly) the streams keep ``n_ctx``; a request that
still does not fit is answered by llama-cpp-python's own loop instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .common import needs_grammar

KV_BUDGET = 8 * 2048  # cells: what eight sequences of the default n_ctx always had
MIN_PARALLEL, MAX_PARALLEL = 8, 32
SCAN_MAX_BYTES = 256 << 20  # larger request files are not scanned (about a second of parsing)
CELL_ROUND = 256  # llama.cpp rounds each stream up to a multiple of this
MESSAGE_MARGIN = 4  # tokens per message a tokenizer may add around its text (a leading space, a BOS)


@dataclass(frozen=True)
class JobSize:
    """What the requests of a job need: KV cells per sequence, and how many requests there are."""

    cells: int
    requests: int | None  # None: not counted (a file too large to scan)

    def parallel(self) -> int:
        """Sequences to decode together when the user left it open (see :func:`auto_parallel`).

        Never more than there are requests: every sequence's cells are
        allocated and cleared at the start, 12 rows need no 32 slots.
        """
        n = auto_parallel(self.cells)
        return max(1, min(n, self.requests)) if self.requests is not None else n


def job_size(path: Path | str, n_ctx: int, template_tokens: Callable[[tuple[str, ...]], int]) -> JobSize:
    """An upper bound of prompt plus answer tokens over the chat requests in ``path``, at most ``n_ctx``.

    Parameters
    ----------
    path : Path or str
        The job's ``requests.jsonl``.
    n_ctx : int
        The context window each request may use.
    template_tokens : callable
        Tokens of the chat template around messages with these roles and
        empty contents; raises ValueError when the template rejects them.

    Returns
    -------
    JobSize
        Cells per sequence (a multiple of :data:`CELL_ROUND`, or ``n_ctx``)
        and the number of request lines.

    Notes
    -----
    A prompt cannot have more tokens than its template plus the UTF-8 bytes
    of its contents: the byte-level tokenizers of GGUF chat models spend at
    least one byte on every token of text.
    """
    if os.path.getsize(path) > SCAN_MAX_BYTES:
        return JobSize(n_ctx, None)
    templates: dict[tuple[str, ...], int] = {}
    need, lines, bounded = 0, 0, True
    with open(path, "rb") as fh:
        for line in fh:
            lines += bool(line.strip())
            body = _body(line) if bounded else None
            if body is None:
                continue  # fails on its own row, runs through the grammar path, or no bound to find
            max_tokens = body.get("max_completion_tokens")
            if max_tokens is None:  # null means "not given", as the engine reads it
                max_tokens = body.get("max_tokens")
            messages = body["messages"]
            roles = tuple(str(m.get("role")) for m in messages)
            if roles not in templates:
                try:
                    templates[roles] = template_tokens(roles)
                except ValueError:
                    templates[roles] = n_ctx
            text = sum(_bytes(m.get("content")) + MESSAGE_MARGIN for m in messages)
            if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
                max_tokens = n_ctx
            need = max(need, templates[roles] + text + max_tokens)
            bounded = need < n_ctx  # past n_ctx only the lines are counted
    cells = min(n_ctx, max(CELL_ROUND, -(-need // CELL_ROUND) * CELL_ROUND))
    return JobSize(cells, lines)


def _body(line: bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(line).get("body")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(body, dict) or needs_grammar(body):
        return None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return None
    return body


def _bytes(content: Any) -> int:
    if isinstance(content, str):
        return len(content.encode("utf-8"))
    return len(orjson.dumps(content))  # parts and other shapes: their JSON is longer than their text


def auto_parallel(cells: int) -> int:
    """Sequences to decode together when the user left it open: as many as :data:`KV_BUDGET` holds, 8 to 32.

    A decoding step multiplies every weight by all its sequences' tokens at
    once, so more sequences make each token cheaper: with 16-bit weights on
    one core, 7.4 ms a token for 8 sequences, 5.8 for 16, 5.4 for 32. Past
    32 the gain is small and the first rows wait for more prompts.
    """
    return max(MIN_PARALLEL, min(MAX_PARALLEL, KV_BUDGET // max(1, cells)))
