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
from pdbatch.backends import _gcp
from pdbatch.backends.vertex import Vertex
from pdbatch.call import Call
from pdbatch.errors import ConfigError, InputError
from pdbatch.jobs import tablejob

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


def test_a_column_of_messages_gives_the_frames_bodies(bq_emulator, bq_dataset, vx):
    frame = pd.DataFrame({"key": [1, 2], "chat": [[{"role": "user", "content": "hi 'there'\n"}],
                                                  [{"role": "user", "content": "a"},
                                                   {"role": "assistant", "content": "b\\"},
                                                   {"role": "user", "content": "c"}]]})
    uri = load(bq_emulator, bq_dataset, frame)
    for system in (None, "sys 'x'"):
        kwargs = dict(messages="chat", system=system, model=MODEL, custom_id="key", max_tokens=9)
        expected = {r.custom_id: r.body for r in frame.llama.to_requests(backend=vx, **kwargs).itertuples()}
        call = Call(messages="chat", system=system, model=MODEL, custom_id="key", params={"max_tokens": 9})
        sql = tablejob.render_call(pdbatch.table(uri), call, vx).rendered.select
        assert bodies_of(bq_emulator.client(), sql) == expected


def test_float_specs_render_as_python_formats_them(bq_emulator, bq_dataset, vx):
    """{x:.2f} is FORMAT('%.2f'): both round the double's exact value (0.125 -> 0.12, 2.675 -> 2.67)."""
    frame = pd.DataFrame({"k": list(range(7)), "price": [0.125, 2.675, 1.005, 3.14159, 1e6, -0.5, 0.0]})
    uri = load(bq_emulator, bq_dataset, frame)
    expected = {r.custom_id: r.body for r in frame.llama.to_requests("{price:.2f}|{price:.0f}", backend=vx,
                                                                     model=MODEL, custom_id="k").itertuples()}
    call = Call(prompt="{price:.2f}|{price:.0f}", model=MODEL, custom_id="k")
    sql = tablejob.render_call(pdbatch.table(uri), call, vx).rendered.select
    assert bodies_of(bq_emulator.client(), sql) == expected
    with pytest.raises(InputError, match=r"\{price\}: column 'price' is FLOAT"):
        tablejob.render_call(pdbatch.table(uri), Call(prompt="{price}", model=MODEL), vx)


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


# ---------------------------------------------------------------- look before you spend
def test_preview_counts_prices_and_creates_nothing(bq_emulator, bq_dataset, vx):
    frame = reviews(6)
    frame.loc[3, "text"] = None
    uri = load(bq_emulator, bq_dataset, frame)
    before = tables(bq_emulator, bq_dataset)
    pv = pdbatch.table(uri).llama.preview("Summarize: {text}", backend=vx, model=MODEL, on_null="skip",
                                          max_tokens=10, prices={"openai/gpt-oss-120b-maas": (1.0, 2.0)})
    sent = frame.dropna(subset=["text"])
    frame_pv = sent.llama.preview("Summarize: {text}", backend=vx, model=MODEL, max_tokens=10)
    assert (pv.n_rows, pv.n_requests, pv.n_skipped, pv.n_jobs) == (6, 5, 1, 1)
    assert pv.prompt_tokens == int(frame_pv.prompt_tokens.sum())  # the frame's approximation, in SQL
    assert pv.estimated_cost == pytest.approx((pv.prompt_tokens * 1.0 + 5 * 10 * 2.0) / 1e6)
    assert isinstance(pv.bytes_processed, int)  # BigQuery's dry run (the emulator answers 0)
    assert "SQL" in pv.token_counts and "prompt tokens" in repr(pv)
    assert tables(bq_emulator, bq_dataset) == before


