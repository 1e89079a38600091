"""Label scoring on the chat engine: each label's log-probability as the continuation of a prompt.

A request line whose body carries :data:`FIELD` (written by
:mod:`pdbatch.results.classify`) is not answered by generation. Its prompt is the
chat-formatted messages with the assistant's turn opened (what generation
would start from), followed by the answer prefix (``"Answer:"``); each label,
after a space, is its continuation. A label's score is the sum of its
tokens' log-probabilities, each given the prompt and the label's tokens
before it, so labels that share a first token ("very good", "very bad")
still get different scores.

The prompt is computed once per row, in a free slot of the engine, after the
start it shares with what that slot's KV stream holds (the template's
header and instruction: ``streams.py``); a single-token label is read from
the prompt's last logits, and a longer label costs one call with its tokens
after the prompt, which is cut back afterwards. The content-free fillings of
the template (calibration) are scored the same way once per job and their
scores sent back with every row, so that each row's answer is complete on
its own (the response cache stores it whole).

Labels are tokenised as plain text: a label that looks like a special token
or contains template braces is taken literally.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .common import RequestError, Result, chat_completion, check_body, check_messages

#: The request body field that asks for label scores.
FIELD = "label_scores"
#: The scoring method this engine implements (bodies name it: see :mod:`pdbatch.results.classify`).
METHOD = "logprob-sum/1"


@dataclass
class _Probe:
    """A prompt to compute in a slot (the shape ``ChatEngine.prefill`` takes)."""

    slot: int
    prompt: list[int]
    n_past: int = 0


@dataclass
class Scoring:
    """A parsed scoring request: token ids of the prompt, the labels and the content-free prompts."""

    labels: list[str]
    prompt: list[int]
    continuations: list[list[int]]
    content_free: list[list[int]]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities of the next token from one row of logits (in float64)."""
    x = logits.astype(np.float64)
    x -= x.max()
    return x - np.log(np.exp(x).sum())


class Scorer:
    """Scores labels with a :class:`~pdbatch.engine.chat.ChatEngine`'s context, model and KV streams."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._content_free: dict[tuple[Any, ...], list[float]] = {}  # computed once per job

    def parse(self, body: dict[str, Any]) -> Scoring:
        """The request's tokens; RequestError for a body that is not a valid scoring request."""
        spec = body.get(FIELD)
        problem = check_body({k: v for k, v in body.items() if k != FIELD}, "chat")
        if problem:
            raise RequestError(f"invalid request: {problem}")
        if not isinstance(spec, dict) or spec.get("method") != METHOD:
            raise RequestError(f"invalid request: {FIELD} must be an object with method {METHOD!r}")
        labels, prefix, free = spec.get("labels"), spec.get("prefix", ""), spec.get("content_free", [])
        if (not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) and x for x in labels)
                or not isinstance(prefix, str) or not isinstance(free, list)):
            raise RequestError(f"invalid request: {FIELD} needs 'labels' (2 or more strings), a 'prefix' string "
                               f"and a 'content_free' list")
        e = self.engine
        head = self._text(prefix)
        prompt = e.tokenize_chat(check_messages(body)) + head
        conts = [self._text((" " if prefix else "") + label) for label in labels]
        content_free = [e.tokenize_chat(check_messages({"messages": m})) + head for m in free]
        return Scoring(labels, prompt, conts, content_free)

    def answer(self, slot: int, custom_id: str, body: dict[str, Any]) -> Result:
        """Score the row in ``slot`` (a free one) and return its result."""
        s = self.parse(body)
        # rows are scored between the engine's steps: follow the free cores as a step does (threads.py)
        e = self.engine
        threads = e.governor.update()
        e.lib.llama_set_n_threads(e.ctx, threads, threads)
        if threads not in e.stats["threads"]:
            e.stats["threads"].append(threads)
        scores = self.score(slot, s.prompt, s.continuations)
        free = []
        for prompt in s.content_free:
            key = (tuple(prompt), *map(tuple, s.continuations))
            if key not in self._content_free:
                self._content_free[key] = self.score(slot, prompt, s.continuations)
            free.append(self._content_free[key])
        text = orjson.dumps({"label": s.labels[int(np.argmax(scores))], "labels": s.labels, "logprobs": scores,
                             "content_free": free}).decode()
        return custom_id, chat_completion(custom_id, self.engine.name, text, "stop", len(s.prompt), 0), None

    def score(self, slot: int, prompt: list[int], continuations: list[list[int]]) -> list[float]:
        """Each continuation's summed log-probability after ``prompt``, computed in ``slot``'s KV stream."""
        e = self.engine
        need = len(prompt) + max(len(c) for c in continuations)
        if need > e.cells:
            where = (f"the context window of {e.n_ctx} tokens; shorten it or use Local(n_ctx=...)"
                     if need > e.n_ctx else f"the {e.cells} KV cells sized for this job")
            raise RequestError(f"prompt and label are {need} tokens, more than {where}")
        probe = _Probe(slot, prompt)
        row = e.prefill([probe], len(prompt) - e.streams.reusable(slot, prompt))[0]
        first = log_softmax(self._logits(row))
        scores = []
        for cont in continuations:
            total = float(first[cont[0]])
            if len(cont) > 1:  # the label's other tokens, each given the ones before it
                e.streams.take(slot, prompt, len(prompt))
                e.batch.set_prompts([(cont[:-1], len(prompt), slot)])
                e.batch.logits[: len(cont) - 1] = 1
                e.decode()
                e.streams.held[slot] = [*prompt, *cont[:-1]]
                for k in range(1, len(cont)):
                    total += float(log_softmax(self._logits(k - 1))[cont[k]])
            scores.append(total)
        return scores

    def _text(self, text: str) -> list[int]:
        """Plain text as tokens: no BOS, and nothing in it read as a special token."""
        if not text:
            return []
        return list(self.engine.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _logits(self, row: int) -> np.ndarray:
        e = self.engine
        ptr = e.lib.llama_get_logits_ith(e.ctx, row)
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(e.n_vocab,))
