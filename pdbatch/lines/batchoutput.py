"""Answers written as an OpenAI batch output file: one line per request line, in the file's order.

The format is OpenAI's "request output object" (its Batch API reference), which
vLLM's ``run-batch`` writes too::

    {"id": "batch_req_...", "custom_id": "request-1",
     "response": {"status_code": 200, "request_id": "req_...", "body": {<chat.completion>}},
     "error": null}

and, for a line that got no answer::

    {"id": "batch_req_...", "custom_id": "request-2", "response": null,
     "error": {"code": "invalid_request", "message": "url '/v1/completions' is not supported ..."}}

``body`` is the backend's own answer (the ``chat.completion`` or embeddings
list object), not rebuilt from columns. The ids are derived from the job id
and the ``custom_id``, so writing a job's results twice gives the same file.
:func:`pdbatch.read_predictions` reads these files back.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Any

import orjson

from .outputs import answer_body, outcome

__all__ = ["CANCELLED", "EXPIRED", "FAILED", "INVALID", "JOB_FAILED", "NO_OUTPUT", "answer", "output_line",
           "write_output"]

#: Error codes of lines without an answer. OpenAI's reference leaves the codes
#: open ("a machine-readable error code"); these say why in pdbatch's terms.
INVALID = "invalid_request"  # refused before sending: an unsupported url, a body the backend cannot take
FAILED = "request_failed"  # sent, and the backend answered with an error for this line
CANCELLED = "batch_cancelled"  # not answered: the job was cancelled first
EXPIRED = "batch_expired"  # not answered: the job expired first
JOB_FAILED = "batch_failed"  # not answered: the job failed as a whole
NO_OUTPUT = "no_output"  # the job ended but wrote no line for this request


def answer(obj: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """A backend output line (any shape :mod:`pdbatch.results.parse` reads) as (response body, error).

    Returns
    -------
    (dict or None, str or None)
        The answer object (``chat.completion``, embeddings list) and None on
        success; None and the row's error otherwise.
    """
    error = outcome(obj).error
    if error is not None:
        return None, error
    return answer_body(obj), None


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\0".join(parts).encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def output_line(job_id: str, custom_id: str, body: dict[str, Any] | None = None,
                error: tuple[str, str] | None = None, *, request_id: str | None = None) -> dict[str, Any]:
    """One output line: the answer ``body``, or ``error`` as (code, message).

    Parameters
    ----------
    job_id : str
        The job the line belongs to (with ``custom_id``, it makes the line's ids).
    custom_id : str
    body : dict, optional
        The answer, on success.
    error : (str, str), optional
        The code (:data:`INVALID`, :data:`FAILED`, ...) and message, on failure.
    request_id : str, optional
        The backend's own id for the request, when its output line has one.

    Returns
    -------
    dict
        ``id``, ``custom_id``, ``response`` and ``error``.
    """
    if (body is None) == (error is None):
        raise ValueError("an output line has either an answer or an error")
    line: dict[str, Any] = {"id": f"batch_req_{_digest(job_id, custom_id)}", "custom_id": custom_id}
    if error is None:
        line["response"] = {"status_code": 200, "request_id": request_id or f"req_{_digest(job_id, custom_id, 'r')}",
                            "body": body}
        line["error"] = None
    else:
        line["response"] = None
        line["error"] = {"code": error[0], "message": error[1]}
    return line


def write_output(path: str | os.PathLike[str], lines: Iterable[dict[str, Any]]) -> int:
    """Write output lines (from :func:`output_line`) as JSONL; returns how many."""
    n = 0
    with open(path, "wb", buffering=1 << 20) as fh:
        for line in lines:
            fh.write(orjson.dumps(line) + b"\n")
            n += 1
    return n
