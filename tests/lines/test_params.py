"""Body parameters are checked before anything runs: typos, types, ranges, what a backend cannot honour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import Mock
from pdbatch.errors import ConfigError


@pytest.fixture
def df():
    return pd.DataFrame({"t": ["a", "b", "a"]})


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        ({"max_token": 10}, "did you mean 'max_tokens'"),
        ({"tempreature": 0}, "did you mean 'temperature'"),
        ({"progres": False}, "did you mean 'progress'"),
        ({"template": "{t}"}, "did you mean 'prompt'"),
        ({"seeds": 1}, "did you mean 'seed'"),
    ],
)
def test_typos_are_refused_with_close_matches_and_nothing_is_sent(df, kwargs, hint):
    be = Mock()
    with pytest.raises(ConfigError, match=hint) as info:
        df.llama.batch_predict("{t}", backend=be, progress=False, **kwargs)
    assert "nothing was sent" in str(info.value) and "extra_body=" in str(info.value)
    assert be.submitted == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": "10"}, "max_tokens='10': must be an integer, not a str"),
        ({"max_tokens": 0}, "max_tokens=0: must be an integer at least 1"),
        ({"temperature": 3}, "temperature=3: must be a number from 0 to 2"),
        ({"temperature": True}, "temperature=True: must be a number from 0 to 2, not a bool"),
        ({"top_p": "0.9"}, "top_p='0.9': must be a number from 0 to 1, not a str"),
        ({"seed": 1.5}, "seed=1.5: must be an integer, not a float"),
        ({"stop": 5}, "stop=5: must be a non-empty string or a list"),
        ({"response_format": {"type": "bogus"}}, r"response_format=\{'type': 'bogus'\}: must be \{'type': 'text'"),
        ({"logprobs": True}, "logprobs=True: not supported"),
        ({"n": 2}, "n=2: must be 1"),
        ({"tools": [{"type": "function"}]}, "tool calls would be lost"),
        ({"stream": True}, "stream=True: must be False: batch jobs do not stream"),
        ({"max_tokens": 5, "max_completion_tokens": 5}, "not both"),
        ({"extra_body": {"max_tokens": 5}}, r"extra_body\['max_tokens'\]: a field pdbatch knows"),
        ({"extra_body": ["top_k"]}, "extra_body must be a dict"),
    ],
)
def test_wrong_types_and_ranges_are_refused_before_submitting(df, kwargs, message):
    be = Mock()
    with pytest.raises(ConfigError, match=message):
        df.llama.batch_predict("{t}", backend=be, progress=False, **kwargs)
    assert be.submitted == []


def test_every_problem_is_listed_at_once(df):
    with pytest.raises(ConfigError, match="3 bad request parameters") as info:
        df.llama.to_requests("{t}", max_token=1, temperature=9, stop=[""], backend="mock")
    assert str(info.value).count("\n  - ") == 3


def test_embeddings_fields_and_arguments_of_chat_calls(df):
    with pytest.raises(ConfigError, match="'max_tokens' is a field of chat requests"):
        df.llama.embed("{t}", max_tokens=5, backend="mock", progress=False)
    with pytest.raises(ConfigError, match="system= does not apply to embeddings requests"):
        df.llama.embed("{t}", system="Be kind.", backend="mock", progress=False)
    with pytest.raises(ConfigError, match="encoding_format='base64': must be 'float'"):
        df.llama.embed("{t}", encoding_format="base64", backend="mock", progress=False)
    # the local e5 engine's own field is known on the local backend only
    assert df.llama.to_requests("{t}", url="/v1/embeddings", input_type="query").body[0]["input_type"] == "query"
    with pytest.raises(ConfigError, match="input_type='question': must be one of 'query', 'passage'"):
        df.llama.to_requests("{t}", url="/v1/embeddings", input_type="question")
    with pytest.raises(ConfigError, match="unknown parameter 'input_type'"):
        df.llama.to_requests("{t}", url="/v1/embeddings", input_type="query", backend="mock")


def test_extra_body_is_the_explicit_way_to_send_unknown_fields(df):
    body = df.llama.to_requests("{t}", extra_body={"top_k": 40, "repetition_penalty": 1.1}, backend="mock").body[0]
    assert body["top_k"] == 40 and body["repetition_penalty"] == 1.1
    # the local engine would ignore them: it refuses them instead
    with pytest.raises(ConfigError, match="top_k=40: the local engine does not use it"):
        df.llama.to_requests("{t}", extra_body={"top_k": 40})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"logprobs": True}, "logprobs=True: not supported"),
        ({"response_format": {"type": "bogus"}}, "response_format=.*: must be"),
        ({"logit_bias": {"42": 5}}, "logit_bias=.*the local engine does not use it"),
        ({"reasoning_effort": "low"}, "reasoning_effort='low': the local engine does not use it"),
    ],
)
def test_the_local_backend_refuses_what_its_engine_would_ignore(df, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        df.llama.submit("{t}", progress=False, **kwargs)
    assert not list((pdbatch.config.home() / "jobs").glob("local-*"))


def test_numpy_scalars_from_a_frame_are_plain_values_in_the_body(df):
    body = df.llama.to_requests("{t}", temperature=np.float64(0.5), max_tokens=np.int64(7)).body[0]
    assert body["temperature"] == 0.5 and body["max_tokens"] == 7 and type(body["max_tokens"]) is int


# ------------------------------------------------------------ the default cap
def test_chat_requests_get_a_default_max_tokens_and_none_removes_it(df):
    from pdbatch.lines.params import DEFAULT_MAX_TOKENS

    assert df.llama.to_requests("{t}").body[0]["max_tokens"] == 512 == DEFAULT_MAX_TOKENS
    assert "max_tokens" not in df.llama.to_requests("{t}", max_tokens=None).body[0]
    assert df.llama.to_requests("{t}", max_tokens=8).body[0]["max_tokens"] == 8
    capped = df.llama.to_requests("{t}", max_completion_tokens=9).body[0]
    assert capped["max_completion_tokens"] == 9 and "max_tokens" not in capped
    assert "max_tokens" not in df.llama.to_requests("{t}", url="/v1/embeddings").body[0]


def test_a_retry_keeps_an_explicit_no_cap(df):
    out = df.llama.batch_predict("{t}", backend=Mock(fail=lambda cid, body: "boom" if cid == "row-1" else None),
                                 max_tokens=None, temperature=0, progress=False)
    be = Mock()
    out.llama.retry_failed(backend=be, progress=False)
    assert b'"max_tokens"' not in be.submitted[0][0]


def test_preview_shows_the_cap_and_whether_it_is_the_default(df):
    pv = df.llama.preview("{t}", backend="mock")
    assert pv.max_tokens == 512 and pv.max_tokens_default
    assert "max_tokens per answer 512 tokens (the default" in repr(pv)
    assert "max_tokens per answer" in pv._repr_html_() and "None removes it" in pv._repr_html_()
    pv = df.llama.preview("{t}", backend="mock", max_tokens=None)
    assert pv.max_tokens is None and "none (max_tokens=None" in repr(pv)
    pv = df.llama.preview("{t}", backend="mock", max_tokens=20)
    assert not pv.max_tokens_default and "20 tokens>" in repr(pv)


@pytest.mark.parametrize("seed", [2**70, -(2**64)])
def test_an_integer_past_64_bits_is_refused_naming_that_field_alone(df, seed):
    # a request body carries 64-bit integers: before, the JSON writer refused the
    # whole parameter set and named every field, ['max_tokens', 'seed']
    be = Mock()
    with pytest.raises(ConfigError) as info:
        df.llama.batch_predict("{t}", backend=be, progress=False, seed=seed)
    text = str(info.value)
    assert f"seed={seed}: must be an integer from -2**63 to 2**64-1" in text
    assert "max_tokens" not in text
    assert be.submitted == []
