"""``df.llama.classify``: labels checked before anything runs, label scores on the engine, enum schemas elsewhere."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import pdbatch
from pdbatch import run
from pdbatch.backends import Local
from pdbatch.backends.mock import Mock
from pdbatch.builders.datasets import reviews
from pdbatch.call import Call
from pdbatch.cli import commands as cli
from pdbatch.errors import ConfigError, InputError
from pdbatch.jobs.reuse import plan_reuse
from pdbatch.results.classify import CONTENT_FREE, FIELD, LabelSpec, probabilities

LABELS = ["positive", "negative", "mixed", "neutral"]
PROMPT = "Classify the sentiment of this product review as positive, negative, mixed or neutral.\n\nReview: {review}"


def jobs_submitted(home) -> list:
    folder = home / "jobs"
    return sorted(folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------ bad input, before anything runs
@pytest.mark.parametrize(("labels", "says"), [
    (["positive"], "at least 2 labels"),
    ([], "at least 2 labels"),
    (["positive", "positive"], "is repeated"),
    (["positive", " positive "], "only in whitespace"),
    (["very good", "very  good"], "only in whitespace"),
    (["positive", ""], "is empty"),
    (["positive", "   "], "is empty"),
    (["positive", 3], "is not a string"),
    ("positive", "must be a list"),
    ({"positive", "negative"}, "a set has no order"),
    ([f"label {i}" for i in range(51)], "embed the rows"),
])
def test_bad_labels_are_refused_before_anything_runs(labels, says, pdbatch_home):
    df = pd.DataFrame({"review": ["Great.", "Awful."]})
    with pytest.raises(ConfigError, match=says):
        df.llama.classify("Review: {review}", labels=labels)
    assert jobs_submitted(pdbatch_home) == []


def test_one_model_at_a_time(pdbatch_home):
    df = pd.DataFrame({"review": ["Great."]})
    with pytest.raises(ConfigError, match="one model name"):
        df.llama.classify("Review: {review}", labels=["good", "bad"], model=["smollm2", "smollm2"])
    assert jobs_submitted(pdbatch_home) == []


def test_fifty_labels_are_accepted_and_output_must_not_clash_with_a_probability_column():
    assert len(LabelSpec.make([f"l{i}" for i in range(50)]).labels) == 50
    for clash in ("p_a", "error"):
        with pytest.raises(ConfigError, match="collides with another result column"):
            LabelSpec.make(["a", "b"], output=clash)


def test_a_result_column_the_frame_has_is_refused_unless_overwrite(pdbatch_home):
    df = pd.DataFrame({"review": ["Great."], "p_good": [1.0]})
    with pytest.raises(ConfigError, match=r"p_good.*overwrite=True"):
        df.llama.classify("Review: {review}", labels=["good", "bad"], backend=Mock())
    out = df.llama.classify("Review: {review}", labels=["good", "bad"], backend=Mock(), overwrite=True,
                            progress=False)
    # Mock echoes the prompt: no label in it, so the row fails with why, and the old column is replaced
    assert out["p_good"].isna().all() and out["label"].isna().all()
    assert out["error"].str.contains("answer is not a label").all()


def test_calibration_subtracts_the_mean_content_free_log_probabilities_then_softmax():
    raw = [np.log(0.6), np.log(0.4)]
    free = [[np.log(0.9), np.log(0.1)], [np.log(0.7), np.log(0.3)]]
    p = probabilities(raw, free)
    shift = np.mean(free, axis=0)
    expected = np.exp(np.array(raw) - shift) / np.exp(np.array(raw) - shift).sum()
    assert np.allclose(p, expected) and p.sum() == pytest.approx(1.0)
    assert p.argmax() == 1  # the model's lean to the first label is taken out
    assert probabilities(raw, []).argmax() == 0


# ------------------------------------------------------------------ what travels in the request lines
def bodies(frame, call, backend) -> list[dict]:
    return [line["body"] for line in run.plan(frame, call, backend)[0].to_frame().to_dict("records")]


def test_a_scoring_backend_gets_the_labels_and_the_content_free_fillings_as_data():
    df = pd.DataFrame({"review": ["Great {stuff}.", "Awful."], "stars": ["5", "1"]})
    labels = ["{review}", "<|im_end|>", "plain"]  # braces and a special token's text: data, never template
    spec = LabelSpec.make(labels, prefix="Verdict:")
    call = Call(prompt="Stars {stars}. Review: {review}", system="Be brief.", classify=spec.record())
    [first, _] = bodies(df, call, Local())
    field = first[FIELD]
    assert field["labels"] == labels and field["prefix"] == "Verdict:"
    assert first["messages"][1]["content"] == "Stars 5. Review: Great {stuff}."
    assert [m[1]["content"] for m in field["content_free"]] == [f"Stars {x}. Review: {x}" for x in CONTENT_FREE]
    assert all(m[0] == {"role": "system", "content": "Be brief."} for m in field["content_free"])
    assert first["temperature"] == 0 and "response_format" not in first
    uncalibrated = bodies(df, Call(prompt="Review: {review}", classify=LabelSpec.make(
        ["a", "b"], calibrate=False).record()), Local())
    assert uncalibrated[0][FIELD]["content_free"] == []


def test_other_backends_get_an_enum_schema_and_no_scoring_field():
    df = pd.DataFrame({"review": ["Great."]})
    call = Call(prompt="Review: {review}", classify=LabelSpec.make(["good", "bad"]).record())
    [body] = bodies(df, call, Mock())
    assert FIELD not in body
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"] == ["good", "bad"] and schema["required"] == ["label"]


def test_cache_key_covers_labels_calibration_prefix_and_method(monkeypatch):
    df = pd.DataFrame({"review": ["Great."]})
    backend = Local()

    def key(**kw) -> str:
        spec = LabelSpec.make(kw.pop("labels", ["good", "bad"]), **kw)
        planned = run.plan(df, Call(prompt="Review: {review}", classify=spec.record()), backend)[0]
        [k] = plan_reuse(planned, backend, True).keys  # the cache is empty: the one row is sent, with its key
        return str(k)

    base = key()
    assert key() == base
    variants = [key(labels=["good", "bad", "meh"]), key(calibrate=False), key(prefix="Verdict:")]
    assert len({base, *variants}) == 4
    monkeypatch.setattr("pdbatch.results.classify.METHOD", "other/2")
    assert key() != base


def test_preview_shows_what_classify_would_send():
    df = reviews().head(3)
    with pytest.raises(ConfigError, match=r"\['label'\]"):  # the reviews' own label column: a clash
        df.llama.preview(PROMPT, labels=LABELS)
    pv = df.llama.preview(PROMPT, labels=LABELS, output="sentiment")
    body = pv.requests["body"].iloc[0]
    assert body[FIELD]["labels"] == LABELS and "[MASK]" in json.dumps(body[FIELD]["content_free"])
    assert pv.n_rows == pv.n_requests == 3 and not pv.max_tokens_default
    assert FIELD in pv._repr_html_()


def test_a_label_longer_than_the_context_window_is_refused(pdbatch_home):
    df = pd.DataFrame({"review": ["Great."]})
    with pytest.raises(InputError, match="longer than the model's context window"):
        df.llama.classify("Review: {review}", labels=["good", "word " * 200], backend=Local(n_ctx=64))
    assert jobs_submitted(pdbatch_home) == []


def test_cli_refuses_labels_with_body_fields_and_with_request_files(tmp_path, capsys):
    data = tmp_path / "r.csv"
    reviews().head(2).to_csv(data, index=False)
    assert cli.main(["run", str(data), "--prompt", "Review: {review}", "--labels", "good"]) == cli.EXIT_USAGE
    assert "at least 2 labels" in capsys.readouterr().err
    assert cli.main(["run", str(data), "--prompt", "Review: {review}", "--labels", "good", "bad",
                     "--max-tokens", "4"]) == cli.EXIT_USAGE
    assert "drop --max-tokens" in capsys.readouterr().err
    lines = tmp_path / "requests.jsonl"
    lines.write_text(json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                                 "body": {"messages": [{"role": "user", "content": "hi"}]}}) + "\n")
    assert cli.main(["run", str(lines), "--labels", "good", "bad"]) == cli.EXIT_USAGE
    assert "not to a request file" in capsys.readouterr().err


# ------------------------------------------------------------------ the real engine
@pytest.mark.slow
def test_classify_on_the_local_engine_labels_the_bundled_reviews_well_above_chance():
    df = reviews()
    out = df.llama.classify(PROMPT, labels=LABELS, answer_prefix="Sentiment:", output="sentiment", progress=False)
    assert out.error.isna().all(), out.error.dropna().tolist()[:3]
    probs = out[[f"p_{x}" for x in LABELS]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0) and (probs >= 0).all()
    assert (out["sentiment"] == np.array(LABELS)[probs.argmax(axis=1)]).all()
    accuracy = (out["sentiment"] == df["label"]).mean()
    assert accuracy >= 0.6, accuracy  # chance is 25%; 4 labels, 60 rows (measured: see README)
    assert {"response", "finish_reason"}.isdisjoint(out.columns) and list(out.index) == list(df.index)
    raw = df.llama.classify(PROMPT, labels=LABELS, answer_prefix="Sentiment:", output="sentiment", calibrate=False,
                            progress=False)
    assert raw.error.isna().all()
    assert not np.allclose(raw[[f"p_{x}" for x in LABELS]].to_numpy(), probs)
    assert (raw["sentiment"] != out["sentiment"]).any()  # calibration changes answers, not only numbers


@pytest.mark.slow
def test_labels_sharing_a_first_token_are_told_apart_and_wait_false_gives_a_job():
    df = pd.DataFrame({"review": ["Absolutely wonderful, I love it, best purchase ever.",
                                  "Terrible. It broke on day one and I want my money back."]})
    job = df.llama.classify("Review: {review}", labels=["very positive", "very negative"], output="verdict",
                            wait=False, progress=False)
    assert isinstance(job, pdbatch.BatchJob)
    out = job.wait(progress=False).result()
    assert out.error.isna().all(), out.error.tolist()
    assert out["verdict"].tolist() == ["very positive", "very negative"]
    assert (out["p_very positive"] != out["p_very negative"]).all()
    # labels that look like template fields or special tokens are scored as plain text
    odd = df.llama.classify("Review: {review}", labels=["{review}", "<|im_end|>", "good"], progress=False)
    assert odd.error.isna().all(), odd.error.tolist()
    assert np.allclose(odd[["p_{review}", "p_<|im_end|>", "p_good"]].sum(axis=1), 1.0)


@pytest.mark.slow
def test_cli_labels_writes_the_label_and_probabilities(tmp_path):
    data, result = tmp_path / "r.csv", tmp_path / "out.csv"
    reviews().head(4).drop(columns="label").to_csv(data, index=False)
    code = cli.main(["run", str(data), "--prompt", PROMPT, "--labels", *LABELS, "-o", str(result), "-q"])
    out = pd.read_csv(result)
    assert code == cli.EXIT_OK
    assert set(out["label"]) <= set(LABELS) and np.allclose(out[[f"p_{x}" for x in LABELS]].sum(axis=1), 1)


@pytest.mark.slow
def test_greedy_parity_with_llama_cpp_python_one_row_at_a_time():
    """The engine's scores (shared KV, reused prefixes) give the labels that llama-cpp-python's do row by row."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from pdbatch.engine.llama import load_llama
    from pdbatch.engine.score import log_softmax
    from pdbatch.models import resolve_local

    df = reviews().iloc[::10]
    labels, prefix = ["positive", "negative", "so-so"], "Sentiment:"  # "so-so" is several tokens
    out = df.llama.classify(PROMPT, labels=labels, answer_prefix=prefix, calibrate=False, output="sentiment",
                            backend=Local(dtype="file"), progress=False)
    llm = load_llama(str(resolve_local(None, "chat").weights()), n_ctx=512, logits_all=True, verbose=False)
    template = llm.metadata["tokenizer.chat_template"]
    fmt = Jinja2ChatFormatter(template=template, eos_token=llm._model.token_get_text(llm.token_eos()),
                              bos_token=llm._model.token_get_text(llm.token_bos()))

    def scores(text: str) -> np.ndarray:
        rendered = fmt(messages=[{"role": "user", "content": text}])
        head = rendered.prompt + prefix
        start = llm.tokenize(head.encode(), add_bos=not rendered.added_special, special=True)
        llm.reset()
        llm.eval(start)  # the prompt once; each label then goes on from it (eval cuts the cache at n_tokens)
        result = []
        for label in labels:
            full = llm.tokenize((head + " " + label).encode(), add_bos=not rendered.added_special, special=True)
            assert full[: len(start)] == start  # the label tokenises the same alone as in context
            cont = full[len(start):]
            llm.n_tokens = len(start)
            if len(cont) > 1:
                llm.eval(cont[:-1])
            result.append(sum(log_softmax(llm.scores[len(start) - 1 + k])[t] for k, t in enumerate(cont)))
        return np.array(result)

    expected = np.array([probabilities(scores(PROMPT.format(review=r)), []) for r in df["review"]])
    got = out[[f"p_{x}" for x in labels]].to_numpy()
    assert out["sentiment"].tolist() == [labels[i] for i in expected.argmax(axis=1)]
    # in log space, so that an unlikely label's score counts as much as a likely one's
    assert np.abs(np.log(got) - np.log(expected)).max() < 0.05, np.abs(np.log(got) - np.log(expected)).max()


