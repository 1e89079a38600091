"""The plain functions behind df.llama: retry_failed and side by side models (compare)."""

from typing import ClassVar

import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import Mock
from pdbatch.errors import ConfigError
from tests.jobs.test_reuse import sent_contents


@pytest.fixture
def df():
    return pd.DataFrame({"t": ["a", "b", "a", "c", "b"]})


def test_retry_failed_resends_only_failed_rows_and_keeps_the_others():
    df = pd.DataFrame({"t": ["a", "b", "c", "d"]}, index=[10, 11, 12, 13])
    flaky = Mock(fail=lambda cid, body: "overloaded" if body["messages"][-1]["content"] in ("b", "d") else None)
    out = df.llama.batch_predict("{t}", backend=flaky, temperature=0, progress=False)
    assert out.error.notna().tolist() == [False, True, False, True]
    fixed = Mock()
    merged = out.llama.retry_failed(backend=fixed, progress=False)
    assert sent_contents(fixed) == ["b", "d"]
    assert merged.response.tolist() == ["echo: a", "echo: b", "echo: c", "echo: d"]
    assert merged.error.isna().all() and list(merged.index) == [10, 11, 12, 13]
    assert merged.llama.retry_failed(backend=fixed, progress=False) is merged  # nothing left to retry
    job = df.llama.submit("{t}", backend=Mock(fail=lambda c, b: "x" if c == "row-0" else None), temperature=0.5)
    again = job.result().llama.retry_failed(backend=Mock(), progress=False)
    assert again.error.isna().all()
    with pytest.raises(ConfigError, match="needs the job"):
        pd.DataFrame({"t": ["a"], "error": ["x"]}).llama.retry_failed()


def test_side_by_side_models_one_column_each():
    df = pd.DataFrame({"t": ["x", "y"]})
    a, b = Mock(), Mock(fail=lambda c, body: "nope" if c == "row-1" else None)
    out = df.llama.batch_predict("{t}", model=[(a, "m1"), (b, "m2")], progress=False)
    assert out["response:mock:m1"].tolist() == ["echo: x", "echo: y"]
    assert out["response:mock:m2"].tolist()[0] == "echo: x" and out["error:mock:m2"].tolist()[1] == "nope"
    assert list(out.columns[:1]) == ["t"]
    out2 = df.llama.batch_predict("{t}", model=["m1", "m2"], backend=Mock(), progress=False)
    assert {"response:m1", "response:m2"} <= set(out2.columns)
    with pytest.raises(ConfigError, match="same model twice"):
        df.llama.batch_predict("{t}", model=["m1", "m1"], backend=Mock(), progress=False)


def test_side_by_side_labels_gguf_files_by_their_stem():
    from pdbatch.jobs.sidebyside import _labels

    assert _labels([("local", "/m/a/SmolLM2.Q4_1.gguf", False), ("local", "smollm2-135m-instruct", False)]) == [
        "SmolLM2.Q4_1", "smollm2-135m-instruct"]
    assert _labels([("local", "/m/x.gguf", True), ("vertex", "meta/llama", True)]) == ["local:x", "vertex:meta/llama"]
    # two files with one stem keep their paths, so that the columns stay apart
    assert _labels([("local", "/a/m.gguf", False), ("local", "/b/m.gguf", False)]) == ["/a/m.gguf", "/b/m.gguf"]


def test_side_by_side_keeps_answers_when_one_model_cannot_be_submitted(df):
    class Refusing(Mock):
        def submit(self, files, **kw):
            raise pdbatch.errors.BackendError("404 NOT_FOUND: Publisher Model retired-model was not found")

    with pytest.warns(UserWarning, match="'mock:retired' failed as a whole"):
        out = df.llama.batch_predict("{t}", model=[(Mock(), "good"), (Refusing(), "retired")], temperature=0,
                                     progress=False)
    assert out["response:mock:good"].tolist()[0] == "echo: a" and out["error:mock:good"].isna().all()
    assert out["response:mock:retired"].isna().all()
    assert out["error:mock:retired"].str.startswith("not submitted: 404 NOT_FOUND").all()


