"""``python -m pdbatch.demo``: real batch jobs on the local engine, end to end, with their accuracy.

Labels the sentiment of the sixty bundled product reviews three ways and
scores each against the reviews' ``label`` column, best first:

1. ``df.llama.classify``: SmolLM2-135M-Instruct on llama.cpp scores each
   label as the continuation of the prompt, calibrated against content-free
   inputs. One pass per row, no generation; the way to label with a small model.
2. multilingual-e5-small embeddings: each review takes the label whose short
   description it is most similar to.
3. ``schema=``: the same chat model *generates* its answer, constrained to
   the four labels by a llama.cpp grammar. A 135M model picks a label this
   way, but rarely the right one: generation is for larger models.

Then it prints the joined frame and a summary.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

import pdbatch

from .builders.datasets import reviews

LABELS = ["positive", "negative", "mixed", "neutral"]
SCHEMA = {"type": "object", "properties": {"sentiment": {"type": "string", "enum": LABELS}},
          "required": ["sentiment"]}
#: the answer starts with "Sentiment:", and each label is scored as what follows it
PREFIX = "Sentiment:"
PROMPT = "Classify the sentiment of this product review as positive, negative, mixed or neutral.\n\nReview: {review}"
# e5 compares a "query" with "passages": one query per label, the reviews are the passages
DESCRIPTIONS = pd.DataFrame({
    "label": LABELS,
    "text": [
        "a positive product review: the customer is happy with the product",
        "a negative product review: the product broke or disappointed the customer",
        "a mixed product review: the customer likes some things and dislikes others",
        "a neutral product review that only describes the product, without any opinion",
    ],
})


def accuracy(predicted: pd.Series, truth: pd.Series) -> str:
    """``"75% (45 of 60)"``; a row without an answer counts as wrong."""
    right = int((predicted.astype("string") == truth.astype("string")).fillna(False).sum())
    return f"{right / len(truth):.0%} ({right} of {len(truth)})"


def main(argv: list[str] | None = None) -> int:
    """Run the demo (``--rows N``: only the first N reviews); returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m pdbatch.demo",
                                     description="Label the bundled reviews on the local engine; score the labels.")
    parser.add_argument("--rows", type=int, default=60, help="label only the first N reviews (default: all 60)")
    df = reviews().head(parser.parse_args(argv).rows)
    started = time.perf_counter()
    scored = df.llama.classify(PROMPT, labels=LABELS, answer_prefix=PREFIX, output="by_scores")
    classify_seconds = time.perf_counter() - started

    started = time.perf_counter()
    texts = df.llama.embed("{review}")
    labels = DESCRIPTIONS.llama.embed("{text}", input_type="query")
    similarity = np.stack(texts.embedding.to_list()) @ np.stack(labels.embedding.to_list()).T
    embed_seconds = time.perf_counter() - started

    started = time.perf_counter()
    chat = df.llama.batch_predict(PROMPT, schema=SCHEMA, max_tokens=16, temperature=0)
    chat_seconds = time.perf_counter() - started

    out = scored.assign(by_embeddings=np.array(LABELS)[similarity.argmax(axis=1)], by_schema=chat["sentiment"],
                        error=scored["error"].fillna(chat["error"]))
    shown = out[["product_id", "review", "label", "by_scores", "by_embeddings", "by_schema", "error"]]
    print(shown.to_string(max_colwidth=40))
    ok = int(out["error"].isna().sum())
    print(
        f"\npdbatch {pdbatch.__version__}: {len(out)} rows, {ok} answered, {len(out) - ok} failed.\n"
        f"  smollm2-135m-instruct, df.llama.classify (calibrated label scores): "
        f"{accuracy(out['by_scores'], out['label'])} right, {classify_seconds:.1f} s\n"
        f"  multilingual-e5-small, nearest label description:                   "
        f"{accuracy(out['by_embeddings'], out['label'])} right, {embed_seconds:.1f} s\n"
        f"  smollm2-135m-instruct, generated label constrained by schema=:      "
        f"{accuracy(out['by_schema'], out['label'])} right, {chat_seconds:.1f} s\n"
        "The bundled 135M chat model labels well when it scores the labels (classify) and badly when it "
        "generates them: use it offline for classify and short free-text tasks, and a larger .gguf model or "
        "Vertex AI for generation that has to be right."
    )
    return 0 if ok == len(out) else 1


if __name__ == "__main__":
    sys.exit(main())
