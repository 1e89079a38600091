"""The SQL pdbatch writes for a BigQuery table, checked without a connection.

The emulator (tests/test_table.py) runs it; here it is parsed as BigQuery SQL
with sqlglot, which also covers what the emulator cannot say: its dry run
reports 0 bytes, and it accepts partitioning clauses it ignores.
"""

from __future__ import annotations

import re

import pytest
import sqlglot
from sqlglot import exp

import pdbatch
from pdbatch.builders.sqlbuild import Column, TableRef, ident, literal, render
from pdbatch.call import Call
from pdbatch.errors import ConfigError, InputError
from pdbatch.jobs.tableresult import result_sql

NASTY = ["it's", 'say "hi"', "back\\slash", "\\n literally", "two\nlines", "cr\r\nlf", "tab\there",
         "bell\x07 del\x7f", "unicode café 日本 🙂", "`tick`", "'; DROP TABLE t; --", ""]
SOURCE = TableRef("my-proj", "ds", "reviews")
COLUMNS = [Column("id", "INT64"), Column("text", "STRING"), Column("stars", "INT64"), Column("ok", "BOOL"),
           Column("price", "FLOAT64"), Column("at", "TIMESTAMP")]


def parse(sql: str) -> exp.Expression:
    return sqlglot.parse_one(sql, read="bigquery")


def sql_for(prompt: str, columns=COLUMNS, **kw) -> str:
    args = dict(prompt=prompt, messages=None, system=None, model="m", url="/v1/chat/completions", kind="chat",
                params={}, custom_id=None, on_null="raise", columns=columns)
    args.update(kw)
    return render(SOURCE, **args).select


@pytest.mark.parametrize("text", NASTY)
def test_literals_hold_exactly_the_text(text):
    [lit] = parse(f"SELECT {literal(text)}").find_all(exp.Literal)
    assert lit.this == text


@pytest.mark.parametrize("name", ["plain", "with space", "back`tick", "back\\slash", "new\nline", "日本"])
def test_identifiers_are_quoted_and_escaped(name):
    col = parse(f"SELECT {ident(name)} FROM t").find(exp.Column)
    assert col.name == name and col.this.quoted


def test_a_table_uri_must_name_a_table_and_nothing_is_read_when_the_handle_is_made():
    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError(f"the handle called client.{name}")

    t = pdbatch.table("bq://my-proj.ds.reviews", client=NoCalls())
    assert t.uri == "bq://my-proj.ds.reviews" and hasattr(t.llama, "to_sql")
    assert "CONCAT" in t.llama.to_sql("Review: {text}", model="m", backend="mock")
    for bad in ("bq://my-proj.ds", "my-proj.ds.reviews", "bq://my-proj.ds.t`x", "gs://b/t", "", None):
        with pytest.raises(ConfigError, match=r"bq://project\.dataset\.table"):
            pdbatch.table(bad)  # type: ignore[arg-type]


def test_the_template_becomes_concat_of_literals_and_casts():
    sql = sql_for("A 'q' \\ {text}\n{stars}!", custom_id="id", system="s'ys", on_null="skip")
    tree = parse(sql)
    [concat] = tree.find_all(exp.Concat)
    assert [a.this if isinstance(a, exp.Literal) else a.sql("bigquery") for a in concat.expressions] == [
        "A 'q' \\ ", "CAST(src.`text` AS STRING)", "\n", "CAST(src.`stars` AS STRING)", "!"]
    assert tree.find(exp.JSONFormat) is not None or "TO_JSON(" in sql
    assert "FROM `my-proj`.`ds`.`reviews` AS src" in sql


@pytest.mark.parametrize("prompt, shown", [("{text:>10}", "{text:>10}"), ("{text!r}", "{text!r}"),
                                           ("{stars:x}", "{stars:x}"), ("{price}", "{price}"),
                                           ("{at}", "{at}"), ("{text:.2f}", "{text:.2f}")])
def test_specs_and_types_without_an_exact_sql_text_are_refused_naming_the_field(prompt, shown):
    with pytest.raises(InputError, match="prompt field " + re.escape(shown)):
        sql_for(prompt)


def test_specs_with_an_exact_sql_equivalent():
    sql = sql_for("{price:.2f} {stars:d} {text:.30} {ok}")
    assert "FORMAT('%.2f', CAST(src.`price` AS FLOAT64))" in sql and "SUBSTR(src.`text`, 1, 30)" in sql
    assert "IF(src.`ok`, 'True', 'False')" in sql  # Python's str(True), not SQL's 'true'
    parse(sql)


def test_a_missing_column_is_refused_with_the_tables_columns():
    with pytest.raises(InputError, match=r"\{title\} is not a column of the table bq://my-proj.ds.reviews.*'id'"):
        sql_for("{title}")


