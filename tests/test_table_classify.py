"""``table.llama.classify``: a BigQuery table labelled with a frame's classify requests, the labels read in SQL.

Against the BigQuery and Vertex AI emulators with the real Google clients, as
tests/test_table.py (whose table helpers these tests use).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import _gcp
from pdbatch.backends.vertex import Vertex
from pdbatch.call import Call
from pdbatch.errors import ConfigError
from pdbatch.results import classify
from tests.test_table import LOCATION, MODEL, NASTY, bodies_of, load, reviews, tables

pytestmark = pytest.mark.slow

LABELS = ["positive", "négatif", "it's mixed"]
PROMPT = "Review ({stars} stars, verified={verified}):\n'{text}' \\ \"end\"\nSentiment?"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(_gcp, "BACKOFF", 0.01)


@pytest.fixture
def vx(vertex_emulator) -> Vertex:
    return Vertex(project=vertex_emulator.project, location=LOCATION, api_endpoint=vertex_emulator.url,
                  poll_seconds=0.05)


def test_classify_bodies_equal_the_frames(bq_emulator, bq_dataset, vx):
    frame = reviews(len(NASTY) + 2)
    uri = load(bq_emulator, bq_dataset, frame)
    system = "Be 'brief'\\\n\"ok\""
    spec = classify.LabelSpec.make(LABELS)
    call = Call(prompt=PROMPT, system=system, model=MODEL, custom_id="review_id", classify=spec.record())
    lines = classify.plan_requests(frame, call, vx).to_frame()
    expected = {r.custom_id: (json.loads(r.body) if isinstance(r.body, str) else r.body) for r in lines.itertuples()}
    pv = pdbatch.table(uri).llama.preview(PROMPT, labels=LABELS, system=system, backend=vx, model=MODEL,
                                          custom_id="review_id")
    got = bodies_of(bq_emulator.client(), pv.sql)
    assert got == expected
    body = got["id-0"]  # what makes it a classify request on a backend without label scores
    assert body["temperature"] == 0
    assert body["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == LABELS


def test_classify_preview_counts_and_prices_as_the_frames(bq_emulator, bq_dataset, vx):
    frame = reviews(6)
    uri = load(bq_emulator, bq_dataset, frame)
    before = tables(bq_emulator, bq_dataset)
    prices = {MODEL: (1.0, 2.0)}
    pv = pdbatch.table(uri).llama.preview("Sentiment of: {text}", labels=LABELS, backend=vx, model=MODEL,
                                          prices=prices)
    frame_pv = frame.llama.preview("Sentiment of: {text}", labels=LABELS, backend=vx, model=MODEL)
    assert (pv.n_rows, pv.n_requests) == (6, 6)
    assert pv.prompt_tokens == int(frame_pv.prompt_tokens.sum())
    assert pv.max_tokens == frame_pv.max_tokens and pv.max_tokens
    assert pv.estimated_cost == pytest.approx((pv.prompt_tokens * 1.0 + 6 * pv.max_tokens * 2.0) / 1e6)
    assert tables(bq_emulator, bq_dataset) == before


def _answer(client, predictions: str, custom_id: str, content: str) -> None:
    """Make the service's answer to one row ``content`` (the emulator always picks the first label)."""
    response = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}]}
    client.query(f"UPDATE `{predictions[len('bq://'):]}` SET response = PARSE_JSON(@r) WHERE custom_id = @id",
                 job_config=_params(r=json.dumps(response), id=custom_id)).result()


def _params(**values):
    from google.cloud import bigquery

    return bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter(k, "STRING", v)
                                                     for k, v in values.items()])


