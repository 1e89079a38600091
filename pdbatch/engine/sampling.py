"""How a chat request samples: its sampling fields read from the body, and a token drawn from the logits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .common import RequestError, check_body

__all__ = ["TOP_CANDIDATES", "SamplingParams", "draw", "parse_params"]

TOP_CANDIDATES = 256  # nucleus sampling looks at the best this-many tokens


@dataclass
class SamplingParams:
    """The sampling fields of one chat request, OpenAI's defaults filled in."""

    max_tokens: int | None
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None
    frequency_penalty: float
    presence_penalty: float


def parse_params(body: dict[str, Any]) -> SamplingParams:
    """The sampling fields of a chat body (OpenAI defaults), or RequestError.

    The checks are :mod:`pdbatch.lines.params`' (types, ranges, the fields this
    engine refuses), the same that refused the call before submitting: a
    request line that still gets here wrong fails its row alone.
    """
    problem = check_body(body, "chat")
    if problem:
        raise RequestError(f"invalid request: {problem}")

    def get(name: str, default: Any) -> Any:
        value = body.get(name)
        return default if value is None else value  # null means "not given", as in OpenAI's API

    stop = get("stop", [])
    return SamplingParams(
        max_tokens=get("max_completion_tokens", body.get("max_tokens")),
        temperature=float(get("temperature", 1.0)),
        top_p=float(get("top_p", 1.0)),
        stop=[stop] if isinstance(stop, str) else stop,
        seed=body.get("seed"),
        frequency_penalty=float(get("frequency_penalty", 0.0)),
        presence_penalty=float(get("presence_penalty", 0.0)),
    )


def draw(logits: np.ndarray, p: SamplingParams, rng: np.random.Generator) -> int:
    """A token drawn from ``logits`` at ``p``'s temperature, among the nucleus of ``p.top_p`` (of the best few)."""
    k = min(TOP_CANDIDATES, logits.shape[0])
    top = np.argpartition(logits, -k)[-k:]
    top = top[np.argsort(logits[top])[::-1]]
    z = logits[top].astype(np.float64) / p.temperature
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    if p.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
        probs = probs[:keep] / probs[:keep].sum()
        top = top[:keep]
    return int(top[rng.choice(len(probs), p=probs)])
