"""Each kind is declared once (pdbatch.lines.kinds): its url maps back to it, its columns are what a result gains."""

import orjson
import pandas as pd
import pytest

import pdbatch  # noqa: F401  (the df.llama accessor)
from pdbatch.backends.base import Backend, JobStatus
from pdbatch.builders.requests import build_requests
from pdbatch.errors import ConfigError, InputError
from pdbatch.lines import outputs
from pdbatch.lines.checks import one_of
from pdbatch.lines.kinds import KINDS, Column, KindSpec, Malformed, declare, parsed_columns, withdraw
from pdbatch.lines.params import body_params
from pdbatch.models import URLS, kind_of_url
from pdbatch.results.join import MISSING, join_results
from pdbatch.results.parse import PARSED_COLUMNS, parse_bytes, parse_lines, typed


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_kind_declares_its_url_and_the_columns_its_result_gains(kind):
    declared = KINDS[kind]
    assert kind_of_url(declared.url) == kind
    frame = pd.DataFrame({"text": ["a", "b"]})
    out = join_results(frame, parse_lines([]), kind=kind)
    assert list(out.columns) == ["text", *declared.columns]
    assert declared.columns[-1] == "error" and out["error"].notna().all()  # no answer: each row says why


# ---------------------------------------------------------------- the extension point
# OpenAI's batch API runs /v1/moderations lines (SPEC.md "OpenAI batch API"; the Batch API reference lists
# "/v1/responses, /v1/chat/completions, /v1/embeddings, /v1/completions, and /v1/moderations"). Its body is
# {"model", "input"}; its answer is {"id", "model", "results": [{"flagged", "categories": {name: bool},
# "category_scores": {name: float}}]} (the Moderations API reference). Declared here, in one place, as a
# plugin would declare it: nothing else in pdbatch knows it.


def _read_moderation(body):
    try:
        result = body["results"][0]
        flagged = sorted(name for name, hit in result["categories"].items() if hit)
        return {"flagged": result["flagged"], "categories": ",".join(flagged),
                "top_score": max(result["category_scores"].values())}
    except (IndexError, KeyError, TypeError, AttributeError, ValueError):
        raise Malformed("malformed response: no moderation result") from None


MODERATIONS = KindSpec(
    "moderations", "/v1/moderations", "input",
    (Column("flagged", "boolean"), Column("categories", "string"), Column("top_score", "Float64")),
    _read_moderation, ("results",), {"user": one_of()},
)


@pytest.fixture
def moderations():
    kind = declare(MODERATIONS)
    yield kind
    withdraw(kind.name)


def _moderation(text):
    """What OpenAI's moderation model answers, decided by the text (the test's stand-in for the model)."""
    hit = "hate" in text
    return {"id": "modr-1", "model": "omni-moderation-latest",
            "results": [{"flagged": hit, "categories": {"harassment": hit, "hate": hit, "violence": False},
                         "category_scores": {"harassment": 0.5 if hit else 0.01, "hate": 0.9 if hit else 0.02,
                                             "violence": 0.03}}]}


class Moderator(Backend):
    """A backend whose service answers moderation lines, in OpenAI's batch output format (the envelope)."""

    name = "moderator"

    def __init__(self):
        self.jobs = {}

    def settings(self):
        return {}

    def model_name(self, model, kind):
        return model or "omni-moderation-latest"

    def submit(self, files, *, model, kind, n_requests, display_name, extra_columns=None):
        lines = [orjson.loads(line) for f in files for line in f.read_bytes().splitlines() if line.strip()]
        out = []
        for i, req in enumerate(reversed(lines)):  # output order is not input order
            body = req["body"]
            if body["input"] == "":
                response = {"status_code": 400, "request_id": f"r{i}",
                            "body": {"error": {"message": "input must not be empty"}}}
            else:
                response = {"status_code": 200, "request_id": f"r{i}", "body": _moderation(body["input"])}
            out.append(orjson.dumps({"id": f"batch_req_{i}", "custom_id": req["custom_id"], "response": response,
                                     "error": None}) + b"\n")
        self.jobs[f"mod-{len(self.jobs)}"] = out
        self.submitted = lines
        return [f"mod-{len(self.jobs) - 1}"]

    def status(self, job_id):
        return JobStatus(state="JOB_STATE_SUCCEEDED", total=len(self.jobs[job_id]), succeeded=len(self.jobs[job_id]),
                         failed=0)

    def cancel(self, job_id):
        pass

    def fetch_output(self, job_id, dest):
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "out.jsonl").write_bytes(b"".join(self.jobs[job_id]))
        return [dest / "out.jsonl"]


