"""Structured output says why it fails: a schema checked before anything is sent, an answer cut at max_tokens named."""

from __future__ import annotations

import pandas as pd
import pytest

from pdbatch.backends import Local, Mock
from pdbatch.backends._schema_support import LLAMA_GRAMMAR, OPENAI_STRICT
from pdbatch.errors import ConfigError
from pdbatch.lines.schemacheck import check_supported, pointer
from pdbatch.lines.structured import CUT_SHORT, as_schema
from pdbatch.store import jobdir


def obj(**props):
    return {"type": "object", "properties": props, "required": list(props)}


def no_jobs():
    folder = jobdir.root()
    return not folder.exists() or not any(folder.iterdir())


def test_a_misspelt_type_is_refused_before_anything_is_sent_naming_its_place():
    df = pd.DataFrame({"t": ["a"]})
    mock = Mock()
    with pytest.raises(ConfigError, match=r"at /properties/sentiment/type: 'strng' is not a JSON Schema type"):
        df.llama.batch_predict("{t}", backend=mock, schema=obj(sentiment={"type": "strng"}), progress=False)
    with pytest.raises(ConfigError, match=r"at /properties/tags/items/enum: .* is not of type 'array'"):
        as_schema(obj(tags={"type": "array", "items": {"type": "string", "enum": "a"}}))
    assert mock.submitted == []


@pytest.mark.parametrize(("sub", "where", "what"), [
    ({"type": "integer", "minimum": 1}, "/properties/x/minimum", "the keyword 'minimum'"),
    ({"title": "anything"}, "/properties/x", "does not say what it holds"),
    ({"type": "string", "format": "email"}, "/properties/x/format", "the string format 'email'"),
    ({"type": "array", "items": False}, "/properties/x/items", "boolean subschema false"),
    ({"type": ["object", "null"], "properties": {"a": {"type": "string"}}}, "/properties/x/properties",
     "beside a list of types"),
    ({"type": "string", "pattern": "^a", "maxLength": 3}, "/properties/x/maxLength", "'maxLength' beside 'pattern'"),
    ({"type": "object", "allOf": [obj(a={"type": "string"})]}, "/properties/x/allOf", "the keyword 'allOf'"),
])
def test_what_the_local_grammar_would_not_keep_is_refused_naming_its_place(sub, where, what):
    df = pd.DataFrame({"t": ["a"]})
    with pytest.raises(ConfigError, match=f"at {where}: .*{what}.*local engine's grammar"):
        df.llama.batch_predict("{t}", backend=Local(), schema=obj(x=sub), progress=False)
    assert no_jobs()


def test_the_local_declaration_matches_llama_cpp_pythons_converter():
    """What is accepted converts; what is refused for a type or a shape makes the converter give up."""
    from llama_cpp.llama_grammar import SchemaConverter

    def converts(schema):
        conv = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        try:
            conv.visit(conv.resolve_refs(schema, ""), "")
        except Exception:  # the converter raises AssertionError, AttributeError, ...
            return False
        return True

    accepted = obj(a={"type": "string", "enum": ["x", "y"]}, b={"type": "integer"},
                   c={"anyOf": [{"type": "number"}, {"type": "null"}]},
                   d={"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
                   e={"type": "string", "format": "date"}, f={"const": 1}, g={"type": "boolean"},
                   h={"type": "string", "pattern": "^[a-z]+$"})
    check_supported(accepted, LLAMA_GRAMMAR)
    assert converts(accepted)
    for refused in (obj(x={"type": "strng"}), obj(x={"title": "no type"}), obj(x={"type": "array", "items": True})):
        with pytest.raises(ConfigError):
            check_supported(refused, LLAMA_GRAMMAR)
        assert not converts(refused), refused


def test_vertex_declares_openais_strict_subset():
    from pdbatch.backends.vertex import Vertex

    assert Vertex.schema_support is OPENAI_STRICT and Local.schema_support is LLAMA_GRAMMAR
    check_supported(obj(n={"type": "integer", "minimum": 0, "maximum": 5}), OPENAI_STRICT)  # kept there
    with pytest.raises(ConfigError, match=r"/properties/s/minLength: the keyword 'minLength'.*Vertex"):
        check_supported(obj(s={"type": "string", "minLength": 2}), OPENAI_STRICT)


def test_a_pydantic_model_is_checked_as_it_is_sent():
    pydantic = pytest.importorskip("pydantic")

    class Topic(pydantic.BaseModel):
        name: str
        weight: int | None = None

    class Review(pydantic.BaseModel):
        main: Topic
        score: int = pydantic.Field(ge=0)

    df = pd.DataFrame({"t": ["a"]})
    with pytest.raises(ConfigError, match="at /properties/score/minimum"):  # $defs written out first
        df.llama.batch_predict("{t}", backend=Local(), schema=Review, progress=False)

    class Plain(pydantic.BaseModel):
        main: Topic
        tags: list[str]

    check_supported(as_schema(Plain).response_format["json_schema"]["schema"], LLAMA_GRAMMAR)


def test_pointer_escapes_as_rfc_6901_says():
    assert pointer(["properties", "a/b", "x~y", 0]) == "/properties/a~1b/x~0y/0"


def test_an_answer_cut_at_max_tokens_says_so_and_names_the_setting():
    schema = as_schema(obj(sentiment={"type": "string"}))
    responses = pd.Series(['{"sentiment": "pos', '{"sentiment": "po'])
    errors = pd.Series([None, None])
    _, errs = schema.parse(responses, errors, pd.Series(["length", "stop"]))
    assert errs[0].startswith(CUT_SHORT) and "max_tokens=" in errs[0] and "finish_reason 'length'" in errs[0]
    assert errs[1].startswith("response does not match the schema: not JSON"), "a stopped answer is not blamed on it"


@pytest.mark.slow
def test_the_local_engine_cut_at_max_tokens_names_max_tokens(reviews):
    schema = obj(summary={"type": "string"}, stars={"type": "integer"})
    out = reviews.iloc[:2].llama.batch_predict("Summarise this review: {review}", schema=schema, max_tokens=3,
                                               temperature=0, progress=False)
    assert (out.finish_reason == "length").all()
    assert out.error.str.startswith(CUT_SHORT).all(), out.error.tolist()


def test_a_request_lines_own_schema_is_checked_and_a_bad_one_is_that_lines_error(tmp_path):
    import json

    from pdbatch.builders.requestfile import plan_lines, read_requests

    def line(cid, schema):
        fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
        return json.dumps({"custom_id": cid, "body": {"messages": [{"role": "user", "content": "hi"}],
                                                      "response_format": fmt}})

    path = tmp_path / "req.jsonl"
    path.write_text("\n".join([line("good", obj(s={"type": "string"})), line("typo", obj(s={"type": "strng"})),
                               line("min", obj(n={"type": "integer", "minimum": 1}))]) + "\n")
    planned = plan_lines(read_requests(path), Local())
    assert [g.positions.tolist() for g in planned.groups] == [[0]]
    assert planned.errors[1].startswith("invalid request: response_format is not a valid JSON schema at "
                                        "/properties/s/type: 'strng' is not a JSON Schema type")
    assert planned.errors[2].startswith("invalid request: response_format at /properties/n/minimum")
    assert list(plan_lines(read_requests(path), Mock()).errors) == [1], "no declared limit: only the metaschema"