def test_limits_are_enforced_before_anything_is_created(bq_emulator, bq_dataset, vx, vertex_emulator):
    uri = load(bq_emulator, bq_dataset, reviews(6))
    before = tables(bq_emulator, bq_dataset)
    t = pdbatch.table(uri)
    with pytest.raises(ConfigError, match="6 requests, over max_rows=5; nothing was created"):
        t.llama.submit("{text}", backend=vx, model=MODEL, max_rows=5)
    with pytest.raises(ConfigError, match="over max_cost=1e-09"):
        t.llama.submit("{text}", backend=vx, model=MODEL, max_cost=1e-9, prices={MODEL: (1.0, 1.0)})
    with pytest.raises(InputError, match=r"\{title\} is not a column of the table .*'review_id', 'text', 'stars'"):
        t.llama.submit("{title}", backend=vx, model=MODEL)
    with pytest.raises(InputError, match=r"\{text!r\}.*no exact SQL equivalent"):
        t.llama.submit("{text!r}", backend=vx, model=MODEL)
    with pytest.raises(ConfigError, match="exists already"):
        t.llama.submit("{text}", backend=vx, model=MODEL, output=uri)
    with pytest.raises(ConfigError, match="cannot run a job on a BigQuery table"):
        t.llama.submit("{text}", backend="local", model=MODEL)
    with pytest.raises(ConfigError, match="Cloud Storage only"):
        t.llama.embed("{text}", backend=vx)  # Gemini embeddings read their own lines, not a table
    with pytest.raises(ConfigError, match=r"gemini-3.5-flash reads Gemini request lines.*open chat models only"):
        t.llama.submit("{text}", backend=Vertex(**{**vx.settings(), "location": "global"}), model="gemini-3.5-flash")
    maverick = "meta/llama-4-maverick-17b-128e-instruct-maas"
    vertex_emulator.live_models.discard(f"publishers/{maverick.replace('/', '/models/')}")
    with pytest.raises(ConfigError, match="llama-4-maverick"):  # Model Garden: not served
        t.llama.submit("{text}", backend=vx, model=maverick)
    assert tables(bq_emulator, bq_dataset) == before
    assert not vertex_emulator.requests_to("POST", "/batchPredictionJobs")


class MessageCheckingVertex(Vertex):
    """Vertex whose open model also checks each body's messages: a model that runs on tables and checks them.

    Vertex's own such models (Gemini) cannot run on tables at all (refused
    above); this is the rule a table job keeps for any that could.
    """

    def checks_messages(self, model, kind):  # type: ignore[no-untyped-def]
        return True


def test_a_messages_column_for_a_model_that_checks_each_rows_messages_is_refused_naming_it(
        bq_emulator, bq_dataset, vx, vertex_emulator):
    frame = pd.DataFrame({"key": [1, 2], "chat": [[{"role": "user", "content": "hi"}],
                                                  [{"role": "tool", "content": "42"}]]})
    uri = load(bq_emulator, bq_dataset, frame, name="t_checked")
    before = tables(bq_emulator, bq_dataset)
    checking = MessageCheckingVertex(**vx.settings())
    for run in (pdbatch.table(uri).llama.preview, pdbatch.table(uri).llama.submit):
        with pytest.raises(ConfigError, match=r"messages='chat': openai/gpt-oss-120b-maas cannot take some "
                                              r"messages, and a table job's rows are not read here.*"
                                              r"df\.llama\.batch_predict\(messages='chat'"):
            run(messages="chat", model=MODEL, backend=checking, custom_id="key")
    assert tables(bq_emulator, bq_dataset) == before
    assert not vertex_emulator.requests_to("POST", "/batchPredictionJobs")
    # a model that takes any messages runs the same table
    assert pdbatch.table(uri).llama.preview(messages="chat", model=MODEL, backend=vx).n_requests == 2


def test_a_table_in_another_region_is_refused_before_anything_is_created(bq_emulator, vx, vertex_emulator):
    dataset = bigquery.Dataset(f"{bq_emulator.project}.eu_reviews")
    dataset.location = "europe-west4"
    bq_emulator.client().create_dataset(dataset, exists_ok=True)
    uri = load(bq_emulator, f"{bq_emulator.project}.eu_reviews", reviews(2), name="t_region")
    before = tables(bq_emulator, f"{bq_emulator.project}.eu_reviews")
    with pytest.raises(ConfigError, match="is in europe-west4, but the Vertex AI job runs in us-central1"):
        pdbatch.table(uri).llama.submit("{text}", backend=vx, model=MODEL)
    assert tables(bq_emulator, f"{bq_emulator.project}.eu_reviews") == before
    assert not vertex_emulator.requests_to("POST", "/batchPredictionJobs")


