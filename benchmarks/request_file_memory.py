"""Peak memory of submitting an OpenAI batch request file, against the file's size.

``pdbatch.run_requests(path, wait=False)`` on the local backend (the
default): read and check every line, plan the job, key the response cache,
write the request lines and the job's copy of the file, start the worker.
The job is cancelled as soon as it is submitted: its worker is another
process, and what is measured is the caller's memory.

Each size runs in a fresh subprocess, so that its peak is its own: the peak
RSS above the RSS just before the call (``clear_refs`` where Linux allows it,
else a 2 ms sampler: see ``client_scale.PeakRSS``), which counts Arrow's
allocations that tracemalloc would miss. The lines are chat requests of
about 200 bytes, with varied text, as a real file holds. The target: a peak
under 3x the file's size.

Usage::

    python benchmarks/request_file_memory.py              # 10 and 50 MB
    python benchmarks/request_file_memory.py --mb 5 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from client_scale import WORDS, PeakRSS  # the benchmarks folder is not a package


def make_file(path: Path, mb: float, seed: int = 0) -> int:
    """A request file of about ``mb`` megabytes of chat lines; returns its size in bytes."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS, dtype=object)
    target = int(mb * 1e6)
    size = i = 0
    with open(path, "wb") as fh:
        while size < target:
            chunk = []
            for _ in range(min(10_000, max(1, target // 300))):
                text = " ".join(rng.choice(words, 20).tolist())
                chunk.append(orjson.dumps({"custom_id": f"request-{i}", "method": "POST", "url": "/v1/chat/completions",
                                           "body": {"model": "smollm2", "temperature": 0, "max_tokens": 16,
                                                    "messages": [{"role": "user", "content": text}]}}) + b"\n")
                i += 1
            data = b"".join(chunk)
            fh.write(data)
            size += len(data)
    return size


def measure(path: Path) -> dict:
    """Submit the file in this (fresh) process; its time and the memory above the RSS before."""
    import pdbatch

    # a small file first: the imports and first-use set-up are not what is measured
    small = path.with_name("warm-up.jsonl")
    make_file(small, 0.01, seed=1)  # other lines: the cancelled warm-up job holds no claim on them
    pdbatch.run_requests(small, wait=False, progress=False).cancel()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        job = pdbatch.run_requests(path, wait=False, progress=False)
        seconds = time.perf_counter() - t0
    job.cancel()
    return {"seconds": seconds, "extra_bytes": mem.extra, "exact": mem.exact, "rows": job.n_rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, nargs="+", default=[10, 50], help="file sizes to measure, in MB")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child: measure this file
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    print(f"{'file':>10} {'lines':>9} {'peak above start':>17} {'x file':>7} {'seconds':>8}")
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:  # a cancelled worker may still write
        for mb in args.mb:
            path = Path(tmp) / f"requests-{mb:g}mb.jsonl"
            size = make_file(path, mb)
            env = {**os.environ, "PDBATCH_HOME": str(Path(tmp) / f"home-{mb:g}")}
            done = subprocess.run([sys.executable, __file__, "--measure", str(path)], env=env, check=True,
                                  capture_output=True, text=True)
            res = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{size / 1e6:>8.1f}MB {res['rows']:>9,} {res['extra_bytes'] / 1e6:>15.0f}MB "
                  f"{res['extra_bytes'] / size:>7.2f} {res['seconds']:>8.1f}"
                  + ("" if res["exact"] else "  (sampled)"))
            path.unlink()


if __name__ == "__main__":
    main()
