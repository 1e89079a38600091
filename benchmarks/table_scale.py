"""A BigQuery table through Vertex AI and back, against the emulators: the client's memory and time.

For each row count, in a fresh subprocess (so that its peak memory is its own):
``pdbatch.table(...).llama.submit`` (schema call, aggregate query, dry run,
the request table's CREATE TABLE AS SELECT, job creation), ``wait`` (the
emulated Vertex AI reads the request table and writes the output table),
and ``result()`` (the result table's CREATE TABLE AS SELECT) with ``count()``.
The rows never pass through the client, so its peak RSS above the RSS after
imports should not grow with the row count; the time is the emulated
services'. The source table is generated inside BigQuery (``GENERATE_ARRAY``),
never loaded from the client.

The BigQuery emulator (local-bigquery) and the Vertex AI emulator each run in
their own process, started here; setup: ``bash tests/emulators/setup.sh``.

Usage::

    python benchmarks/table_scale.py                      # 20,000 and 200,000 rows
    python benchmarks/table_scale.py --rows 2000 20000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "openai/gpt-oss-120b-maas"
LOCATION = "us-central1"


def rss_mb() -> float:
    """This process's peak RSS so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(rows: int, bq_url: str, vertex_url: str, project: str) -> dict:
    """Run one table job of ``rows`` rows in this process; returns its measurements."""
    os.environ["BIGQUERY_EMULATOR_HOST"] = bq_url
    import pdbatch
    from pdbatch.backends.vertex import Vertex
    from pdbatch.table import bigquery_client

    client = bigquery_client(project)
    dataset = f"{project}.bench_{rows}"
    from google.cloud import bigquery

    ds = bigquery.Dataset(dataset)
    ds.location = LOCATION
    client.create_dataset(ds, exists_ok=True)
    client.query(f"CREATE TABLE `{dataset}.reviews` AS SELECT CONCAT('r', CAST(n AS STRING)) AS review_id, "
                 f"CONCAT('review number ', CAST(n AS STRING), ' says the product is fine') AS text, "
                 f"MOD(n, 5) + 1 AS stars FROM UNNEST(GENERATE_ARRAY(1, {rows})) AS n").result()
    vx = Vertex(project=project, location=LOCATION, api_endpoint=vertex_url, poll_seconds=0.5)
    base = rss_mb()
    t0 = time.perf_counter()
    job = pdbatch.table(f"bq://{dataset}.reviews", client=client).llama.submit(
        "Summarize: {text} ({stars} stars)", backend=vx, model=MODEL, custom_id="review_id", max_tokens=32)
    t1 = time.perf_counter()
    job.wait(progress=False)
    t2 = time.perf_counter()
    result = job.result()
    n = result.count()
    t3 = time.perf_counter()
    assert n == rows, (n, rows)
    return {"rows": rows, "jobs": len(job.ids), "submit_s": round(t1 - t0, 1), "wait_s": round(t2 - t1, 1),
            "result_s": round(t3 - t2, 1), "total_s": round(t3 - t0, 1),
            "rss_after_imports_mb": round(base, 1), "peak_rss_growth_mb": round(rss_mb() - base, 1),
            "failed": result.failed()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--bq", help=argparse.SUPPRESS)
    ap.add_argument("--vertex", help=argparse.SUPPRESS)
    ap.add_argument("--project", default="bench-project")
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.bq, a.vertex, a.project)), flush=True)
        return

    sys.path.insert(0, str(ROOT))
    from tests.emulators.bigquery import start_bigquery

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with start_bigquery(project=a.project, timeout=120) as bq:
        vertex = subprocess.Popen([sys.executable, "-m", "tests.emulators.vertex", "--bq", bq.url, "--project",
                                   a.project, "--step", "0.1"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert vertex.stdout is not None
            url = vertex.stdout.readline().strip().rsplit(" ", 1)[-1]
            for rows in a.rows:
                out = subprocess.run([sys.executable, __file__, "--one", str(rows), "--bq", bq.url, "--vertex", url,
                                      "--project", a.project], env=env, capture_output=True, text=True, check=False)
                if out.returncode:
                    sys.exit(f"{rows} rows failed:\n{out.stderr[-3000:]}")
                print(out.stdout.strip().splitlines()[-1], flush=True)
        finally:
            vertex.terminate()
            vertex.wait(10)


if __name__ == "__main__":
    main()