def test_retry_failed_keeps_every_option_of_the_original_job():
    # cache was the only option a retry kept; the others (max_cost, prices, display_name,
    # overwrite, ...) must reach the retried job too.
    df = pd.DataFrame({"t": ["a", "b"], "response": ["old", "old"]})
    flaky = Mock(fail=lambda cid, body: "overloaded" if body["messages"][-1]["content"] == "b" else None)
    prices = {"mock-chat": (1.0, 2.0)}
    job = df.llama.submit("{t}", backend=flaky, temperature=0, overwrite=True, max_cost=5.0, prices=prices,
                          display_name="nightly run", cache=False)
    assert job.options == pdbatch.call.Options(cache=False, overwrite=True, max_cost=5.0, prices=prices,
                                               display_name="nightly run")
    assert job.call.prompt == "{t}" and job.call.params == {"temperature": 0}
    merged = job.result().llama.retry_failed(backend=Mock(), progress=False)
    retried = pdbatch.attach(merged.attrs["pdbatch_job"])
    assert retried.id != job.id and retried.options == job.options
    assert merged.response.tolist() == ["echo: a", "echo: b"]


def test_an_unknown_cache_mode_is_refused_before_anything_is_sent(df, tmp_path):
    mock = Mock()
    with pytest.raises(ConfigError, match="cache='sometimes': use True"):
        df.llama.batch_predict("{t}", backend=mock, cache="sometimes", progress=False)
    lines = tmp_path / "requests.jsonl"
    lines.write_text('{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", '
                     '"body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}\n')
    with pytest.raises(ConfigError, match="cache='sometimes': use True"):
        pdbatch.run_requests(lines, backend=mock, model="m", cache="sometimes", progress=False)
    assert mock.submitted == []


def test_side_by_side_columns_named_by_a_dict():
    df = pd.DataFrame({"t": ["x", "y"]})
    out = df.llama.batch_predict("{t}", model={"greedy": (Mock(), "m1"), "other": "m2"}, backend=Mock(),
                                 temperature=0, progress=False)
    assert out["response:greedy"].tolist() == ["echo: x", "echo: y"]
    assert {"response:other", "error:greedy", "error:other", "finish_reason:other"} <= set(out.columns)
    assert not any(c.startswith("response:mock") for c in out.columns)


@pytest.mark.parametrize("model, words", [
    ({"a": 3}, "is not a model name"),
    ({1: "m"}, "must be non-empty strings"),
    ({"": "m"}, "must be non-empty strings"),
    ({}, "name at least one model"),
    ([], "name at least one model"),
    (3, "is not a model name"),
    ({"m1", "m2"}, "is not a model name"),
    (["m1", ["mock", "m2"]], "is not a model name"),
    ({"a": ("nosuch", "m")}, "'nosuch' is not a backend"),
])
def test_model_that_is_not_a_name_pair_or_dict_of_those_is_refused(df, model, words):
    mock = Mock()
    with pytest.raises(ConfigError, match=words):
        df.llama.batch_predict("{t}", model=model, backend=mock, progress=False)
    assert mock.submitted == []


@pytest.mark.parametrize("method", ["submit", "preview", "embed"])
def test_one_model_calls_refuse_a_dict_or_list(df, method):
    with pytest.raises(ConfigError, match="give one model name here"):
        getattr(df.llama, method)("{t}", model={"a": "m"}, backend=Mock())


class OneAtATime(Mock):
    """A Mock whose jobs take this machine's cores (as local ones do): each runs until its status is asked once."""

    exclusive_machine = True
    poll_seconds = 0.01
    log: ClassVar[list] = []

    def submit(self, files, **kw):
        running = [j for j, job in self._jobs.items() if job.get("exclusive") and job["state"] != "JOB_STATE_SUCCEEDED"]
        [job_id] = super().submit(files, **kw)
        self.log.append((job_id, running))
        self._jobs[job_id].update(exclusive=True, state="JOB_STATE_RUNNING")
        return [job_id]

    def status(self, job_id):
        st = super().status(job_id)
        self._jobs[job_id]["state"] = "JOB_STATE_SUCCEEDED"  # ends once it was seen running
        return st


