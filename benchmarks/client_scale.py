"""A million rows through pdbatch's client side, against the straightforward way.

Times, in one run:

* build + write the request JSONL: (a) a loop over ``df.to_dict("records")``
  building a dict and ``json.dumps`` per line, against (b) pdbatch's
  streaming writer (``build_requests(...).write_jsonl``, what
  ``df.llama.to_jsonl`` runs);
* parse + join the output JSONL (Vertex shape, shuffled, with some failed
  rows): (a) ``json.loads`` per line and ``DataFrame.merge`` on custom_id,
  against (b) ``parse_files`` + ``join_results``;
* plan reuse (which rows repeat another, or are in the response cache) on
  the default path, ``temperature=0`` and ``cache=True``: (a) a body dict per
  row hashed as canonical JSON, against (b) ``plan_reuse``, which should take
  at most twice the time of building and writing the requests.

Each phase runs in a fresh subprocess so that its peak memory is its own: the
peak RSS above the RSS just before the phase (reset with ``clear_refs`` where
Linux allows it, else sampled), which counts Arrow's allocations that
tracemalloc would miss. Inputs and outputs live in a temporary folder that is
deleted at the end.

Usage::

    python benchmarks/client_scale.py            # 1,000,000 rows
    python benchmarks/client_scale.py --rows 20000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

PROMPT = "Classify this review: {review}"
MODEL = "smollm2-135m-instruct"
MAX_TOKENS = 16
FAIL_EVERY = 200  # 0.5% of output lines are failures, as a real job has a few
WORDS = ["the", "a", "great", "terrible", "food", "service", "slow", "quick", "friendly", "rude", "price", "value", "would", "not", "again", "recommend", "pasta", "pizza", "table", "waiter", '"amazing"', "awful", "it's", "ok", "fine\nreally", "loved", "hated", "cold", "warm", "dessert"]


# ------------------------------------------------------------------ inputs


def make_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` reviews of about 200 characters, a few with quotes and newlines."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS, dtype=object)
    pool = [" ".join(rng.choice(words, 40).tolist())[:195] for _ in range(4096)]
    pick = rng.integers(0, len(pool), n)
    text = [f"{pool[k]} {i}" for i, k in enumerate(pick.tolist())]
    return pd.DataFrame({"id": np.arange(n), "review": text, "stars": rng.integers(1, 6, n)})


def make_output(requests: Path, out: Path, seed: int = 0) -> None:
    """Vertex-style output lines for every request, shuffled, with some failures."""
    lines = requests.read_bytes().splitlines()
    order = np.random.default_rng(seed).permutation(len(lines))
    labels = ["positive", "negative", "mixed"]
    with open(out, "wb", buffering=1 << 20) as fh:
        for i in order.tolist():
            req = orjson.loads(lines[i])
            line: dict = {"custom_id": req["custom_id"], "request": req["body"]}
            if i % FAIL_EVERY == 7:
                line["status"] = "Internal error: the model server timed out"
            else:
                line["status"] = ""
                line["response"] = {
                    "object": "chat.completion",
                    "choices": [{"message": {"role": "assistant", "content": labels[i % 3]},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 60 + i % 7, "completion_tokens": 1, "total_tokens": 61 + i % 7},
                }
            fh.write(orjson.dumps(line) + b"\n")


# ------------------------------------------------------------------ phases


def baseline_write(df: pd.DataFrame, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i, rec in enumerate(df.to_dict("records")):
            body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT.format(**rec)}],
                    "max_tokens": MAX_TOKENS, "temperature": 0}
            line = {"custom_id": f"row-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")


def pdbatch_write(df: pd.DataFrame, path: Path) -> None:
    from pdbatch.builders.requests import build_requests

    build_requests(df, PROMPT, model=MODEL, params={"max_tokens": MAX_TOKENS, "temperature": 0}).write_jsonl(path)


def baseline_reuse(df: pd.DataFrame) -> int:
    """A key per row from its body (a dict), as canonical JSON; repeats found with a dict."""
    first: dict[str, int] = {}
    for i, rec in enumerate(df.to_dict("records")):
        body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT.format(**rec)}],
                "max_tokens": MAX_TOKENS, "temperature": 0}
        key = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        first.setdefault(key, i)
    return len(first)


def pdbatch_reuse(df: pd.DataFrame) -> int:
    from pdbatch.backends import Mock
    from pdbatch.builders.requests import build_requests
    from pdbatch.jobs.reuse import plan_reuse

    plan = build_requests(df, PROMPT, model=MODEL, params={"max_tokens": MAX_TOKENS, "temperature": 0})
    reuse = plan_reuse(plan, Mock(), True)
    return len(plan.positions) - int((reuse.alias >= 0).sum())


def baseline_join(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            obj = json.loads(line)
            rec = {"custom_id": obj.get("custom_id"), "response": None, "finish_reason": None,
                   "prompt_tokens": None, "completion_tokens": None, "error": None}
            if obj.get("status") or not obj.get("response"):
                rec["error"] = obj.get("status") or "no response"
            else:
                choice = obj["response"]["choices"][0]
                usage = obj["response"].get("usage") or {}
                rec.update(response=choice["message"]["content"], finish_reason=choice.get("finish_reason"),
                           prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"))
            records.append(rec)
    res = pd.DataFrame(records)
    left = df.assign(custom_id=[f"row-{i}" for i in range(len(df))])
    return left.merge(res, on="custom_id", how="left").drop(columns="custom_id")


def pdbatch_join(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    from pdbatch.results.join import join_results
    from pdbatch.results.parse import parse_files

    return join_results(df, parse_files([path]), kind="chat")


def digest(out: pd.DataFrame) -> str:
    """A fingerprint of the joined answers, to check both ways agree."""
    h = hashlib.sha256()
    for col in ("response", "prompt_tokens", "error"):
        h.update(orjson.dumps([None if pd.isna(v) else (int(v) if col == "prompt_tokens" else str(v))
                               for v in out[col].tolist()]))
    return h.hexdigest()[:16]


# ----------------------------------------------------------- measurement


def _cpu() -> float:
    """CPU seconds of this process, all threads: steadier than wall time on a shared machine."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _rss() -> int:
    with open("/proc/self/status") as fh:
        return next(int(x.split()[1]) * 1024 for x in fh if x.startswith("VmRSS:"))