@pytest.mark.slow
def test_vertex_gets_the_enum_schema_and_nan_probabilities(vertex_emulator, gcs_bucket, gcs_emulator):
    from pdbatch.backends.vertex import Vertex
    from tests.backends.test_vertex import CHAT, creates
    from tests.backends.test_vertex_service import staged_lines

    vx = Vertex(project=vertex_emulator.project, staging=f"gs://{gcs_bucket}/pdbatch/", location="us-central1",
                api_endpoint=vertex_emulator.url, poll_seconds=0.05)
    df = reviews().head(3)
    out = df.llama.classify(PROMPT, labels=LABELS, backend=vx, model=CHAT, output="sentiment", progress=False)
    assert out.error.isna().all(), out.error.tolist()
    assert out["sentiment"].tolist() == ["positive"] * 3  # the emulator answers an enum with its first value
    assert out[[f"p_{x}" for x in LABELS]].isna().all().all()
    [line, *_] = staged_lines(gcs_emulator, creates(vertex_emulator)[0])
    body = line["body"]
    assert body["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == LABELS
    assert FIELD not in body and body["temperature"] == 0



def test_retry_failed_sends_the_failed_rows_again_with_the_labels(pdbatch_home):
    df = pd.DataFrame({"review": ["Great.", "Awful."]})
    # A failure of the service (not cached), then the job's backend rebuilt for the retry, which answers.
    flaky = Mock(fail=lambda cid, body: "503: overloaded")
    out = df.llama.classify("Review: {review}", labels=["good", "bad"], backend=flaky, progress=False)
    assert out["error"].str.contains("overloaded").all()
    again = out.llama.retry_failed(progress=False)
    assert list(again.columns) == list(out.columns) == ["review", "label", "p_good", "p_bad", "error"]
    assert len(jobs_submitted(pdbatch_home)) == 2, "the failed rows were not sent again"
    assert not again["error"].str.contains("overloaded").any()  # Mock echoes: now 'no label', from a new answer


def test_retry_failed_of_an_answer_that_named_no_label_is_answered_from_the_cache(pdbatch_home):
    # The answer itself came back (and was cached): the same request again gives the same answer, at no cost.
    df = pd.DataFrame({"review": ["Great.", "Awful."]})
    out = df.llama.classify("Review: {review}", labels=["good", "bad"], backend=Mock(), progress=False)
    assert out["error"].notna().all()  # Mock echoes: no label in its answers
    again = out.llama.retry_failed(progress=False)
    assert list(again.columns) == list(out.columns)
    assert len(jobs_submitted(pdbatch_home)) == 1 and again["error"].tolist() == out["error"].tolist()


def test_an_empty_frame_gets_the_columns_without_a_job(pdbatch_home):
    df = pd.DataFrame({"review": pd.Series([], dtype="string")})
    out = df.llama.classify("Review: {review}", labels=["good", "bad"], progress=False)
    assert list(out.columns) == ["review", "label", "p_good", "p_bad", "error"] and len(out) == 0
    assert jobs_submitted(pdbatch_home) == []


@pytest.mark.slow
def test_the_readmes_first_snippet_gets_its_labels_right():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    assert "df.llama.classify(" in snippet
    exec(snippet.replace('answer_prefix="Sentiment:")', 'answer_prefix="Sentiment:", progress=False)', 1), scope)
    assert scope["out"]["label"].tolist() == ["positive", "negative"]  # "Great blender...", "Broke after a week."


def test_a_schema_or_another_url_with_labels_is_refused_not_dropped():
    df = pd.DataFrame({"review": ["Great."]})
    with pytest.raises(ConfigError, match="classify takes no schema="):
        df.llama.preview("{review}", labels=["a", "b"], schema={"type": "object"}, backend=Mock())
    with pytest.raises(ConfigError, match="classify takes no url='/v1/embeddings'"):
        df.llama.preview("{review}", labels=["a", "b"], url="/v1/embeddings", backend=Mock())
