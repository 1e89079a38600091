"""``--schema FILE.json`` on the command line: typed columns, as ``schema=`` gives them in Python."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pdbatch.cli.commands import main

SCHEMA = {"type": "object", "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]},
                                           "stars": {"type": "integer"}}, "required": ["sentiment", "stars"]}


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "in.csv"
    pd.DataFrame({"t": ["x", "y"]}).to_csv(path, index=False)
    return path


@pytest.fixture
def schema_file(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA))
    return path


def test_submit_with_a_schema_and_results_give_its_columns(table, schema_file, tmp_path, capsys):
    assert main(["submit", str(table), "--prompt", "{t}", "--backend", "mock", "--schema", str(schema_file)]) == 0
    job_id = capsys.readouterr().out.strip()
    out = tmp_path / "r.parquet"
    main(["results", job_id, "-o", str(out)])  # the mock echoes text, not JSON: rows fail, columns are there
    res = pd.read_parquet(out)
    assert list(res.columns[-3:]) == ["sentiment", "stars", "error"] and str(res.stars.dtype) == "Int64"
    assert res.error.str.contains("does not match the schema").all()


@pytest.mark.parametrize(("content", "message"), [
    (None, "--schema {path}: cannot read it"),
    ("{not json", "--schema {path}: not JSON"),
    ("[1, 2]", "--schema {path}: holds a JSON list, not a JSON schema object"),
    (json.dumps({"type": "object", "properties": {"s": {"type": "strng"}}}),
     "--schema {path}: schema= is not a valid JSON schema at /properties/s/type"),
])
def test_a_bad_schema_file_exits_2_with_one_clear_line(table, tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    assert main(["run", str(table), "--prompt", "{t}", "--backend", "mock", "--schema", str(path)]) == 2
    err = capsys.readouterr().err
    assert message.format(path=path) in err and "Traceback" not in err


def test_schema_is_refused_for_embeddings_and_for_request_files(table, schema_file, tmp_path, capsys):
    assert main(["run", str(table), "--prompt", "{t}", "--embed", "--backend", "mock",
                 "--schema", str(schema_file)]) == 2
    assert "an --embed job has none" in capsys.readouterr().err
    lines = tmp_path / "req.jsonl"
    lines.write_text('{"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}\n')
    assert main(["run", str(lines), "--backend", "mock", "--schema", str(schema_file)]) == 2
    assert "--schema does not apply" in capsys.readouterr().err


@pytest.mark.slow
def test_run_with_a_schema_on_the_local_engine_writes_typed_columns(schema_file, tmp_path):
    table = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["Great blender, works perfectly.", "Broke after two days."]}).to_csv(table, index=False)
    out = tmp_path / "out.parquet"
    code = main(["run", str(table), "--prompt", "Rate this review: {review}", "--schema", str(schema_file),
                 "--max-tokens", "40", "--temperature", "0", "-o", str(out), "-q"])
    res = pd.read_parquet(out)
    assert code in (0, 1) and str(res.stars.dtype) == "Int64" and str(res.sentiment.dtype).startswith("string")
    ok = res.error.isna()
    assert ok.any(), res.error.tolist()
    assert set(res.sentiment[ok]) <= {"positive", "negative"} and res.stars[ok].notna().all()