def _hwm() -> int:
    with open("/proc/self/status") as fh:
        return next(int(x.split()[1]) * 1024 for x in fh if x.startswith("VmHWM:"))


class PeakRSS:
    """Peak RSS during a block: the kernel's high-water mark after a reset, else a 2 ms sampler."""

    def __enter__(self) -> PeakRSS:
        self.base = _rss()
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current RSS
            self.exact = _hwm() <= self.base + (1 << 20)
        except OSError:
            self.exact = False
        self.peak, self._stop = self.base, threading.Event()
        if not self.exact:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        if self.exact:
            self.peak = _hwm()
        else:
            self._stop.set()
            self._thread.join()
        self.extra = max(0, self.peak - self.base)


def run_phase(name: str, folder: Path) -> dict:
    """Run one phase in this (fresh) process and return its time and memory."""
    df = pd.read_parquet(folder / "frame.parquet")
    os.environ["PDBATCH_HOME"] = str(folder / "home")  # an empty response cache, as on a first run
    import pdbatch.backends.mock
    import pdbatch.jobs.reuse  # noqa: F401 - imports are not what is measured

    result = None
    unique = None
    with PeakRSS() as mem:
        cpu0 = _cpu()
        t0 = time.perf_counter()
        if name == "baseline_write":
            baseline_write(df, folder / "requests-baseline.jsonl")
        elif name == "pdbatch_write":
            pdbatch_write(df, folder / "requests.jsonl")
        elif name == "baseline_join":
            result = baseline_join(df, folder / "output.jsonl")
        elif name == "pdbatch_join":
            result = pdbatch_join(df, folder / "output.jsonl")
        elif name == "baseline_reuse":
            unique = baseline_reuse(df)
        elif name == "pdbatch_reuse":
            unique = pdbatch_reuse(df)
        seconds = time.perf_counter() - t0
        cpu = _cpu() - cpu0
    return {"seconds": seconds, "cpu": cpu, "extra_mb": mem.extra / 2**20, "exact": mem.exact,
            "digest": digest(result) if result is not None else None,
            "unique": unique if name.endswith("reuse") else None}