def test_a_kind_declared_in_one_place_builds_requests_reads_answers_and_types_its_columns(moderations, tmp_path):
    assert kind_of_url("/v1/moderations") == "moderations" and URLS["moderations"] == "/v1/moderations"
    frame = pd.DataFrame({"text": ["I hate you", "lovely day", "good morning"]})

    # request building: the text goes into the field the kind declares, with its own body fields
    backend = Moderator()
    params = body_params({"user": "u1"}, "moderations", backend)
    plan = build_requests(frame, "{text}", model="omni-moderation-latest", url="/v1/moderations", params=params)
    written = [orjson.loads(line) for chunk, _ in plan.iter_jsonl() for line in chunk.splitlines()]
    assert written[0] == {"custom_id": "row-0", "method": "POST", "url": "/v1/moderations",
                          "body": {"model": "omni-moderation-latest", "input": "I hate you", "user": "u1"}}
    assert plan.to_frame()["body"].tolist() == [w["body"] for w in written]
    with pytest.raises(InputError, match="'temperature' is a field of chat requests, not moderations requests"):
        body_params({"temperature": 0}, "moderations", backend)
    assert "max_tokens" not in params  # the answer-length default is for kinds that take one

    # the read side: both parsers, then the join, give the declared columns with their dtypes
    (tmp_path / "requests.jsonl").write_bytes(b"".join(chunk for chunk, _ in plan.iter_jsonl()))
    job_id = backend.submit([tmp_path / "requests.jsonl"], model="m", kind="moderations", n_requests=3,
                            display_name="t")[0]
    output = backend.fetch_output(job_id, tmp_path / "out")[0].read_bytes()
    fast, reference = parse_bytes(output), typed(parse_lines(output.splitlines()))
    pd.testing.assert_frame_equal(fast, reference)
    out = join_results(frame, fast, kind="moderations")
    assert list(out.columns) == ["text", "flagged", "categories", "top_score", "error"]
    assert [str(out[c].dtype) for c in ("flagged", "categories", "top_score")] == ["boolean", "string", "Float64"]
    assert out["flagged"].tolist() == [True, False, False]
    assert out["categories"].tolist() == ["harassment,hate", "", ""]
    assert out["top_score"].tolist() == [0.9, 0.03, 0.03]
    assert out["error"].isna().all()

    # a row the service refused, one it answered in another shape, and one it did not answer
    broken = (b'{"custom_id":"row-0","response":{"status_code":400,"body":{"error":{"message":"too long"}}}}\n'
              b'{"custom_id":"row-1","response":{"status_code":200,"body":{"results":[]}}}\n')
    out = join_results(frame, parse_bytes(broken), kind="moderations")
    assert out["error"].tolist() == ["HTTP 400: too long", "malformed response: no moderation result", MISSING]
    assert out["flagged"].isna().all()


