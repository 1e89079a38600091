"""A small, dated table of Vertex AI and OpenAI model prices, for estimates before spending money.

Prices are US dollars per million tokens for online (synchronous) use, as
listed on Google's Vertex AI pricing page (and OpenAI's) around the dates
below; batch prediction is billed at half the online price. They change: pass
``prices={"model-id": (input_per_million, output_per_million)}`` to
``preview``/``batch_predict`` to use your own, and check the pricing page
before large jobs. Token counts for Vertex models are estimates too (see
:mod:`pdbatch.jobs.preview`).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["BATCH_DISCOUNT", "ONLINE_PRICES", "OPENAI_ONLINE_PRICES", "OPENAI_PRICES_AS_OF", "PRICES_AS_OF",
           "batch_price", "given_price", "published_price"]

PRICES_AS_OF = "2026-11-30 (list prices; verify on the provider's pricing page before large jobs)"
BATCH_DISCOUNT = 0.5

#: model id -> (input, output) US$ per million tokens, online. Sources, read
#: 2026-11-30: the open models (MaaS) section of Google's Vertex AI generative
#: AI pricing page, as last read for the Llama and gpt-oss rows (no newer copy
#: could be read; Llama 3.1 is kept for users who still reach it); Google's
#: "Gemini Embedding available" announcement for gemini-embedding-001
#: ($0.15 per million input tokens); gemini-embedding-2 from a public batch
#: listing at $0.10, i.e. $0.20 online. Retired models (see
#: pdbatch.models.DEPRECATIONS) are gone: no job can run on them.
ONLINE_PRICES: dict[str, tuple[float, float]] = {
    "llama-4-maverick-17b-128e-instruct-maas": (0.35, 1.15),
    "llama-4-scout-17b-16e-instruct-maas": (0.25, 0.70),
    "llama-3.1-405b-instruct-maas": (5.00, 16.00),
    "llama-3.1-70b-instruct-maas": (0.72, 0.72),
    "llama-3.1-8b-instruct-maas": (0.22, 0.22),
    "gpt-oss-120b-maas": (0.15, 0.60),
    "gemini-embedding-001": (0.15, 0.0),
    "gemini-embedding-2": (0.20, 0.0),
    # Gemini chat models, read 2026-12-06 (text, standard context, the `global` endpoint these jobs
    # use). No stored copy of Google's Vertex pricing page could be read, so only prices that
    # public sources quoting it agree on: Flash-Lite from a release note citing Google's pricing
    # page (yologdev/yoagent v0.27.6, 2026-11-09); 3.5 Flash $1.50 / $9.00 from several write-ups
    # of its launch (2026-05; one notes $1.65 / $9.90 outside `global`), which also put 3.1
    # Flash-Lite at a sixth of it. gemini-4-argon has no price here: preview says its cost is
    # unknown (pass prices=).
    "gemini-3.5-flash": (1.50, 9.00),
    "gemini-3.5-flash-lite": (0.30, 2.50),
    "gemini-3.1-flash-lite": (0.25, 1.50),
}

#: OpenAI's models, priced the same way (the openai backend reads this table; its Batch API bills half):
#: model id -> (input, output) US$ per million tokens, online. Read 2026-12-06 from copies of OpenAI's
#: pricing page (developers.openai.com/api/docs/pricing) that agree with each other (March-November
#: 2026); the page itself could not be read from here: verify before large jobs.
OPENAI_PRICES_AS_OF = "2026-12-06 (OpenAI list prices; verify on its pricing page before large jobs)"
OPENAI_ONLINE_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
}


def batch_price(model: str, overrides: Mapping[str, tuple[float, float]] | None = None) -> tuple[float, float] | None:
    """(input, output) US$ per million tokens for a batch job on ``model``, or None if unknown.

    ``model`` may be written with or without its publisher (``meta/llama-...``).
    Overrides are taken as batch prices, as given.
    """
    return given_price(model, overrides) or published_price(model)


def given_price(model: str, prices: Mapping[str, tuple[float, float]] | None) -> tuple[float, float] | None:
    """The user's ``prices=`` entry for ``model`` (with or without its publisher), taken as batch prices."""
    return _lookup(prices or {}, model, 1.0)


def published_price(model: str, table: Mapping[str, tuple[float, float]] = ONLINE_PRICES) -> tuple[float, float] | None:
    """The batch price of ``model`` from the published online prices (``table``), less the batch discount."""
    return _lookup(table, model, BATCH_DISCOUNT)


def _lookup(table: Mapping[str, tuple[float, float]], model: str, factor: float) -> tuple[float, float] | None:
    for name in (model, model.rsplit("/", 1)[-1]):
        if name in table:
            inp, out = table[name]
            return inp * factor, out * factor
    return None
