"""Labelling rows on the bundled model: ``df.llama.classify`` against ``schema=`` generation, side by side.

    python benchmarks/classify.py                 # the 60 bundled reviews, 2 rounds, parity on 12 rows
    python benchmarks/classify.py --rounds 1 --parity 0

On SmolLM2-135M-Instruct (the local default), for the 60 bundled reviews
and their hand-written labels (positive, negative, mixed, neutral):

- accuracy of ``classify`` calibrated (the default), uncalibrated, and of
  ``batch_predict(schema=<enum>, max_tokens=16, temperature=0)``;
- rows/s of each, end to end (submit, worker start and model load, the job,
  the join), the response cache off; the calls alternate within each round
  and the best round counts, so that a busy moment of a shared machine hurts
  both alike. The target: classify at least as fast as the schema call;
- greedy parity: the labels ``classify(calibrate=False)`` chooses, on the
  same weights (``Local(dtype="file")``), against the argmax of the same
  scores computed one row and one label at a time with llama-cpp-python
  (``Llama.eval`` over the prompt, the answer prefix and the label).

Targets (issue #23): accuracy >= 75%, speed ratio >= 1, parity 100%.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

import pdbatch  # noqa: F401  (registers df.llama)
from pdbatch.backends import Local
from pdbatch.builders.datasets import reviews

LABELS = ["positive", "negative", "mixed", "neutral"]
PROMPT = "Classify the sentiment of this product review as positive, negative, mixed or neutral.\n\nReview: {review}"
PREFIX = "Sentiment:"
SCHEMA = {"type": "object", "properties": {"sentiment": {"type": "string", "enum": LABELS}},
          "required": ["sentiment"]}


def reference_scores(texts: list[str], labels: list[str], prefix: str) -> np.ndarray:
    """Each label's summed log-probability after each prompt, with llama-cpp-python alone, one at a time."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from pdbatch.engine.llama import load_llama
    from pdbatch.engine.score import log_softmax
    from pdbatch.models import resolve_local

    llm = load_llama(str(resolve_local(None, "chat").weights()), n_ctx=512, logits_all=True, verbose=False)
    fmt = Jinja2ChatFormatter(template=llm.metadata["tokenizer.chat_template"],
                              eos_token=llm._model.token_get_text(llm.token_eos()),
                              bos_token=llm._model.token_get_text(llm.token_bos()))
    out = []
    for text in texts:
        rendered = fmt(messages=[{"role": "user", "content": text}])
        head = rendered.prompt + prefix
        bos = not rendered.added_special
        start = llm.tokenize(head.encode(), add_bos=bos, special=True)
        row = []
        for label in labels:
            full = llm.tokenize((head + " " + label).encode(), add_bos=bos, special=True)
            llm.reset()
            llm.eval(full)
            row.append(sum(float(log_softmax(llm.scores[len(start) - 1 + k])[t])
                           for k, t in enumerate(full[len(start):])))
        out.append(row)
    return np.array(out)


def accuracy(predicted: pd.Series, truth: pd.Series) -> float:
    return float((predicted.astype("string") == truth.astype("string")).fillna(False).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2, help="rounds of the speed comparison (best counts)")
    ap.add_argument("--parity", type=int, default=12, help="rows of the parity check (0: none)")
    args = ap.parse_args()
    df = reviews().rename(columns={"label": "truth"})
    timings: dict[str, list[float]] = {"classify": [], "schema": []}
    results: dict[str, pd.DataFrame] = {}
    for _ in range(args.rounds):
        start = time.perf_counter()
        results["classify"] = df.llama.classify(PROMPT, labels=LABELS, answer_prefix=PREFIX, cache=False,
                                                progress=False)
        timings["classify"].append(time.perf_counter() - start)
        start = time.perf_counter()
        results["schema"] = df.llama.batch_predict(PROMPT, schema=SCHEMA, max_tokens=16, temperature=0,
                                                   cache=False, progress=False)
        timings["schema"].append(time.perf_counter() - start)
    raw = df.llama.classify(PROMPT, labels=LABELS, answer_prefix=PREFIX, calibrate=False, cache=False,
                            progress=False)
    n = len(df)
    rate = {k: n / min(v) for k, v in timings.items()}
    acc = accuracy(results["classify"]["label"], df["truth"])
    print(f"`python benchmarks/classify.py`, {time.strftime('%Y-%m-%d %H:%M')}, {n} bundled reviews, "
          f"smollm2-135m-instruct\n")
    print(f"| call | accuracy | rows/s (best of {args.rounds}) |")
    print("| --- | ---: | ---: |")
    print(f"| classify, calibrated | {acc:.0%} | {rate['classify']:.1f} |")
    print(f"| classify, calibrate=False | {accuracy(raw['label'], df['truth']):.0%} | |")
    print(f"| batch_predict(schema=enum, max_tokens=16) | "
          f"{accuracy(results['schema']['sentiment'], df['truth']):.0%} | {rate['schema']:.1f} |")
    print(f"\naccuracy {acc:.0%} (target >= 75%: {'met' if acc >= 0.75 else 'NOT met'}); speed ratio "
          f"classify/schema {rate['classify'] / rate['schema']:.1f}x (target >= 1)")
    if args.parity:
        rows = df.iloc[:: max(1, n // args.parity)].head(args.parity)
        labels = [*LABELS, "so-so"]  # one label of several tokens
        got = rows.llama.classify(PROMPT, labels=labels, answer_prefix=PREFIX, calibrate=False, cache=False,
                                  backend=Local(dtype="file"), progress=False)
        ref = reference_scores([PROMPT.format(review=r) for r in rows["review"]], labels, PREFIX)
        same = int((got["label"].to_numpy() == np.array(labels)[ref.argmax(axis=1)]).sum())
        p_ref = np.exp(ref - ref.max(axis=1, keepdims=True))
        p_ref /= p_ref.sum(axis=1, keepdims=True)
        diff = np.abs(got[[f"p_{x}" for x in labels]].to_numpy() - p_ref).max()
        print(f"greedy parity with llama-cpp-python one row at a time: {same} of {len(rows)} labels equal; "
              f"largest probability difference {diff:.4f}")


if __name__ == "__main__":
    main()