def test_side_by_side_jobs_that_take_the_machine_run_one_after_another(df, capsys):
    OneAtATime.log = []
    out = df.llama.batch_predict("{t}", model=[(OneAtATime(), "m1"), (OneAtATime(), "m2"), (Mock(), "m3"),
                                               (OneAtATime(), "m4")], temperature=0, progress=True)
    assert [running for _, running in OneAtATime.log] == [[], [], []], "a queued job started before the last ended"
    assert len(OneAtATime.log) == 3
    for m in ("m1", "m2", "m3", "m4"):
        assert out[f"response:mock:{m}"].tolist()[:2] == ["echo: a", "echo: b"]
    err = capsys.readouterr().err
    assert "'mock:m2' is queued behind 'mock:m1'" in err and "'mock:m4' is queued behind 'mock:m2'" in err, err
    assert "'mock:m3' is queued" not in err, err


def test_interrupted_side_by_side_starts_no_queued_job_and_says_so(df, capsys):
    class Interrupted(OneAtATime):
        def status(self, job_id):
            raise KeyboardInterrupt  # Ctrl-C while the first job runs

    OneAtATime.log = []
    with pytest.raises(KeyboardInterrupt):
        df.llama.batch_predict("{t}", model=[(Interrupted(), "m1"), (OneAtATime(), "m2")], temperature=0,
                               progress=False)
    assert len(OneAtATime.log) == 1, "a job queued behind the interrupted one was started"
    err = capsys.readouterr().err
    assert "'mock:m2' never started" in err and "goes on running" in err, err


def test_local_jobs_take_the_machine():
    from pdbatch.backends.local import Local
    from pdbatch.backends.vertex import Vertex

    assert Local.exclusive_machine and not Vertex.exclusive_machine and not Mock.exclusive_machine


@pytest.mark.slow
def test_two_settings_of_a_local_model_side_by_side_are_named_and_run_one_after_another(pdbatch_home, capsys):
    from pdbatch.backends.local import Local
    from pdbatch.store.jobdir import read_status

    df = pd.DataFrame({"review": ["Great blender.", "Broke after a week."]})
    model = "smollm2-135m-instruct"
    out = df.llama.batch_predict("One word: {review}", model={"short": (Local(dtype="file", n_ctx=512), model),
                                                              "long": (Local(dtype="file", n_ctx=1024), model)},
                                 max_tokens=4, temperature=0, progress=True)
    assert out["response:short"].notna().all() and out["response:long"].notna().all(), out.filter(like="error")
    first, second = sorted((read_status(p.parent) for p in (pdbatch_home / "jobs").glob("*/status.json")),
                           key=lambda st: st["created"])
    assert second["created"] >= first["updated"], "the second local job started before the first ended"
    assert "'long' is queued behind 'short'" in capsys.readouterr().err
def test_retry_failed_skips_rows_sure_to_fail_again_and_retries_the_transient_ones():
    too_long = "The input token count (5000) exceeds the maximum number of tokens allowed (4096)."
    errors = {"b": "503: overloaded", "c": too_long, "d": "invalid request: 'messages' must be a non-empty list"}
    df = pd.DataFrame({"t": ["a", "b", "c", "d"]}, index=[10, 11, 12, 13])
    flaky = Mock(fail=lambda cid, body: errors.get(body["messages"][-1]["content"]))
    out = df.llama.batch_predict("{t}", backend=flaky, temperature=0, progress=False)
    assert out.error.notna().tolist() == [False, True, True, True]
    with pytest.warns(UserWarning) as caught:
        merged = out.llama.retry_failed(progress=False)  # the job's backend, rebuilt: it answers everything
    said = " ".join(str(w.message) for w in caught)
    assert "1 row(s) (index 12) were not sent again: the prompt does not fit the context window" in said
    assert "larger context window" in said and "1 row(s) (index 13)" in said and "the request is invalid" in said
    assert pd.isna(merged.error.iloc[1]) and merged.error.iloc[2:].tolist() == [too_long, errors["d"]]
    assert merged.response.iloc[1] == "echo: b", "the transient failure was sent again"
    fixed = Mock()
    merged.llama.retry_failed(backend=fixed, progress=False)  # another backend: they may fit there
    assert sent_contents(fixed) == ["c", "d"]
