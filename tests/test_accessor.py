"""The accessor's flows and every bad input of the foundation issue, on the in-memory Mock backend."""

import numpy as np
import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import Mock
from pdbatch.errors import ConfigError, InputError, JobError, JobNotFoundError


@pytest.fixture
def df():
    return pd.DataFrame({"review": ["good", "bad", "fine"], "stars": [5, 1, 3]}, index=["a", "b", "c"])


def test_batch_predict_joins_by_custom_id_and_keeps_frame(df):
    out = df.llama.batch_predict("{review} ({stars} stars)", backend=Mock(), progress=False)
    assert out is not df and list(df.columns) == ["review", "stars"]  # input untouched
    assert list(out.index) == ["a", "b", "c"]
    assert list(out.columns) == ["review", "stars", "response", "finish_reason", "prompt_tokens",
                                 "completion_tokens", "error"]
    assert list(out.response) == ["echo: good (5 stars)", "echo: bad (1 stars)", "echo: fine (3 stars)"]
    assert out.error.isna().all()


def test_failed_row_is_data_not_exception(df):
    mock = Mock(fail=lambda cid, body: "Bad Request: too long" if cid == "row-1" else None)
    out = df.llama.batch_predict("{review}", backend=mock, progress=False)
    assert out.error.tolist()[1] == "Bad Request: too long" and pd.isna(out.response.iloc[1])
    assert out.response.iloc[0] == "echo: good"


def test_failed_job_is_an_exception_with_partial_rows(df):
    mock = Mock(final_state="JOB_STATE_FAILED", answered=2)
    with pytest.raises(JobError, match="JOB_STATE_FAILED") as info:
        df.llama.batch_predict("{review}", backend=mock, progress=False)
    assert info.value.state == "JOB_STATE_FAILED"
    job = df.llama.submit("{review}", backend=mock)
    part = job.result(partial=True)
    assert part.response.notna().sum() == 2
    assert part.error.iloc[2].startswith("not run: the job is JOB_STATE_FAILED")


@pytest.mark.parametrize("state", ["JOB_STATE_EXPIRED", "JOB_STATE_CANCELLED"])
def test_other_terminal_states_end_the_wait(df, state):
    job = df.llama.submit("{review}", backend=Mock(final_state=state))
    assert job.wait(timeout=5, progress=False).done
    with pytest.raises(JobError, match=state):
        job.result()


def test_partially_succeeded_is_terminal_and_returns_rows(df):
    out = df.llama.batch_predict("{review}", backend=Mock(final_state="JOB_STATE_PARTIALLY_SUCCEEDED", answered=2),
                                 progress=False)
    assert out.error.notna().tolist() == [False, False, True]


def test_custom_id_column_and_duplicate_index():
    df = pd.DataFrame({"id": ["x9", "x2", "x5"], "t": ["a", "b", "c"]}, index=[0, 0, 0])
    out = df.llama.batch_predict("{t}", backend=Mock(), custom_id="id", progress=False)
    assert list(out.response) == ["echo: a", "echo: b", "echo: c"] and list(out.index) == [0, 0, 0]


def test_on_null_skip_keeps_rows_with_error_and_does_not_send_them():
    df = pd.DataFrame({"t": ["a", None, "c"]})
    mock = Mock()
    out = df.llama.batch_predict("{t}", backend=mock, on_null="skip", progress=False)
    assert len(mock.submitted[0]) == 2
    assert out.error.iloc[1] == "skipped: null in column(s) 't'" and out.response.iloc[2] == "echo: c"
    with pytest.raises(InputError, match="row-1"):
        df.llama.batch_predict("{t}", backend=mock, progress=False)


def test_empty_frame_returns_empty_result_without_a_job(pdbatch_home):
    df = pd.DataFrame({"t": pd.Series([], dtype=str)})
    mock = Mock()
    out = df.llama.batch_predict("{t}", backend=mock, progress=False)
    assert len(out) == 0 and "response" in out.columns and "error" in out.columns
    assert mock.submitted == []
    emb = df.llama.embed("{t}", backend=mock, progress=False)
    assert list(emb.columns) == ["t", "embedding", "error"]
    with pytest.raises(ConfigError, match="nothing to submit"):
        df.llama.submit("{t}", backend=mock)


def test_all_rows_skipped_returns_errors_without_a_job():
    df = pd.DataFrame({"t": [None, None]})
    mock = Mock()
    out = df.llama.batch_predict("{t}", backend=mock, on_null="skip", progress=False)
    assert mock.submitted == [] and out.error.str.startswith("skipped").all()


def test_existing_output_columns_refused_before_paying(df):
    df2 = df.assign(response="old")
    mock = Mock()
    with pytest.raises(ConfigError, match=r"\['response'\].*overwrite=True"):
        df2.llama.batch_predict("{review}", backend=mock, progress=False)
    assert mock.submitted == []
    out = df2.llama.batch_predict("{review}", backend=mock, overwrite=True, progress=False)
    assert out.response.iloc[0] == "echo: good"
    assert list(out.columns).count("response") == 1


def test_embed_returns_float_arrays(df):
    out = df.llama.embed("{review}", backend=Mock(), progress=False)
    assert out.embedding.map(lambda v: isinstance(v, np.ndarray) and v.shape == (8,)).all()


def test_unknown_backend_and_model_names():
    df = pd.DataFrame({"t": ["a"]})
    with pytest.raises(ConfigError, match=r"unknown backend 'lokal'.*'local'"):
        df.llama.to_requests("{t}", backend="lokal")
    with pytest.raises(ConfigError, match="Did you mean 'smollm2'"):
        df.llama.to_requests("{t}", model="smollm")
    with pytest.raises(ConfigError, match="is a chat model"):
        df.llama.to_requests("{t}", model="smollm2-135m-instruct", url="/v1/embeddings")


def test_session_default_backend(monkeypatch):
    df = pd.DataFrame({"t": ["a"]})
    monkeypatch.setenv("PDBATCH_BACKEND", "mock")
    assert df.llama.to_requests("{t}").body.iloc[0]["model"] == "mock-chat"
    pdbatch.configure(backend="nope")
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        df.llama.to_requests("{t}")
    pdbatch.configure(backend=Mock())
    assert df.llama.batch_predict("{t}", progress=False).response.iloc[0] == "echo: a"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "local-../../x", "/abs/path", "..", "a" * 600, "", "x\ny"])
def test_attach_refuses_ids_that_escape_or_do_not_exist(bad, pdbatch_home):
    with pytest.raises(JobNotFoundError):
        pdbatch.attach(bad)
    assert not (pdbatch_home.parent / "etc").exists()


def test_attach_unknown_job():
    with pytest.raises(JobNotFoundError, match="no pdbatch job"):
        pdbatch.attach("local-20990101-000000-abcdef")


def test_attach_in_process_and_job_repr(df):
    job = df.llama.submit("{review}", backend=Mock())
    again = pdbatch.attach(job.id, backend=Mock())
    assert again.result().response.tolist() == job.result().response.tolist()
    assert job.id in repr(job) and "succeeded" in job._repr_html_()
    with pytest.raises(ConfigError, match="ran on the 'mock' backend"):
        pdbatch.attach(job.id, backend="local")


def test_progress_bar_only_when_asked(df, capsys):
    df.llama.batch_predict("{review}", backend=Mock(), progress=False)
    assert capsys.readouterr().err == ""
    df.llama.batch_predict("{review}", backend=Mock(), progress=True)
    assert "3/3" in capsys.readouterr().err
