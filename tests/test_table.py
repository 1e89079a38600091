"""pdbatch.table: a BigQuery table in, Vertex AI in the middle, a result table out; no row through the client.

Against the BigQuery emulator (local-bigquery, which runs the SQL pdbatch
writes) and the Vertex AI emulator, with the real Google clients. The model
and region are named explicitly: gpt-oss-120b is served in us-central1.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from google.cloud import bigquery

import pdbatch
from pdbatch import tablejob
from pdbatch.backends import _gcp
from pdbatch.backends.vertex import Vertex
from pdbatch.call import Call
from pdbatch.errors import ConfigError, InputError

pytestmark = pytest.mark.slow

MODEL = "openai/gpt-oss-120b-maas"
LOCATION = "us-central1"
NASTY = ["it's \"quoted\"", "back\\slash \\n not a newline", "two\nlines\r\nand\ttab", "ctrl \x01 char",
         "unicode: café 日本 🙂", "`backticks` and {braces}", ""]


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(_gcp, "BACKOFF", 0.01)


@pytest.fixture
def vx(vertex_emulator) -> Vertex:
    return Vertex(project=vertex_emulator.project, location=LOCATION, api_endpoint=vertex_emulator.url,
                  poll_seconds=0.05)


def _field(name: str, series: pd.Series) -> bigquery.SchemaField:
    if pd.api.types.is_bool_dtype(series):
        return bigquery.SchemaField(name, "BOOL")
    if pd.api.types.is_integer_dtype(series):
        return bigquery.SchemaField(name, "INT64")
    if pd.api.types.is_float_dtype(series):
        return bigquery.SchemaField(name, "FLOAT64")
    first = next((v for v in series if isinstance(v, list)), None)
    if first is not None:  # a column of chat messages
        return bigquery.SchemaField(name, "RECORD", mode="REPEATED", fields=[
            bigquery.SchemaField("role", "STRING"), bigquery.SchemaField("content", "STRING")])
    return bigquery.SchemaField(name, "STRING")


def load(bq_emulator, dataset: str, frame: pd.DataFrame, name: str = "reviews") -> str:
    """The frame as a BigQuery table (newline-delimited JSON, explicit schema)."""
    table_id = f"{dataset}.{name}"
    schema = [_field(str(c), frame[c]) for c in frame.columns]
    rows = [{k: (None if not isinstance(v, list) and pd.isna(v) else v) for k, v in r.items()}
            for r in frame.astype(object).to_dict("records")]
    config = bigquery.LoadJobConfig(schema=schema, source_format="NEWLINE_DELIMITED_JSON")
    bq_emulator.client().load_table_from_json(rows, table_id, job_config=config).result()
    return f"bq://{table_id}"


def tables(bq_emulator, dataset: str) -> set[str]:
    return {t.table_id for t in bq_emulator.client().list_tables(dataset)}


def reviews(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({"review_id": [f"id-{i}" for i in range(n)],
                         "text": [NASTY[i % len(NASTY)] + f" #{i}" for i in range(n)],
                         "stars": [i % 5 + 1 for i in range(n)],
                         "verified": [i % 2 == 0 for i in range(n)]})


def bodies_of(client, sql: str) -> dict[str, dict]:
    out = {}
    for row in client.query(sql).result():
        body = row["body"]
        out[row["custom_id"]] = json.loads(body) if isinstance(body, str) else body
    return out


# ---------------------------------------------------------------- bodies
PROMPT = "Review ({stars} stars, verified={verified}):\n'{text}' \\ \"end\""


@pytest.mark.parametrize("with_schema", [True, False], ids=["schema", "to_sql"])
def test_sql_bodies_equal_the_frame_path(bq_emulator, bq_dataset, vx, with_schema):
    frame = reviews(len(NASTY) + 2)
    uri = load(bq_emulator, bq_dataset, frame)
    kwargs = dict(system="Be 'brief'\\\n\"ok\"", model=MODEL, custom_id="review_id", temperature=0.25,
                  stop=["\n\n", "'"], seed=7, max_tokens=64)
    expected = {r.custom_id: r.body for r in frame.llama.to_requests(PROMPT, backend=vx, **kwargs).itertuples()}
    table = pdbatch.table(uri)
    if with_schema:
        call = Call(prompt=PROMPT, system=kwargs.pop("system"), model=kwargs.pop("model"),
                    custom_id=kwargs.pop("custom_id"), params=kwargs)
        sql = tablejob.render_call(table, call, vx).rendered.select
    else:
        # without the schema a bool renders as SQL's 'true': the template leaves it out
        prompt = PROMPT.replace(", verified={verified}", "")
        expected = {r.custom_id: r.body for r in frame.llama.to_requests(prompt, backend=vx, **kwargs).itertuples()}
        sql = table.llama.to_sql(prompt, backend=vx, **kwargs)
    got = bodies_of(bq_emulator.client(), sql)
    assert got == expected


def test_row_numbers_and_on_null_skip(bq_emulator, bq_dataset, vx):
    frame = reviews(5)
    frame.loc[2, "text"] = None
    uri = load(bq_emulator, bq_dataset, frame)
    sql = pdbatch.table(uri).llama.to_sql("{text}", backend=vx, model=MODEL, on_null="skip")
    rows = list(bq_emulator.client().query(sql).result())
    assert sorted(r["custom_id"] for r in rows) == ["row-0", "row-1", "row-2", "row-3"]
    assert sorted(r["review_id"] for r in rows) == ["id-0", "id-1", "id-3", "id-4"]  # passed through


def test_on_null_raise_fails_the_query_naming_the_row(bq_emulator, bq_dataset, vx):
    frame = reviews(3)
    frame.loc[1, "text"] = None
    uri = load(bq_emulator, bq_dataset, frame)
    sql = pdbatch.table(uri).llama.to_sql("{text}", backend=vx, model=MODEL, custom_id="review_id")
    with pytest.raises(Exception, match="id-1"):
        list(bq_emulator.client().query(sql).result())
    with pytest.raises(InputError, match=r"1 row\(s\) have a null in column\(s\) \['text'\].*id-1"):
        pdbatch.table(uri).llama.preview("{text}", backend=vx, model=MODEL, custom_id="review_id")


# ---------------------------------------------------------------- the job
def test_batch_predict_keeps_the_rows_in_bigquery(bq_emulator, bq_dataset, vx, vertex_emulator):
    frame = reviews(5)
    uri = load(bq_emulator, bq_dataset, frame)
    res = pdbatch.table(uri).llama.batch_predict("Summarize: {text}", backend=vx, model=MODEL,
                                                 custom_id="review_id", max_tokens=64, progress=False)
    [create] = [r.body for r in vertex_emulator.requests_to("POST", "/batchPredictionJobs")]
    source = create["inputConfig"]["bigquerySource"]["inputUri"]
    assert source.startswith(f"bq://{bq_dataset}.reviews_pdbatch_") and source.endswith("_requests")
    assert create["outputConfig"]["bigqueryDestination"]["outputUri"].startswith(f"bq://{bq_dataset}.")
    assert create["model"].endswith("publishers/openai/models/gpt-oss-120b-maas")
    assert res.table.startswith(f"bq://{bq_dataset}.reviews_pdbatch_") and res.count() == 5
    out = res.to_pandas().sort_values("review_id").reset_index(drop=True)
    # the source columns, typed as in the source, then the answer columns
    assert list(out.columns) == ["review_id", "text", "stars", "verified", "custom_id", "response", "finish_reason",
                                 "prompt_tokens", "completion_tokens", "error"]
    assert out.response.tolist() == [f"echo: Summarize: {t}" for t in frame.text]
    assert out.stars.tolist() == frame.stars.tolist() and out.verified.tolist() == frame.verified.tolist()
    assert out.error.isna().all() and out.finish_reason.eq("stop").all() and out.prompt_tokens.gt(0).all()
    assert len(res.sample(2)) == 2
    with pytest.raises(ConfigError, match=r"has 5 rows .* over max_rows=3"):
        res.to_pandas(max_rows=3)
    # the output table exists now: refused unless overwrite=True
    job = res.job
    with pytest.raises(ConfigError, match="exists already"):
        job.result(output=res.table)
    assert job.result(output=res.table, overwrite=True).count() == 5
    again = pdbatch.attach(job.id)
    assert isinstance(again, tablejob.TableJob) and again.result(output=f"bq://{bq_dataset}.again").count() == 5