@pytest.mark.parametrize("column", ["body", "response", "id", "status"])
def test_reserved_columns_are_refused_or_renamed(bq_emulator, bq_dataset, vx, column):
    frame = reviews(3).rename(columns={"stars": column})
    uri = load(bq_emulator, bq_dataset, frame)
    t = pdbatch.table(uri)
    with pytest.raises(ConfigError, match=rf"\['{column}'\].*rename_reserved=True.*input_{column}"):
        t.llama.preview("{text}", backend=vx, model=MODEL)
    res = t.llama.batch_predict("{text}", backend=vx, model=MODEL, rename_reserved=True, progress=False)
    out = res.to_pandas()
    assert sorted(out[f"input_{column}"]) == [1, 2, 3] and out.error.isna().all()


def test_the_emulator_fails_a_job_over_the_per_job_limit(bq_emulator, bq_dataset, vx, vertex_emulator):
    uri = load(bq_emulator, bq_dataset, reviews(3))
    vertex_emulator.max_requests = 2
    job = pdbatch.table(uri).llama.submit("{text}", backend=vx, model=MODEL, progress=False)  # vx allows 200,000
    with pytest.raises(pdbatch.JobError, match="3 instances, over the limit of 2"):
        job.wait(progress=False).result()


def test_a_creation_that_drops_its_connection_is_adopted_not_repeated(bq_emulator, bq_dataset, vx, vertex_emulator):
    uri = load(bq_emulator, bq_dataset, reviews(3))
    vertex_emulator.faults.create_then = ["drop"]  # the job was created, the answer lost
    job = pdbatch.table(uri).llama.submit("{text}", backend=vx, model=MODEL, progress=False)
    assert len(vertex_emulator.jobs) == 1 and job.id.endswith("/" + next(iter(vertex_emulator.jobs)))
    assert job.wait(progress=False).result().count() == 3


def test_a_job_creation_that_fails_leaves_no_request_table(bq_emulator, bq_dataset, vx, vertex_emulator):
    uri = load(bq_emulator, bq_dataset, reviews(3))
    before = tables(bq_emulator, bq_dataset)
    vertex_emulator.faults.create_errors = [400]
    with pytest.raises(Exception, match="Injected error 400"):
        pdbatch.table(uri).llama.submit("{text}", backend=vx, model=MODEL)
    assert tables(bq_emulator, bq_dataset) == before


# ---------------------------------------------------------------- splitting, failures, skips, schema
def test_past_the_per_job_limit_the_requests_split_into_several_jobs(bq_emulator, bq_dataset, vertex_emulator):
    vx = Vertex(project=vertex_emulator.project, location=LOCATION, api_endpoint=vertex_emulator.url,
                poll_seconds=0.05, max_requests_per_job=4)
    vertex_emulator.max_requests = 4  # a job over it fails: the split must hold
    frame = reviews(10)
    uri = load(bq_emulator, bq_dataset, frame)
    assert pdbatch.table(uri).llama.preview("{text}", backend=vx, model=MODEL).n_jobs == 3
    job = pdbatch.table(uri).llama.submit("{text}", backend=vx, model=MODEL, custom_id="review_id")
    creates = [r.body for r in vertex_emulator.requests_to("POST", "/batchPredictionJobs")]
    counts = [int(c["labels"]["pdbatch_requests"]) for c in creates]
    assert len(job.ids) == len(creates) >= 3 and sum(counts) == 10 and max(counts) <= 4
    assert len({c["inputConfig"]["bigquerySource"]["inputUri"] for c in creates}) == len(creates)
    out = job.wait(progress=False).result().to_pandas()
    assert sorted(out.custom_id) == sorted(frame.review_id) and out.error.isna().all()
    assert sorted(out.response) == sorted(f"echo: {t}" for t in frame.text)


