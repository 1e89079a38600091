"""A job's files that do not fit (full disk, ulimit -f): one clear error, exit 74, nothing half-written.

The limit is real: RLIMIT_FSIZE, set in a subprocess (with SIGXFSZ ignored,
so that a write past it fails with EFBIG, as POSIX setrlimit(2) describes,
instead of killing the process). It needs no root and no extra filesystem.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

resource = pytest.importorskip("resource")

ROOT = Path(__file__).resolve().parents[2]
#: Well below the files of the job below (about 1.2 MB of request lines that do not compress).
LIMIT = 200_000


def run_limited(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, {LIMIT}))
    """) + textwrap.dedent(code)
    env = {**os.environ, "PDBATCH_HOME": str(home), "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)


def left_behind(home: Path) -> list[str]:
    """Every file under the home but the response cache's: what a failed submit wrote."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*")
                  if p.is_file() and not p.name.startswith("cache.sqlite3") and "models" not in p.parts)


def test_a_request_file_past_a_file_size_limit_exits_74_naming_the_folder_the_bytes_and_pdbatch_home(
        tmp_path, pdbatch_home):
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"custom_id": f"r{i}", "body": {"messages": [
        {"role": "user", "content": os.urandom(300).hex()}]}}) + b"\n" for i in range(2000)))
    proc = run_limited(f"""
        from pdbatch.cli.commands import main
        sys.exit(main(["submit", {str(path)!r}, "--backend", "mock"]))
    """, pdbatch_home)
    assert proc.returncode == 74, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"under {pdbatch_home}: a file would pass the file-size limit (ulimit -f)" in lines[0]
    assert "bytes" in lines[0] and "PDBATCH_HOME" in lines[0] and "Nothing was submitted" in lines[0]
    assert "internal error" not in lines[0]
    assert left_behind(pdbatch_home) == []


def test_a_frame_past_the_limit_raises_storage_error_an_oserror_and_leaves_no_job(pdbatch_home):
    proc = run_limited("""
        import os
        import pandas as pd
        from pdbatch.backends import Mock
        from pdbatch.errors import StorageError
        df = pd.DataFrame({"t": [os.urandom(300).hex() for _ in range(2000)]})
        try:
            df.llama.submit("{t}", backend=Mock(), cache=False)
        except StorageError as exc:
            assert isinstance(exc, OSError) and exc.needed > 1_200_000, exc
            print(exc.errno, exc.needed)
        else:
            sys.exit("no StorageError")
    """, pdbatch_home)
    assert proc.returncode == 0, proc.stderr
    err, needed = map(int, proc.stdout.split())
    assert err == 27 and needed > 1_200_000  # EFBIG, and at least the prompts' bytes
    assert left_behind(pdbatch_home) == []
