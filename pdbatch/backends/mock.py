"""An in-memory backend for tests (pdbatch's and yours), like httpx's MockTransport.

``Mock()`` answers every chat request with ``"echo: <last user message>"`` and
every embeddings request with a small deterministic vector, at submit time,
without a model. ``fail`` picks rows that fail (their output line carries a
``status``), ``final_state`` makes the whole job end in another state, and
``answered`` leaves the rows past a count unanswered. The output lines come
in reverse order, so that a join relying on order would show. Jobs live in
this process only.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import orjson

from ..lines.outputs import output_line, succeeded
from ..models import Kind
from .base import Backend, JobStatus

__all__ = ["Mock"]


class Mock(Backend):
    """A backend that answers instantly and deterministically, in memory.

    Parameters
    ----------
    fail : callable, optional
        ``fail(custom_id, body) -> str | None``: an error for rows that should fail.
    final_state : str
        The state the job ends in (``"JOB_STATE_SUCCEEDED"`` by default).
    answered : int, optional
        Answer only the first this-many requests (for partial results).
    """

    name = "mock"
    _jobs: ClassVar[dict[str, dict[str, Any]]] = {}
    _counter = itertools.count(1)

    def __init__(
        self,
        *,
        fail: Callable[[str, dict[str, Any]], str | None] | None = None,
        final_state: str = "JOB_STATE_SUCCEEDED",
        answered: int | None = None,
    ) -> None:
        self.fail = fail
        self.final_state = final_state
        self.answered = answered
        self.submitted: list[list[bytes]] = []

    def settings(self) -> dict[str, Any]:
        return {"final_state": self.final_state, "answered": self.answered}

    def model_name(self, model: str | None, kind: Kind) -> str:
        return model or ("mock-embed" if kind == "embeddings" else "mock-chat")

    def submit(self, files: list[Path], *, model: str, kind: Kind, n_requests: int, display_name: str,
               extra_columns: Any = None) -> list[str]:
        lines = [line for f in files for line in f.read_bytes().splitlines() if line.strip()]
        self.submitted.append(lines)
        job_id = f"mock-{next(self._counter)}"
        out = []
        for line in lines[: self.answered]:
            req = orjson.loads(line)
            cid, body = req["custom_id"], req["body"]
            error = self.fail(cid, body) if self.fail else None
            out.append(output_line(cid, None if error else _answer(kind, body), error, request=body))
        out.reverse()  # output order is not input order: joins must never rely on it
        self._jobs[job_id] = {"lines": out, "total": len(lines), "state": self.final_state,
                              "failed": sum(1 for x in out if not succeeded(orjson.loads(x)))}
        return [job_id]

    def status(self, job_id: str) -> JobStatus:
        from ..errors import JobNotFoundError

        if job_id not in self._jobs:
            raise JobNotFoundError(f"no mock job {job_id!r} in this process")
        job = self._jobs[job_id]
        failed = job["failed"]
        return JobStatus(state=job["state"], total=job["total"], succeeded=len(job["lines"]) - failed,
                         failed=failed, error=None if job["state"] == "JOB_STATE_SUCCEEDED" else "mock ended")

    def cancel(self, job_id: str) -> None:
        self._jobs[job_id]["state"] = "JOB_STATE_CANCELLED"

    def fetch_output(self, job_id: str, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / f"{job_id}.jsonl"
        path.write_bytes(b"".join(self._jobs[job_id]["lines"]))
        return [path]


def _answer(kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
    if kind == "embeddings":
        digest = hashlib.sha256(str(body.get("input")).encode()).digest()
        return {"object": "list", "data": [{"object": "embedding", "index": 0,
                                            "embedding": [b / 255 for b in digest[:8]]}]}
    text = str(body["messages"][-1]["content"])
    return {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": f"echo: {text}"}}],
            "usage": {"prompt_tokens": len(text.split()), "completion_tokens": len(text.split()) + 1}}
