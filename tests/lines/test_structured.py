"""Structured output: a schema in, typed columns out; an answer that does not fit is that row's error.

Through the accessor on the Mock backend, and :mod:`pdbatch.lines.structured` itself.
The local engine's grammar: test_local.py; the request Vertex receives: test_vertex_service.py.
"""

from typing import ClassVar

import pandas as pd
import pytest

from pdbatch.backends import Mock
from pdbatch.errors import ConfigError
from pdbatch.lines.structured import as_schema, inline_refs


class _Schema:
    schema: ClassVar[dict] = {
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
                "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1}}

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


# ------------------------------------------------------------ the module itself
def test_a_failed_row_stays_failed_and_missing_fields_are_missing():
    schema = as_schema(_Schema.schema)
    responses = pd.Series(['{"sentiment": "pos", "stars": 4}', None, '{"sentiment": "neg", "stars": null}'],
                          index=["r0", "r1", "r2"])
    errors = pd.Series([None, "engine error: boom", None], index=["r0", "r1", "r2"])
    cols, errs = schema.parse(responses, errors)
    assert list(cols.index) == ["r0", "r1", "r2"] and str(cols.stars.dtype) == "Int64"
    assert cols.stars.tolist()[0] == 4 and cols.stars.isna().tolist() == [False, True, True]
    assert errs.tolist()[1] == "engine error: boom", "an earlier error is never replaced"
    assert pd.isna(errs.iloc[0]) and pd.isna(errs.iloc[2])


@pytest.mark.parametrize(
    ("schema", "message"),
    [({"type": "array", "items": {"type": "string"}}, "JSON object with 'properties'"),
     ({"type": "object"}, "JSON object with 'properties'"),
     ("nope", "pydantic model class, got str")],
)
def test_schemas_that_give_no_columns_are_refused(schema, message):
    with pytest.raises(ConfigError, match=message):
        as_schema(schema)


def test_the_response_format_names_the_schema_safely():
    given = {**_Schema.schema, "title": "A review / v2"}
    schema = as_schema(given)
    fmt = schema.response_format
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "A_review___v2"
    assert fmt["json_schema"]["schema"] == given and schema.columns == ["sentiment", "stars"]


def test_references_are_written_out_and_a_property_may_be_named_like_a_keyword():
    schema = {
        "type": "object",
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "properties": {"author": {"$ref": "#/$defs/Person"}, "$defs": {"type": "string"}},
        "$defs": {"Person": {"type": "object", "properties": {"name": {"type": "string"}}}},
    }
    assert inline_refs(schema) == {
        "type": "object",
        "properties": {"author": {"type": "object", "properties": {"name": {"type": "string"}}},
                       "$defs": {"type": "string"}},
    }


@pytest.mark.parametrize(
    ("schema", "message"),
    [({"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}},
       "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}}},
      r"recursive \(Node -> Node\)"),
     ({"type": "object", "properties": {"x": {"$ref": "https://example.com/x.json"}}}, "cannot resolve \\$ref")],
)
def test_schemas_without_a_written_out_form_are_refused(schema, message):
    with pytest.raises(ConfigError, match=message):
        as_schema(schema)
