"""Never pay twice: identical rows sent once, the response cache, typed columns (schema=)."""

import numpy as np
import pandas as pd
import pytest

import pdbatch
from pdbatch import cache as response_cache
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


def test_cache_answers_a_rerun_without_a_job(df):
    mock = Mock()
    first = df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    again = df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert len(mock.submitted) == 1, "nothing new: nothing submitted"
    pd.testing.assert_frame_equal(first, again)
    more = pd.concat([df, pd.DataFrame({"t": ["d"]})], ignore_index=True)
    out = more.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert sent_contents(mock) == ["d"], "only the new row is sent"
    assert out.response.tolist()[-2:] == ["echo: b", "echo: d"]
    job = df.llama.submit("{t}", backend=mock, temperature=0)
    assert job.id.startswith("cached-") and job.state == "JOB_STATE_SUCCEEDED"
    assert job.result().response.tolist() == first.response.tolist()
    assert pdbatch.attach(job.id, backend=mock).result().response.tolist() == first.response.tolist()


def test_cache_keys_include_backend_model_and_body(df):
    mock = Mock()
    df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    df.llama.batch_predict("{t}", backend=mock, temperature=0, max_tokens=5, progress=False)
    df.llama.batch_predict("{t}", backend=mock, model="other", temperature=0, progress=False)
    df.llama.batch_predict("{t}!", backend=mock, temperature=0, progress=False)
    assert len(mock.submitted) == 4


def test_sampling_without_seed_is_not_cached_unless_asked(df):
    mock = Mock()
    df.llama.batch_predict("{t}", backend=mock, temperature=0.7, progress=False)
    assert len(mock.submitted[-1]) == 5, "duplicates are real samples: all sent"
    df.llama.batch_predict("{t}", backend=mock, temperature=0.7, progress=False)
    assert len(mock.submitted) == 2
    df.llama.batch_predict("{t}", backend=mock, temperature=0.7, seed=3, progress=False)
    df.llama.batch_predict("{t}", backend=mock, temperature=0.7, seed=3, progress=False)
    assert len(mock.submitted) == 3, "a seed makes it reproducible"
    df.llama.batch_predict("{t}", backend=mock, temperature=0.7, cache="always", progress=False)
    df.llama.batch_predict("{t}", backend=mock, temperature=0.7, cache="always", progress=False)
    assert len(mock.submitted) == 4
    df.llama.batch_predict("{t}", backend=mock, temperature=0, cache=False, progress=False)
    assert len(mock.submitted[-1]) == 5


def test_failures_are_not_cached_and_cache_can_be_cleared(df):
    mock = Mock(fail=lambda cid, body: "boom" if body["messages"][-1]["content"] == "c" else None)
    out = df.llama.batch_predict("{t}", backend=mock, temperature=0, progress=False)
    assert out.error.tolist()[3] == "boom"
    df.llama.batch_predict("{t}", backend=Mock(), temperature=0, progress=False)
    assert response_cache.clear(backend="mock") == 3
    with response_cache.ResponseCache() as c:
        assert c.count() == 0


class _Schema:
    schema = {
        "title": "Review",
        "type": "object",
        "properties": {"sentiment": {"type": "string", "enum": ["pos", "neg"]}, "stars": {"type": "integer"}},
        "required": ["sentiment", "stars"],
    }


def json_mock():
    import orjson

    answers = {"a": {"sentiment": "pos", "stars": 5}, "b": {"sentiment": "neg", "stars": 1},
               "c": "not json", "d": {"sentiment": "meh", "stars": 3}, "e": {"sentiment": "pos", "stars": "5"}}

    class JsonMock(Mock):
        pass

    def patch(kind, body):
        text = body["messages"][-1]["content"]
        ans = answers[text]
        content = ans if isinstance(ans, str) else orjson.dumps(ans).decode()
        return {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": content}}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}

    import pdbatch.backends.mock as m

    return m, patch


def test_schema_gives_typed_columns_and_row_errors(monkeypatch):
    m, patch = json_mock()
    monkeypatch.setattr(m, "_answer", patch)
    df = pd.DataFrame({"t": ["a", "b", "c", "d", "e"]})
    mock = Mock()
    out = df.llama.batch_predict("{t}", backend=mock, schema=_Schema.schema, temperature=0, progress=False)
    import orjson

    body = orjson.loads(mock.submitted[0][0])["body"]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == _Schema.schema
    assert list(out.columns) == ["t", "response", "finish_reason", "prompt_tokens", "completion_tokens",
                                 "sentiment", "stars", "error"]
    assert out.sentiment.tolist()[:2] == ["pos", "neg"] and str(out.stars.dtype) == "Int64"
    assert out.stars.tolist()[:2] == [5, 1]
    errs = out.error.tolist()
    assert pd.isna(errs[0]) and pd.isna(errs[1])
    assert "not JSON" in errs[2] and "one of ['pos', 'neg']" in errs[3] and "should be integer" in errs[4]
    assert out.response.iloc[2] == "not json", "the raw answer is kept"
    with pytest.raises(ConfigError, match="already has column"):
        out[["t", "sentiment"]].llama.batch_predict("{t}", backend=mock, schema=_Schema.schema, progress=False)


def test_schema_from_pydantic(monkeypatch):
    pydantic = pytest.importorskip("pydantic")
    m, patch = json_mock()
    monkeypatch.setattr(m, "_answer", patch)

    class Review(pydantic.BaseModel):
        sentiment: str
        stars: int

    out = pd.DataFrame({"t": ["a", "c"]}).llama.batch_predict("{t}", backend=Mock(), schema=Review, progress=False)
    assert out.stars.iloc[0] == 5 and out.error.notna().tolist() == [False, True]
    with pytest.raises(ConfigError, match="pydantic model class"):
        pd.DataFrame({"t": ["a"]}).llama.batch_predict("{t}", backend=Mock(), schema="nope", progress=False)


def test_embeddings_are_deduplicated_too():
    mock = Mock()
    out = pd.DataFrame({"t": ["a", "a", "b"]}).llama.embed("{t}", backend=mock, progress=False)
    assert len(mock.submitted[0]) == 2
    assert np.array_equal(out.embedding.iloc[0], out.embedding.iloc[1])


def test_backends_without_a_cache_identity_keep_their_keys():
    # an empty identity adds nothing: a backend that declares none keys its rows as before identities existed
    from pdbatch.cache import RowKeys

    body = {"model": "m", "messages": [{"role": "user", "content": ""}], "temperature": 0}
    plain = RowKeys("vertex", "m", "/v1/chat/completions", body, "text")
    assert RowKeys("vertex", "m", "/v1/chat/completions", body, "text", {}).key("x") == plain.key("x")
    assert RowKeys("vertex", "m", "/v1/chat/completions", body, "text", {"weights": "w"}).key("x") != plain.key("x")


class _Weights(Mock):
    """A mock whose answers depend on a setting, as the local backend's depend on its weights."""

    def __init__(self, weights: str = "a", **kw):
        super().__init__(**kw)
        self.weights = weights

    def cache_identity(self, model, kind):
        return {"weights": self.weights}


def test_settings_in_the_cache_identity_never_share_answers(df):
    first = _Weights("a")
    df.llama.batch_predict("{t}", backend=first, temperature=0, progress=False)
    assert df.llama.preview("{t}", backend=_Weights("a"), temperature=0).n_cached == 3
    other = _Weights("b")
    assert df.llama.preview("{t}", backend=other, temperature=0).n_cached == 0
    df.llama.batch_predict("{t}", backend=other, temperature=0, progress=False)
    assert sorted(sent_contents(other)) == ["a", "b", "c"]