def test_classify_writes_the_label_columns_in_sql(bq_emulator, bq_dataset, vx, vertex_emulator):
    frame = reviews(6)
    frame.loc[5, "text"] = None
    uri = load(bq_emulator, bq_dataset, frame)
    vertex_emulator.faults.row_errors = {"id-1"}
    out_uri = f"bq://{bq_dataset}.labelled"
    job = pdbatch.table(uri).llama.classify("Sentiment of: {text}", labels=LABELS, output_column="sentiment",
                                            backend=vx, model=MODEL, custom_id="review_id", on_null="skip",
                                            output=out_uri, wait=False, progress=False)
    job.wait(progress=False)
    [predictions] = job.spec["outputs"]
    client = bq_emulator.client()
    _answer(client, predictions, "id-2", json.dumps({"label": "maybe"}))  # valid JSON, not a label
    _answer(client, predictions, "id-3", '{"label": "posi')  # cut short: not JSON
    _answer(client, predictions, "id-4", json.dumps({"label": LABELS[2]}))  # another label: quoted in SQL
    res = job.result()
    assert res.table == out_uri
    columns = {f.name: f.field_type for f in client.get_table(out_uri[len("bq://"):]).schema}
    assert list(columns)[-6:] == ["custom_id", "sentiment", "p_positive", "p_négatif", "p_it's mixed", "error"]
    assert {columns[f"p_{label}"] for label in LABELS} == {"FLOAT"}  # FLOAT64, as a frame's NaN columns
    assert not {"response", "finish_reason", "prompt_tokens", "completion_tokens"} & set(columns)
    out = res.to_pandas().set_index("review_id").sort_index()
    assert out[[f"p_{label}" for label in LABELS]].isna().all().all()  # Vertex gives no label probabilities
    assert out.loc["id-0", "sentiment"] == LABELS[0]  # the emulator's pick
    assert out.loc["id-4", "sentiment"] == LABELS[2]
    assert out.loc[["id-0", "id-4"], "error"].isna().all()
    assert pd.isna(out.loc["id-1", "sentiment"]) and out.loc["id-1", "error"].startswith("Bad Request")
    assert pd.isna(out.loc["id-2", "sentiment"])
    assert out.loc["id-2", "error"] == "answer 'maybe' is not one of the labels"
    assert pd.isna(out.loc["id-3", "sentiment"])
    assert out.loc["id-3", "error"] == "answer is not a label: '{\"label\": \"posi'"
    assert pd.isna(out.loc["id-5", "sentiment"]) and out.loc["id-5", "error"] == "skipped: null in column(s) 'text'"
    assert out.text.tolist()[:5] == frame.text.tolist()[:5]  # the source's columns pass through

    # the failed rows run again and the merged table has the same columns
    vertex_emulator.faults.row_errors = set()
    merged = res.retry_failed(progress=False).to_pandas().set_index("review_id").sort_index()
    assert list(merged.columns) == list(out.columns)
    assert merged.sentiment.tolist()[:5] == [LABELS[0]] * 4 + [LABELS[2]] and merged.error.iloc[:5].isna().all()
    assert merged.loc["id-5", "error"] == "skipped: null in column(s) 'text'"


def test_classify_batch_predicts_by_default(bq_emulator, bq_dataset, vx):
    uri = load(bq_emulator, bq_dataset, reviews(3))
    res = pdbatch.table(uri).llama.classify("{text}", labels=["yes", "no"], backend=vx, model=MODEL,
                                            progress=False)
    out = res.to_pandas()
    assert out.label.eq("yes").all() and out.error.isna().all() and out[["p_yes", "p_no"]].isna().all().all()


