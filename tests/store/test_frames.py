"""The job's copy of the frame is Arrow data, kept exactly; a pickle is read only when asked."""

from __future__ import annotations

import datetime
import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import Mock
from pdbatch.cli.commands import main

# (looked up, so that on code without it these tests fail on what they test, not on an import)
PdbatchWarning = getattr(pdbatch.errors, "PdbatchWarning", UserWarning)


def frames_module():
    from pdbatch.store import frames  # not at the top: the module is what this file tests

    return frames


def awkward_frame() -> pd.DataFrame:
    """One column per kind of data a user's frame holds, a MultiIndex, and non-string labels."""
    n = 3
    index = pd.MultiIndex.from_arrays(
        [pd.Index(["a", "b", "c"], dtype=object), pd.date_range("2024-01-01", periods=n, tz="Europe/Paris")],
        names=["key", "when"])
    df = pd.DataFrame({
        "text": pd.array(["x", None, "z"], dtype="string"),
        "obj_text": pd.Series(["x", np.nan, None], dtype=object),
        "cat": pd.Categorical(["b", "a", "b"], categories=["b", "a", "c"], ordered=True),
        "nullable": pd.array([1, None, 3], dtype="Int64"),
        "flag": pd.array([True, None, False], dtype="boolean"),
        "tz": pd.date_range("2024-03-31", periods=n, freq="h", tz="Europe/Paris"),
        "delta": pd.to_timedelta([1, 2, 3], unit="s"),
        "period": pd.period_range("2024-01", periods=n, freq="M"),
        "f16": np.array([1.5, np.nan, -0.0], dtype=np.float16),
        "big": np.array([1, 2, 2**63], dtype=np.uint64),
        "arrow": pd.array([1, None, 3], dtype="int64[pyarrow]"),
        "messages": [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "yo", "name": "n"}],
                     None],
        "embedding": [np.ones(3, dtype=np.float32), np.zeros(3, dtype=np.float32), None],
        "ints": pd.Series([1, None, 2**62], dtype=object),
        "dates": [datetime.date(2024, 1, 1), None, datetime.date(2024, 1, 3)],
        "mixed": pd.Series([1, "a", 2.5], dtype=object),
        7: [1, 2, 3],
    }, index=index)
    df.attrs["source"] = "survey"
    return df


def assert_same_frame(a: pd.DataFrame, b: pd.DataFrame) -> None:
    frames = frames_module()
    pd.testing.assert_frame_equal(a, b, check_exact=True, check_column_type=True, check_index_type=True,
                                  check_categorical=True, check_freq=True)
    assert a.attrs == b.attrs
    for i in range(a.shape[1]):
        if a.dtypes.iloc[i].kind == "O":  # assert_frame_equal lets None == NaN and [1] == (1,) pass
            for x, y in zip(a.iloc[:, i], b.iloc[:, i], strict=True):
                assert (x is y) or frames._same(x, y), (a.columns[i], x, y)


def test_the_frame_comes_back_exactly_through_arrow(tmp_path):
    frames = frames_module()
    df = awkward_frame()
    path = tmp_path / "frame.arrow"
    frames.write(frames.to_table(df), path)
    assert path.read_bytes()[:6] == b"ARROW1"
    assert_same_frame(df, frames.read(path))
    # labels of any type, duplicated, or a MultiIndex; a RangeIndex with a step and a name
    for other in (pd.DataFrame([[1, 2]], columns=["a", "a"]),
                  pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2)], names=["L", None])),
                  pd.DataFrame({"a": [1, 2, 3]}, index=pd.RangeIndex(10, 16, 2, name="r")),
                  pd.DataFrame({"a": [1, 2, 3]}, index=pd.date_range("2024", periods=3, freq="D")),
                  pd.DataFrame(index=pd.RangeIndex(3)),
                  pd.DataFrame({"a": pd.Series([], dtype="Int64")})):
        frames.write(frames.to_table(other), path)
        assert_same_frame(other, frames.read(path))


def test_a_job_keeps_its_frame_as_arrow_and_joins_to_it_exactly():
    df = awkward_frame()
    mock = Mock()
    job = df.llama.submit("{text}", backend=mock, temperature=0, on_null="skip")
    folder = pdbatch.config.home() / "jobs" / job.id
    assert sorted(p.name for p in folder.glob("frame.*")) == ["frame.arrow"], "no pickle in a job folder"
    out = pdbatch.attach(job.id, backend=mock).result()
    mine = out[list(df.columns)]
    mine.attrs = df.attrs
    assert_same_frame(df, mine)
    assert out.response.fillna("-").tolist() == ["echo: x", "-", "echo: z"]


