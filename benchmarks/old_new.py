"""pdbatch's client side at scale, an older tree against a newer one, alternated in one run.

Each phase runs in a fresh subprocess whose ``PYTHONPATH`` is the tree under
test (its ``pdbatch`` is imported; this script and its inputs are shared), the
trees taking turns round after round, so that a machine busy with other work
slows both alike. Phases, on the frame of ``client_scale.py`` with a quarter
of its rows repeated:

* ``write``: build + write the request JSONL (``build_requests(...).write_jsonl``);
* ``plan_reuse``: which rows repeat another or are in the cache (``plan_reuse``, ``cache=True``);
* ``submit``: ``df.llama.submit`` on the Mock backend, a fifth of the rows
  answered by the cache: planning, claims, the frame and the reuse state
  written, the job sealed;
* ``result``: its ``result()``: the output and the cached lines parsed,
  repeats fanned out, the cache filled.

Usage::

    git worktree add --detach /tmp/old <commit>
    python benchmarks/old_new.py --old /tmp/old --new . --rows 200000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from client_scale import MAX_TOKENS, MODEL, PROMPT, make_frame

PHASES = ("write", "plan_reuse", "submit", "result")
PARAMS = {"max_tokens": MAX_TOKENS, "temperature": 0}


def frame(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "frame.parquet")


def run_phase(name: str, folder: Path) -> dict:
    """Run one phase in this (fresh) process; returns its seconds (and what it made, to check both trees agree)."""
    os.environ["PDBATCH_HOME"] = str(folder / f"home-{os.getpid()}")
    import pdbatch  # noqa: F401 - registers df.llama; imports are not what is measured
    from pdbatch.backends import Mock
    from pdbatch.builders.requests import build_requests
    from pdbatch.jobs.reuse import plan_reuse

    df = frame(folder)
    out: dict = {}
    if name in ("write", "plan_reuse"):
        t0, c0 = time.perf_counter(), time.process_time()
        plan = build_requests(df, PROMPT, model=MODEL, params=PARAMS)
        if name == "write":
            plan.write_jsonl(folder / f"requests-{os.getpid()}.jsonl")
            out["check"] = (folder / f"requests-{os.getpid()}.jsonl").stat().st_size
        else:
            out["check"] = int((plan_reuse(plan, Mock(), True).alias >= 0).sum())
        out["seconds"], out["cpu"] = time.perf_counter() - t0, time.process_time() - c0
        return out
    mock = Mock()
    first = df.iloc[: len(df) // 5]  # answered before: the submit below takes them from the cache
    first.llama.batch_predict("{review}", backend=mock, model=MODEL, progress=False, **PARAMS)
    t0, c0 = time.perf_counter(), time.process_time()
    job = df.llama.submit("{review}", backend=mock, model=MODEL, **PARAMS)
    submit = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    res = job.result()
    result = time.perf_counter() - t0, time.process_time() - c0
    job_folder = Path(os.environ["PDBATCH_HOME"]) / "jobs" / job.id
    names = ("reuse.bin", "alias.npy", "keys.json", "keys.seal", "cached.jsonl")
    out["state_bytes"] = sum((job_folder / n).stat().st_size for n in names if (job_folder / n).exists())
    out["check"] = [dict(res.attrs["pdbatch_rows"]), int(res.response.notna().sum())]
    out["seconds"], out["cpu"] = submit if name == "submit" else result
    return out


def in_child(tree: Path, name: str, folder: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, __file__, "--phase", name, "--dir", str(folder)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=folder)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", type=Path, help="the older tree (its root: the folder holding pdbatch/)")
    ap.add_argument("--new", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, Path(args.dir))))
        return
    if args.old is None:
        ap.error("--old is required")
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    phases = args.phases.split(",")
    with tempfile.TemporaryDirectory(prefix="pdbatch-oldnew-") as tmp:
        folder = Path(tmp)
        df = make_frame(args.rows * 3 // 4)
        pd.concat([df, df.iloc[: args.rows - len(df)]], ignore_index=True).to_parquet(folder / "frame.parquet")
        print(f"{args.rows:,} rows (a quarter repeat another); old {trees['old']}, new {trees['new']}")
        res: dict[tuple[str, str], list[dict]] = {}
        for r in range(args.rounds):
            for phase in phases:
                for which in (("old", "new") if r % 2 == 0 else ("new", "old")):  # alternated, the order too
                    res.setdefault((phase, which), []).append(in_child(trees[which], phase, folder))
    print()
    print(f"{'phase':<18}{'old (median)':>14}{'new (median)':>14}{'new/old':>9}  runs old | new")
    for phase in phases:
        same = res[(phase, "old")][0]["check"] == res[(phase, "new")][0]["check"]
        for what in ("seconds", "cpu"):
            old = [x[what] for x in res[(phase, "old")]]
            new = [x[what] for x in res[(phase, "new")]]
            print(f"{phase + ' ' + ('wall s' if what == 'seconds' else 'cpu s'):<18}{statistics.median(old):>14.2f}"
                  f"{statistics.median(new):>14.2f}{statistics.median(new) / statistics.median(old):>9.2f}  "
                  f"{' '.join(f'{x:.2f}' for x in old)} | {' '.join(f'{x:.2f}' for x in new)}"
                  f"{'' if same else '   (results differ!)'}")
        if "state_bytes" in res[(phase, "old")][0]:
            print(f"{'':<12}reuse state on disk: old {res[(phase, 'old')][0]['state_bytes']:,} bytes, "
                  f"new {res[(phase, 'new')][0]['state_bytes']:,} bytes")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
