"""One frame's trip through batch_predict: each stage is visited once (the plan is built once, then read)."""

import sys
from pathlib import Path

import pandas as pd

import pdbatch  # noqa: F401  (registers df.llama)
from pdbatch.backends.mock import Mock
from pdbatch.jobs import reuse


def entries_into(module_file: str, run) -> list[str]:
    """The calls that enter ``module_file`` from another file while ``run()`` runs."""
    found = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == module_file and frame.f_back is not None \
                and frame.f_back.f_code.co_filename != module_file and not frame.f_code.co_name.startswith("<"):
            found.append(f"{Path(frame.f_back.f_code.co_filename).name} -> {frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return found


def test_a_frame_enters_the_reuse_code_twice_plan_and_fill():
    df = pd.DataFrame({"t": ["a", "b", "a", "c"]})  # a duplicate, and reproducible: reuse and cache both at work
    out = []
    seen = entries_into(reuse.__file__, lambda: out.append(
        df.llama.batch_predict("{t}", backend=Mock(), temperature=0, progress=False)))
    assert out[0]["response"].notna().all() and out[0].attrs["pdbatch_rows"]["merged"] == 1
    assert seen == ["prepare.py -> plan_part", "jobparts.py -> fill_cache"]
