"""Run by test_leftover_workers.py in a pytest of its own: a test that fails while its local job runs.

Not named ``test_*.py``: the suite never collects it; it runs only when named on the command line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(scope="session")
def converted_models():
    # the outer run's converted weights: no second 271 MB conversion
    return Path(os.environ["PDBATCH_TEST_MODELS"])


def test_fails_while_its_worker_runs(pdbatch_home):
    df = pd.DataFrame({"t": [f"Tell a long story about the number {i}." for i in range(500)]})
    df.llama.submit("{t}", max_tokens=512, progress=False)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # running: the model is loaded, the rows are long to come
        status = [json.loads(p.read_bytes()) for p in (pdbatch_home / "jobs").glob("*/status.json")]
        if status and status[0].get("state") == "JOB_STATE_RUNNING":
            break
        assert not status or status[0].get("state") in ("JOB_STATE_QUEUED", "JOB_STATE_PENDING"), status
        time.sleep(0.2)
    Path(os.environ["PDBATCH_TEST_PID_FILE"]).write_text(str(status[0]["pid"]))
    raise AssertionError("this test fails with its job still running")