def test_reserved_passthrough_columns_are_refused_or_renamed():
    cols = [*COLUMNS, Column("body", "STRING"), Column("Response", "STRING")]
    with pytest.raises(ConfigError, match=r"\['body', 'Response'\].*rename_reserved=True"):
        render(SOURCE, prompt="{text}", messages=None, system=None, model="m", url="/v1/chat/completions",
               kind="chat", params={}, custom_id=None, on_null="raise", columns=cols, reserved=("body", "response"))
    r = render(SOURCE, prompt="{text}", messages=None, system=None, model="m", url="/v1/chat/completions",
               kind="chat", params={}, custom_id=None, on_null="raise", columns=cols, reserved=("body", "response"),
               rename_reserved=True)
    assert ("body", "input_body") in r.passthrough and ("Response", "input_Response") in r.passthrough
    names = [s.alias_or_name for s in parse(r.select).selects]
    assert len(names) == len(set(n.lower() for n in names))


def test_every_statement_parses_as_bigquery():
    """The request SELECT, the split table and the result table: BigQuery SQL (the emulator ignores partitions)."""
    r = render(SOURCE, prompt="{text}", messages=None, system="s", model="m", url="/v1/chat/completions",
               kind="chat", params={"max_tokens": 5, "temperature": 0.1, "stop": ["x"]}, custom_id=None,
               on_null="skip", columns=COLUMNS)
    parse(r.select)
    parse(f"CREATE TABLE `p`.`d`.`t` PARTITION BY RANGE_BUCKET(_pdbatch_part, GENERATE_ARRAY(0, 16, 1)) AS "
          f"SELECT *, MOD(ABS(FARM_FINGERPRINT(custom_id)), 16) AS _pdbatch_part FROM ({r.select})")
    spec = {"kind": "chat", "requests": ["bq://p.d.req"], "source": "bq://p.d.src", "used": r.used, "skipped": True}
    schema = {"type": "object", "properties": {"label": {"type": "string"}, "n": {"type": "integer"}}}
    for outputs in ([(TableRef("p", "d", "out"), "status")], [None]):
        sql = result_sql(spec, Call(prompt="{text}", schema=schema), outputs, r.passthrough)
        tree = parse(sql)
        assert {"response", "finish_reason", "prompt_tokens", "completion_tokens", "error", "label", "n"} <= {
            s.alias_or_name for s in tree.find(exp.Select).selects}
    # embeddings (for a backend that reads OpenAI embedding requests from a table)
    emb = render(SOURCE, prompt="{text}", messages=None, system=None, model="m", url="/v1/embeddings",
                 kind="embeddings", params={}, custom_id="id", on_null="raise", columns=COLUMNS)
    parse(emb.select)
    sql = result_sql({**spec, "kind": "embeddings", "skipped": False}, Call(prompt="{text}", url="/v1/embeddings"),
                     [(TableRef("p", "d", "out"), "status")], r.passthrough)
    assert "embedding" in {s.alias_or_name for s in parse(sql).find(exp.Select).selects}


def test_the_result_sql_is_rebuilt_from_names_not_read_from_the_manifest():
    """A job folder is data anyone could edit: names in it are quoted, SQL in it is never run."""
    spec = {"kind": "chat", "requests": ["bq://p.d.req"], "source": "bq://p.d.src", "skipped": True,
            "used": ["a` OR TRUE; DROP TABLE x; --"], "null_condition": "1=1 /* planted */",
            "custom_id": "(SELECT 'planted too')"}
    sql = result_sql(spec, Call(prompt="{x}", custom_id="k`; DROP"), [None], [("c`; DROP", "c")])
    assert len(sqlglot.parse(sql, read="bigquery")) == 1 and "planted" not in sql
    assert not list(parse(sql).find_all(exp.Drop))
    with pytest.raises(ConfigError):
        result_sql({**spec, "requests": ["bq://p.d.t`; DROP TABLE x; --"]}, Call(prompt="{x}"), [None], [])


def test_a_schema_the_backends_structured_output_would_not_keep_is_refused_as_for_frames():
    # One rule with the frame path (structured.apply_schema): Vertex keeps OpenAI's strict subset,
    # which has no minLength; the frame path refused it already, the table path sent it.
    from pdbatch.backends import Vertex

    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError(f"to_sql called client.{name}")

    schema = {"type": "object", "properties": {"why": {"type": "string", "minLength": 3}}, "required": ["why"]}
    vx = Vertex(project="p", location="us-central1", staging="bq://p.ds")
    t = pdbatch.table("bq://p.ds.reviews", client=NoCalls())
    with pytest.raises(ConfigError, match="minLength"):
        t.llama.to_sql("Review: {text}", model="openai/gpt-oss-120b-maas", backend=vx, schema=schema)