def test_a_declared_kind_runs_end_to_end_as_a_job(moderations, tmp_path, monkeypatch):
    monkeypatch.setenv("PDBATCH_HOME", str(tmp_path))
    frame = pd.DataFrame({"text": ["I hate you", "", "lovely day", "I hate you"]})
    backend = Moderator()
    out = frame.llama.submit("{text}", url="/v1/moderations", backend=backend).result()
    assert [line["body"] for line in backend.submitted] == [
        {"model": "omni-moderation-latest", "input": t} for t in frame["text"]]
    assert list(out.columns) == ["text", "flagged", "categories", "top_score", "error"]
    assert out["flagged"].tolist() == [True, pd.NA, False, True]
    assert out["error"].tolist() == [pd.NA, "HTTP 400: input must not be empty", pd.NA, pd.NA]
    assert out["categories"].tolist() == ["harassment,hate", pd.NA, "", "harassment,hate"]
    assert out["top_score"].tolist() == [0.9, pd.NA, 0.03, 0.9]
    by_kind = frame.llama.submit("{text}", kind="moderations", backend=Moderator()).result()
    pd.testing.assert_frame_equal(by_kind, out)


def test_a_kind_cannot_take_a_url_or_column_another_kind_owns(moderations):
    with pytest.raises(ConfigError, match="already declared"):
        declare(MODERATIONS)
    with pytest.raises(ConfigError, match="already belongs to kind 'chat'"):
        declare(KindSpec("completions", "/v1/chat/completions", "prompt", (Column("response", "string"),),
                         _read_moderation, ("choices",)))
    with pytest.raises(ConfigError, match=r"'prompt_tokens'.*'Int64'"):
        declare(KindSpec("x", "/v1/x", "input", (Column("prompt_tokens", "string"),), _read_moderation, ("x",)))
    with pytest.raises(ConfigError, match="built in"):
        withdraw("chat")
    # one name, two dtypes: the result would keep one column, parsed with the first dtype, typed with the second
    twice = (Column("score", "Float64"), Column("score", "Int64"))
    with pytest.raises(ConfigError, match=r"kind 'y': column\(s\) \['score'\] declared twice"):
        declare(KindSpec("y", "/v1/y", "input", twice, _read_moderation, ("y",)))
    assert "y" not in KINDS and "score" not in {c.name for c in parsed_columns()}


def test_without_the_declaration_the_url_is_refused_and_the_parsed_columns_are_the_built_in_ones():
    with pytest.raises(ConfigError, match="url='/v1/moderations' is not supported"):
        kind_of_url("/v1/moderations")
    assert tuple(parse_lines([]).columns) == PARSED_COLUMNS


def test_two_different_answers_of_a_declared_kind_fail_their_row(moderations):
    frame = pd.DataFrame({"text": ["a", "b"]})

    def line(cid, categories):
        result = {"flagged": True, "categories": dict.fromkeys(categories, True), "category_scores": {"hate": 0.9}}
        return orjson.dumps({"custom_id": cid, "response": {"status_code": 200, "body": {"results": [result]}}})

    # same flag, other categories: a different answer (all its columns are compared), and the same one twice
    lines = [line("row-0", ["hate"]), line("row-0", ["violence"]), line("row-1", ["hate"]), line("row-1", ["hate"])]
    out = join_results(frame, parse_bytes(b"\n".join(lines)), kind="moderations")
    assert out["error"].iloc[0].startswith("the output has 2 different answers for custom_id 'row-0'")
    assert pd.isna(out["error"].iloc[1]) and out["categories"].iloc[1] == "hate"
    answers = {outputs.outcome(orjson.loads(x)).answer for x in lines}  # what the response cache compares
    assert len(answers) == 2


def test_the_field_a_declared_kind_fills_from_the_prompt_is_not_a_parameter():
    # OpenAI's legacy /v1/completions: the prompt goes into "prompt", its answers are chat-shaped choices
    completions = declare(KindSpec("completions", "/v1/completions", "prompt",
                                   (Column("response", "string"), Column("finish_reason", "string")),
                                   lambda body: {}, ("choices",)))
    try:
        with pytest.raises(InputError, match="'prompt' cannot be a body parameter: pass it as the prompt template"):
            body_params({"prompt": "x"}, "completions", Moderator())
        with pytest.raises(InputError, match=r"extra_body\['prompt'\]: pass it as the prompt template"):
            body_params({"extra_body": {"prompt": "x"}}, "completions", Moderator())
    finally:
        withdraw(completions.name)
