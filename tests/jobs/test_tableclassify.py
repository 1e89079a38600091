"""The label columns of a table classify's result SQL, checked without a connection (parsed as BigQuery SQL).

tests/test_table_classify.py runs them in the BigQuery emulator.
"""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from pdbatch.builders.sqlbuild import TableRef
from pdbatch.call import Call
from pdbatch.errors import ConfigError
from pdbatch.jobs.tableclassify import check_names
from pdbatch.jobs.tableresult import result_columns, result_sql
from pdbatch.results.classify import LabelSpec

SPEC = {"kind": "chat", "requests": ["bq://p.d.req"], "source": "bq://p.d.src", "skipped": True, "used": ["text"]}


def selects(sql: str) -> list[str]:
    statements = sqlglot.parse(sql, read="bigquery")
    assert len(statements) == 1 and not list(statements[0].find_all(exp.Drop))
    return [[s.alias_or_name for s in select.selects] for select in statements[0].find_all(exp.Select)
            if any(s.alias_or_name == "error" for s in select.selects)]


def test_the_result_has_the_label_columns_in_place_of_the_answer():
    labels = ["yes", "it's \"so\"", "`tick`; DROP TABLE x; --", "café"]  # from a job folder: quoted, never run
    call = Call(prompt="{text}", custom_id="k", classify=LabelSpec.make(labels, output="verdict").record())
    sql = result_sql(SPEC, call, [(TableRef("p", "d", "out"), "status")], [("text", "text")])
    expected = ["text", "custom_id", "verdict", *[f"p_{label}" for label in labels], "error"]
    got = selects(sql)
    assert got == [expected, expected]  # the answered rows, and the rows skipped for a null
    sql = result_sql({**SPEC, "skipped": False}, call, [None], [])  # never written: every row missing
    assert selects(sql) == [expected[1:]]
    assert result_columns(call, "chat") == expected[2:]


def test_the_result_sql_refuses_labels_a_job_folder_got_wrong():
    call = Call(prompt="{text}", classify={"labels": ["only"], "output": "label"})
    with pytest.raises(ConfigError, match="at least 2 labels"):
        result_sql(SPEC, call, [None], [])


@pytest.mark.parametrize("labels, output, message", [
    (["Yes", "yes"], "label", r"'p_Yes' and 'p_yes'.*ignore case"),
    (["a", "b"], "P_A", r"'P_A' and 'p_a'"),
    (["a", "b"], "Custom_ID", r"'custom_id' and 'Custom_ID'"),
    (["a.b", "c"], "label", r"label 'a.b' \(its column 'p_a.b'\): BigQuery column names cannot hold \['\.'\]"),
    (["a", 'say "hi"!'], "label", r"cannot hold \['!', '\"'\]"),
    (["a", "b"], "_TABLE_x", "reserves column names starting with"),
    (["x" * 299, "b"], "label", "at most 300 characters"),
])
def test_result_column_names_bigquery_would_refuse_are_refused(labels, output, message):
    with pytest.raises(ConfigError, match=message):
        check_names(LabelSpec.make(labels, output=output))


def test_names_bigquery_takes_pass():
    check_names(LabelSpec.make(["très bien", "so-so", "5 stars", "a&b", "x" * 298], output="verdict_1"))



@pytest.mark.parametrize("record", [{}, {"labels": 5}, {"labels": ["a"]}, ["a", "b"], None])
def test_a_saved_classify_call_without_its_labels_is_a_config_error_not_a_key_error(record):
    from pdbatch.jobs.tableclassify import label_spec

    # a job folder's manifest is data anyone could edit: its checks refuse it with a pdbatch error
    with pytest.raises(ConfigError, match=r"labels="):
        label_spec(record)
    assert label_spec({"labels": ["a", "b"]}).labels == ("a", "b")