def in_child(name: str, folder: Path) -> dict:
    cmd = [sys.executable, __file__, "--phase", name, "--dir", str(folder)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_requests(a: Path, b: Path, sample: int = 20_000) -> bool:
    """Both writers' files hold the same lines (every line when small, else a sample)."""
    la, lb = a.read_bytes().splitlines(), b.read_bytes().splitlines()
    if len(la) != len(lb):
        return False
    idx = np.random.default_rng(1).choice(len(la), min(sample, len(la)), replace=False)
    return all(orjson.loads(la[i]) == orjson.loads(lb[i]) for i in idx.tolist())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, Path(args.dir))))
        return

    with tempfile.TemporaryDirectory(prefix="pdbatch-bench-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        make_frame(args.rows).to_parquet(folder / "frame.parquet")
        print(f"{args.rows:,} rows of ~200 characters; inputs made in {time.perf_counter() - t0:.1f} s")

        res = {name: in_child(name, folder) for name in ("baseline_write", "pdbatch_write", "baseline_reuse",
                                                         "pdbatch_reuse")}
        size = (folder / "requests.jsonl").stat().st_size
        ok_write = same_requests(folder / "requests-baseline.jsonl", folder / "requests.jsonl")
        (folder / "requests-baseline.jsonl").unlink()

        t0 = time.perf_counter()
        make_output(folder / "requests.jsonl", folder / "output.jsonl")
        out_size = (folder / "output.jsonl").stat().st_size
        print(f"request file {size / 1e6:.0f} MB; shuffled Vertex-style output {out_size / 1e6:.0f} MB "
              f"(1 in {FAIL_EVERY} lines failed), made in {time.perf_counter() - t0:.1f} s")
        res |= {name: in_child(name, folder) for name in ("baseline_join", "pdbatch_join")}

    print()
    print(f"{'phase':<38}{'seconds':>9}{'cpu s':>8}{'peak extra MB':>15}")
    labels = {
        "baseline_write": "build+write  (a) dicts + json.dumps",
        "pdbatch_write": "build+write  (b) pdbatch",
        "baseline_join": "parse+join   (a) json.loads + merge",
        "pdbatch_join": "parse+join   (b) pdbatch",
        "baseline_reuse": "plan reuse   (a) body dict + sha256",
        "pdbatch_reuse": "plan reuse   (b) pdbatch",
    }
    for name, label in labels.items():
        r = res[name]
        print(f"{label:<38}{r['seconds']:>9.2f}{r['cpu']:>8.2f}{r['extra_mb']:>15.0f}")
    def ratio(a: str, b: str, key: str) -> float:
        return res[a][key] / max(res[b][key], 1e-9)

    w, j = ratio("baseline_write", "pdbatch_write", "seconds"), ratio("baseline_join", "pdbatch_join", "seconds")
    wc, jc = ratio("baseline_write", "pdbatch_write", "cpu"), ratio("baseline_join", "pdbatch_join", "cpu")
    same_join = res["baseline_join"]["digest"] == res["pdbatch_join"]["digest"]
    print()
    print(f"build+write speed-up: {w:.1f}x wall, {wc:.1f}x cpu (target >= 5x)   same lines: {ok_write}")
    print(f"parse+join  speed-up: {j:.1f}x wall, {jc:.1f}x cpu (target >= 4x)   same answers: {same_join}")
    r, rc = ratio("pdbatch_reuse", "pdbatch_write", "seconds"), ratio("pdbatch_reuse", "pdbatch_write", "cpu")
    same_reuse = res["baseline_reuse"]["unique"] == res["pdbatch_reuse"]["unique"]
    print(f"plan reuse / build+write: {r:.2f}x wall, {rc:.2f}x cpu (target <= 2x)   same repeats found: {same_reuse}")
    print(f"extra memory while writing: {res['pdbatch_write']['extra_mb']:.0f} MB (target < 300 MB)")
    print(f"memory measured with: {'VmHWM after clear_refs' if res['pdbatch_write']['exact'] else 'a 2 ms RSS sampler'}; "
          f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