@pytest.mark.parametrize(("values", "row"), [
    ([(1, 2), (3,), None], "row 10: tuple (1, 2)"),
    (["a", {3}, None], "row 11: set {3}"),
    ([{"a": 1}, {1: "a"}, None], "row 11: dict {1: 'a'}"),
    ([None, None, object()], "row 12: object <object object"),
    ([1, 2, 2**70], "row 12: int 1180591620717411303424"),
])
def test_object_columns_that_cannot_be_kept_are_refused_at_submit(values, row):
    df = pd.DataFrame({"t": ["a", "b", "c"], "extra": pd.Series(values, dtype=object, index=[10, 11, 12])},
                      index=[10, 11, 12])
    mock = Mock()
    with pytest.raises(pdbatch.InputError) as info:
        df.llama.submit("{t}", backend=mock, temperature=0, cache=False)
    msg = str(info.value)
    assert msg.startswith("column 'extra' holds values that would not come back as they are") and row in msg
    assert "df['extra'] = df['extra'].astype(str)" in msg and "df.drop(columns=['extra'])" in msg
    assert mock.submitted == [], "refused before anything was sent"
    assert not list(pdbatch.config.home().glob("jobs/*")), "and before anything was written"


def test_other_things_a_format_cannot_hold_are_refused_with_their_name():
    mock = Mock()
    cases = [
        (pd.DataFrame({"t": ["a"], "z": np.array([1j])}), r"column 'z' \(dtype complex128\)"),
        (pd.DataFrame({"t": ["a"], "s": pd.arrays.SparseArray([0])}), r"column 's' \(dtype Sparse"),
        (pd.DataFrame([["a", "b"]], columns=pd.Index(["t", ("x", 1)], dtype=object)),
         r"column labels .*position 1: tuple \('x', 1\)"),
        (pd.DataFrame({"t": ["a", "b"]}, index=pd.Index([1, (2,)], dtype=object)),
         r"index level 0 .*position 1: tuple \(2,\)"),
    ]
    for df, name in cases:
        with pytest.raises(pdbatch.InputError, match=name):
            df.llama.submit("{t}", backend=mock, temperature=0, cache=False)
    assert mock.submitted == []


class Planted:
    """Unpickling this writes a marker file: what a crafted frame.pkl in a shared folder would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def old_style_job(tmp_path, frame_pickle: bytes):
    """A finished job whose folder holds its frame as a pickle, as pdbatch 0.1 saved it."""
    df = pd.DataFrame({"t": ["a", "b"]})
    job = df.llama.submit("{t}", backend=Mock(), temperature=0, cache=False)
    folder = pdbatch.config.home() / "jobs" / job.id
    for old in folder.glob("frame.*"):
        old.unlink()
    (folder / "frame.pkl").write_bytes(frame_pickle)
    return job.id


def test_a_crafted_pickle_never_runs_without_an_explicit_opt_in(tmp_path, capsys):
    marker = tmp_path / "marker"
    job_id = old_style_job(tmp_path, pickle.dumps(Planted(marker)))
    try:
        pdbatch.attach(job_id).result()
    except Exception as exc:  # what it raises is checked below, once we know nothing ran
        error = exc
    assert not marker.exists(), "attach(id).result() ran the pickle"
    assert type(error).__name__ == "JobFolderError"
    assert re.search(r"frame\.pkl is a pickle.*allow_pickle=True", str(error))
    code = main(["results", job_id])
    assert not marker.exists(), "pdbatch results ID ran the pickle"
    err = capsys.readouterr().err
    assert code == 2 and "--allow-pickle" in err and "Traceback" not in err


def test_an_old_pickled_frame_is_read_when_allowed_with_a_warning(tmp_path, capsys):
    job_id = old_style_job(tmp_path, pickle.dumps(pd.DataFrame({"t": ["a", "b"]})))
    with pytest.warns(PdbatchWarning, match="a pickle written by an older pdbatch"):
        out = pdbatch.attach(job_id, allow_pickle=True).result()
    assert out.response.tolist() == ["echo: a", "echo: b"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PdbatchWarning)
        assert main(["results", job_id, "--allow-pickle"]) == 0
    assert "echo: b" in capsys.readouterr().out