def test_classify_refusals_come_before_anything_is_created(bq_emulator, bq_dataset, vx, vertex_emulator):
    frame = reviews(3).rename(columns={"stars": "Label"})  # BigQuery's column names ignore case
    uri = load(bq_emulator, bq_dataset, frame)
    before = tables(bq_emulator, bq_dataset)
    t = pdbatch.table(uri)
    with pytest.raises(ConfigError, match="at least 2 labels"):  # the frames' label checks
        t.llama.classify("{text}", labels=["only"], backend=vx, model=MODEL)
    with pytest.raises(ConfigError, match="differs from 'yes' only in whitespace"):
        t.llama.classify("{text}", labels=["yes", " yes"], backend=vx, model=MODEL)
    with pytest.raises(ConfigError, match=r"'p_Yes' and 'p_yes'.*ignore case"):
        t.llama.classify("{text}", labels=["Yes", "yes"], output_column="answer", backend=vx, model=MODEL)
    with pytest.raises(ConfigError, match=r"label 'a.b' .*cannot hold \['\.'\]"):
        t.llama.classify("{text}", labels=["a.b", "c"], output_column="answer", backend=vx, model=MODEL)
    with pytest.raises(ConfigError, match="output_column='error' collides with another result column"):
        t.llama.classify("{text}", labels=["yes", "no"], output_column="error", backend=vx, model=MODEL)
    with pytest.raises(ConfigError, match="output_column=: BigQuery reserves column names starting with"):
        t.llama.classify("{text}", labels=["yes", "no"], output_column="_partition_label", backend=vx, model=MODEL)
    with pytest.raises(ConfigError, match="the label column is output_column='sentiment'"):
        t.llama.classify("{text}", labels=["yes", "no"], output="sentiment", backend=vx, model=MODEL)
    with pytest.raises(ConfigError, match=r"column\(s\) \['Label'\].*overwrite=True"):
        t.llama.classify("{text}", labels=["yes", "no"], backend=vx, model=MODEL)
    with pytest.raises(ConfigError, match="cannot run a job on a BigQuery table"):
        t.llama.classify("{text}", labels=["yes", "no"], backend="local")
    with pytest.raises(ConfigError, match="over max_rows=2"):
        t.llama.classify("{text}", labels=["yes", "no"], output_column="answer", backend=vx, model=MODEL,
                         max_rows=2)
    assert tables(bq_emulator, bq_dataset) == before
    assert not vertex_emulator.requests_to("POST", "/batchPredictionJobs")
    # overwrite=True: the label column replaces the source's column of that name
    res = t.llama.classify("{text}", labels=["yes", "no"], backend=vx, model=MODEL, overwrite=True, progress=False)
    assert res.to_pandas().label.eq("yes").all()


def test_cli_labels_classify_a_table(bq_emulator, bq_dataset, vertex_emulator, monkeypatch, capsys):
    from pdbatch.cli import commands as cli

    for key, value in {"PROJECT": vertex_emulator.project, "LOCATION": LOCATION,
                       "API_ENDPOINT": vertex_emulator.url, "POLL_SECONDS": "0.05"}.items():
        monkeypatch.setenv(f"PDBATCH_VERTEX_{key}", value)
    uri = load(bq_emulator, bq_dataset, reviews(3))
    out = f"bq://{bq_dataset}.cli_labels"
    base = ["--prompt", "Sentiment: {text}", "--backend", "vertex", "--model", MODEL, "--labels", "good", "bad"]
    assert cli.main(["run", uri, *base, "--max-tokens", "5"]) == 2  # as for a frame: classify sets the body
    assert "drop --max-tokens" in capsys.readouterr().err
    assert cli.main(["run", uri, *base, "--custom-id", "review_id", "--output", out]) == 0
    assert capsys.readouterr().out.strip() == out
    rows = list(bq_emulator.client().query(f"SELECT * FROM `{out[len('bq://'):]}`").result())
    assert sorted(r["custom_id"] for r in rows) == ["id-0", "id-1", "id-2"]
    assert {(r["label"], r["p_good"], r["p_bad"], r["error"]) for r in rows} == {("good", None, None, None)}


def test_a_source_column_that_differs_from_a_result_column_in_case_only_clashes(bq_emulator, bq_dataset, vx):
    # BigQuery's column names ignore case: the result table could not hold both (its CREATE would fail
    # after the job has run), so this is refused before anything is created, as an exact clash is
    uri = load(bq_emulator, bq_dataset, reviews(2).rename(columns={"stars": "Finish_Reason"}))
    before = tables(bq_emulator, bq_dataset)
    with pytest.raises(ConfigError, match=r"\['Finish_Reason'\], which the result table would also have"):
        pdbatch.table(uri).llama.submit("{text}", backend=vx, model=MODEL)
    assert tables(bq_emulator, bq_dataset) == before
    out = pdbatch.table(uri).llama.batch_predict("{text}", backend=vx, model=MODEL, overwrite=True,
                                                 progress=False).to_pandas()
    assert "Finish_Reason" not in out.columns and out.finish_reason.eq("stop").all()
