"""Every notebook in notebooks/ runs top to bottom, headless, on the local engine.

A notebook that needs more than this machine (emulators, credentials) says so in
its metadata, ``"pdbatch": {"requires": [...]}``, and is left to the tests of
whoever owns what it requires: it is not collected here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
# Generous: a job takes seconds on an idle machine, much longer on a busy shared one.
CELL_TIMEOUT = 600


def local_notebooks() -> list[Path]:
    """The notebooks that need nothing but pdbatch and its local engine."""
    found = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        meta = nbformat.read(path, as_version=4).metadata
        if "requires" not in meta.get("pdbatch", {}):
            found.append(path)
    return found


def test_there_is_a_notebook_to_run():
    assert any(p.name == "quickstart.ipynb" for p in local_notebooks())


@pytest.mark.slow
@pytest.mark.parametrize("path", local_notebooks(), ids=lambda p: p.name)
def test_notebook_runs_without_errors(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    # Stored without outputs, so that diffs show code and not answers.
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"), (
        f"{path.name}: clear its outputs before committing"
    )
    env = {**os.environ, "PDBATCH_HOME": str(tmp_path / "pdbatch-home")}
    env.pop("PDBATCH_BACKEND", None)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    # nbclient passes kernel env through the kernel manager's start arguments.
    client.execute(env=env)  # raises CellExecutionError, with the cell and traceback, on any error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    if path.name == "quickstart.ipynb":
        # In a kernel the jobs show the status widget, and the failed-row example fails one row.
        assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
        text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
        assert "1 row failed" in text
