"""``python -m pdbatch.demo``: one real batch job on the local engine, end to end.

Classifies the sixty bundled product reviews with SmolLM2-135M-Instruct on
llama.cpp, prints the joined frame and a one-line summary.
"""

from __future__ import annotations

import sys
import time

import pdbatch
from pdbatch.datasets import reviews


def main() -> int:
    """Run the demo; returns the process exit code."""
    df = reviews()
    started = time.perf_counter()
    out = df.llama.batch_predict(
        "Classify the sentiment of this product review as positive, negative, mixed or neutral. "
        "Answer with one word.\n\nReview: {review}",
        system="You are a careful annotator.",
        max_tokens=8,
        temperature=0,
    )
    elapsed = time.perf_counter() - started
    shown = out[["product_id", "review", "label", "response", "completion_tokens", "error"]]
    print(shown.to_string(max_colwidth=44))
    ok = int(out["error"].isna().sum())
    tokens = int(out["completion_tokens"].sum())
    print(
        f"pdbatch {pdbatch.__version__}: {len(out)} rows, {ok} answered, {len(out) - ok} failed, "
        f"{tokens} tokens generated in {elapsed:.1f} s on the local engine (smollm2-135m-instruct)"
    )
    return 0 if ok == len(out) else 1


if __name__ == "__main__":
    sys.exit(main())