def test_retry_failed_reruns_only_the_failures_into_a_merged_table(bq_emulator, bq_dataset, vx, vertex_emulator):
    uri = load(bq_emulator, bq_dataset, reviews(5))
    vertex_emulator.faults.row_errors = {"id-1", "id-3"}
    res = pdbatch.table(uri).llama.batch_predict("{text}", backend=vx, model=MODEL, custom_id="review_id",
                                                 progress=False)
    first = res.to_pandas().set_index("custom_id")
    assert sorted(first.index[first.error.notna()]) == ["id-1", "id-3"] and res.failed() == 2
    assert first.loc["id-1", "error"].startswith("Bad Request")
    vertex_emulator.faults.row_errors = set()
    merged = pdbatch.table(res.table).llama.retry_failed(progress=False)  # finds the job that wrote it
    out = merged.to_pandas().set_index("custom_id").sort_index()
    assert out.error.isna().all() and len(out) == 5 and merged.failed() == 0
    retried = [r.body for r in vertex_emulator.requests_to("POST", "/batchPredictionJobs")][-1]
    assert retried["labels"]["pdbatch_requests"] == "2"  # only the failures were sent again
    assert res.count() == 5 and res.failed() == 2  # the first result table is left as it was


def test_skipped_rows_come_back_with_their_error(bq_emulator, bq_dataset, vx):
    frame = reviews(4)
    frame.loc[2, "text"] = None
    uri = load(bq_emulator, bq_dataset, frame)
    out = pdbatch.table(uri).llama.batch_predict("{text} ({stars})", backend=vx, model=MODEL,
                                                 custom_id="review_id", on_null="skip", progress=False).to_pandas()
    out = out.set_index("custom_id").sort_index()
    assert len(out) == 4 and out.loc["id-2", "error"] == "skipped: null in column(s) 'text'"
    assert out.drop(index="id-2").error.isna().all() and pd.isna(out.loc["id-2", "response"])


def test_schema_columns_are_read_in_sql(bq_emulator, bq_dataset, vx):
    uri = load(bq_emulator, bq_dataset, reviews(3))
    schema = {"type": "object", "properties": {"label": {"type": "string"}, "score": {"type": "integer"},
                                               "sure": {"type": "boolean"}}, "required": ["label", "score", "sure"]}
    out = pdbatch.table(uri).llama.batch_predict("{text}", backend=vx, model=MODEL, schema=schema,
                                                 progress=False).to_pandas()
    assert out.score.tolist() == [1, 1, 1] and out.sure.all() and out.label.str.startswith("echo: ").all()


# ---------------------------------------------------------------- command line
def test_cli_submit_and_results_keep_the_table_in_bigquery(bq_emulator, bq_dataset, vertex_emulator, monkeypatch,
                                                           capsys):
    from pdbatch.cli import commands as cli

    for key, value in {"PROJECT": vertex_emulator.project, "LOCATION": LOCATION,
                       "API_ENDPOINT": vertex_emulator.url, "POLL_SECONDS": "0.05"}.items():
        monkeypatch.setenv(f"PDBATCH_VERTEX_{key}", value)
    uri = load(bq_emulator, bq_dataset, reviews(3))
    out = f"bq://{bq_dataset}.cli_out"
    assert cli.main(["submit", uri, "--prompt", "Classify: {text}", "--backend", "vertex", "--model", MODEL,
                     "--custom-id", "review_id", "--output", out]) == 0
    job_id = capsys.readouterr().out.strip()
    assert job_id.startswith(f"projects/{vertex_emulator.project}/locations/{LOCATION}/batchPredictionJobs/")
    assert cli.main(["wait", job_id, "-q"]) == 0
    assert cli.main(["results", job_id, "-o", "out.csv"]) == 2  # a table job's result stays in BigQuery
    capsys.readouterr()
    assert cli.main(["results", job_id]) == 0
    assert capsys.readouterr().out.strip() == out
    assert cli.main(["results", job_id, "--output", f"bq://{bq_dataset}.cli_again"]) == 0
    rows = list(bq_emulator.client().query(f"SELECT review_id, response FROM `{bq_dataset}.cli_again`").result())
    assert sorted(r["response"] for r in rows) == sorted(f"echo: Classify: {t}" for t in reviews(3).text)
    assert cli.main(["results", job_id]) == 2  # exists already
    assert "exists already" in capsys.readouterr().err
