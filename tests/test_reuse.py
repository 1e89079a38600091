"""Never pay twice, retry only failures, look before you spend, side by side."""

import numpy as np
import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import Mock
from pdbatch.errors import ConfigError


def sent_contents(mock, i=-1):
    import orjson

    return [orjson.loads(x)["body"]["messages"][-1]["content"] for x in mock.submitted[i]]


@pytest.fixture
def df():
    return pd.DataFrame({"t": ["a", "b", "a", "c", "b"]})


def test_identical_rows_are_sent_once_and_fanned_out(df):
    mock = Mock()
    out = df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert sorted(sent_contents(mock)) == ["a", "b", "c"]
    assert out.response.tolist() == ["echo: a", "echo: b", "echo: a", "echo: c", "echo: b"]
    assert out.error.isna().all()


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


def test_preview_counts_without_submitting(df):
    mock = Mock()
    pv = df.llama.preview("Say {t}", backend=mock, temperature=0, max_tokens=10)
    assert mock.submitted == []
    s = pv.summary()
    assert (s["rows"], s["requests"], s["duplicates"], s["cache_hits"]) == (5, 3, 2, 0)
    assert len(pv.requests) == 3 and pv.requests.body.iloc[0]["messages"][0]["content"] == "Say a"
    assert pv.token_counts.startswith("estimate") and pv.prompt_tokens.notna().all()
    assert pv.estimated_cost is None and "unknown" in repr(pv) and "<table" in pv._repr_html_()
    df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert df.llama.preview("{t}", backend=mock, temperature=0).summary()["cache_hits"] == 3


def test_preview_cost_and_limits(df):
    mock = Mock()
    prices = {"mock-chat": (1.0, 2.0)}
    pv = df.llama.preview("{t}", backend=mock, max_tokens=100, prices=prices, cache=False)
    tokens = int(pv.prompt_tokens.sum())
    assert pv.estimated_cost == pytest.approx((tokens * 1.0 + 5 * 100 * 2.0) / 1e6)
    with pytest.raises(ConfigError, match="over max_cost"):
        df.llama.batch_predict("{t}", backend=mock, max_tokens=100, prices=prices, max_cost=1e-6, progress=False)
    with pytest.raises(ConfigError, match="no price is known"):
        df.llama.batch_predict("{t}", backend=mock, max_cost=1.0, progress=False)
    with pytest.raises(ConfigError, match="over max_rows=2"):
        df.llama.batch_predict("{t}", backend=mock, max_rows=2, cache=False, progress=False)
    assert mock.submitted == []
    ok = df.llama.batch_predict("{t}", backend=mock, max_rows=3, temperature=0, progress=False)
    assert ok.error.isna().all()


def test_vertex_price_table_is_half_the_online_price():
    from pdbatch.pricing import ONLINE_PRICES, batch_price

    assert batch_price("meta/llama-3.1-405b-instruct-maas") == tuple(p / 2 for p in ONLINE_PRICES["llama-3.1-405b-instruct-maas"])
    assert batch_price("unknown-model") is None
    assert batch_price("unknown-model", {"unknown-model": (1, 2)}) == (1, 2)


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


def test_embeddings_are_deduplicated_too():
    mock = Mock()
    out = pd.DataFrame({"t": ["a", "a", "b"]}).llama.embed("{t}", backend=mock, progress=False)
    assert len(mock.submitted[0]) == 2
    assert np.array_equal(out.embedding.iloc[0], out.embedding.iloc[1])


def test_side_by_side_labels_gguf_files_by_their_stem():
    from pdbatch.run import _labels

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
