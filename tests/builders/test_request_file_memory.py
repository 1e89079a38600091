"""A request file is streamed: submitting one allocates less than 3x its size (it was 6.7x, and 922 MB for 50 MB).

Measured with tracemalloc in a fresh subprocess: Python's allocations, which
hold a file's bodies (as dicts before, as JSON text now), counted exactly, so
the bound does not depend on the allocator or the machine. The RSS figures,
allocator included, are in benchmarks/request_file_memory.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_submitting_a_request_file_allocates_under_three_times_its_size(tmp_path, pdbatch_home):
    script = textwrap.dedent(f"""
        import sys, tracemalloc
        from pathlib import Path
        sys.path.insert(0, {str(ROOT / "benchmarks")!r})
        from request_file_memory import make_file
        import pdbatch
        from pdbatch.backends import Mock

        class Accepts(Mock):
            # takes the request files and runs nothing: what is measured is the caller's side
            def submit(self, files, **kw):
                return [f"mock-accepted-{{len(files)}}"]

        small, big = Path({str(tmp_path)!r}) / "small.jsonl", Path({str(tmp_path)!r}) / "big.jsonl"
        make_file(small, 0.01, seed=1)
        size = make_file(big, 8)
        pdbatch.run_requests(small, wait=False, progress=False, backend=Accepts())  # imports, first use
        tracemalloc.start()
        job = pdbatch.run_requests(big, wait=False, progress=False, backend=Accepts())
        peak = tracemalloc.get_traced_memory()[1]
        print(job.n_rows, size, peak)
    """)
    env = {**os.environ, "PDBATCH_HOME": str(pdbatch_home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows, size, peak = map(int, proc.stdout.split())
    assert rows > 20_000 and size > 8_000_000
    assert peak < 3 * size, f"{peak / size:.1f}x the file's size"
