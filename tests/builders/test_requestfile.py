"""Request files: read as the frame to_requests gives, refused whole naming the line, checked line by line.

The request lines here are written by hand after the documentation of the
format: OpenAI's Batch API reference ("The request input object") and vLLM's
``run-batch`` examples (openai_example_batch.jsonl, its embeddings example),
not produced by pdbatch's own writer.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import Local, Mock
from pdbatch.builders.requestfile import RequestFileError, plan_lines, read_requests, request_lines, sniff
from pdbatch.errors import ConfigError, InputError
from pdbatch.store import jobdir

# OpenAI's Batch API reference, "The request input object", its example line
OPENAI_LINE = ('{"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": '
               '"gpt-4o-mini", "messages": [{"role": "system", "content": "You are a helpful assistant."}, '
               '{"role": "user", "content": "What is 2+2?"}]}}')
# vLLM's openai_example_batch.jsonl (its run-batch documentation)
VLLM_LINES = [
    '{"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": '
    '"meta-llama/Meta-Llama-3-8B-Instruct", "messages": [{"role": "system", "content": "You are a helpful '
    'assistant."},{"role": "user", "content": "Hello world!"}],"max_completion_tokens": 1000}}',
    '{"custom_id": "request-2", "method": "POST", "url": "/v1/chat/completions", "body": {"model": '
    '"meta-llama/Meta-Llama-3-8B-Instruct", "messages": [{"role": "system", "content": "You are an unhelpful '
    'assistant."},{"role": "user", "content": "Hello world!"}],"max_completion_tokens": 1000}}',
]
# vLLM's embeddings example
VLLM_EMBEDDINGS = [
    '{"custom_id": "request-1", "method": "POST", "url": "/v1/embeddings", "body": {"model": '
    '"intfloat/e5-mistral-7b-instruct", "input": "You are a helpful assistant."}}',
    '{"custom_id": "request-2", "method": "POST", "url": "/v1/embeddings", "body": {"model": '
    '"intfloat/e5-mistral-7b-instruct", "input": "You are an unhelpful assistant."}}',
]


def write(tmp_path, lines, name="requests.jsonl", end="\n"):
    path = tmp_path / name
    path.write_text(end.join(lines) + end, encoding="utf-8")
    return path


def test_openai_reference_line_reads_as_a_request_frame(tmp_path):
    frame = read_requests(write(tmp_path, [OPENAI_LINE]))
    assert list(frame.columns) == ["custom_id", "method", "url", "body"]
    row = frame.iloc[0]
    assert (row.custom_id, row.method, row.url) == ("request-1", "POST", "/v1/chat/completions")
    assert row.body == {"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"}]}


def test_read_requests_gives_the_frame_to_requests_gives(tmp_path):
    df = pd.DataFrame({"review": ["Great blender.", 'Broke "after" a week.\nNever again.', "Ça marche 😀"]})
    expected = df.llama.to_requests("Classify: {review}", system="Be brief.", max_tokens=8, temperature=0)
    path = tmp_path / "requests.jsonl"
    df.llama.to_jsonl(path, "Classify: {review}", system="Be brief.", max_tokens=8, temperature=0)
    pd.testing.assert_frame_equal(read_requests(path), expected)
    emb = df.llama.to_requests("{review}", url="/v1/embeddings")
    df.llama.to_jsonl(path, "{review}", url="/v1/embeddings")
    pd.testing.assert_frame_equal(read_requests(path), emb)


def test_blank_lines_crlf_and_a_byte_order_mark_are_read(tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n\r\n".join(VLLM_LINES).encode() + b"\r\n\r\n")
    frame = read_requests(path)
    assert frame["custom_id"].tolist() == ["request-1", "request-2"]
    assert frame["body"][1]["max_completion_tokens"] == 1000


def test_whole_file_errors_name_every_bad_line(tmp_path):
    path = write(tmp_path, [
        VLLM_LINES[0],
        '{"custom_id": 7, "body": {"messages": []}}',
        "{'custom_id': 'single quotes'}",
        '["a", "list"]',
        '{"method": "POST", "body": {"input": "no id"}}',
        VLLM_LINES[0],
    ])
    with pytest.raises(RequestFileError) as err:
        read_requests(path)
    assert isinstance(err.value, InputError)
    assert [n for n, _ in err.value.problems] == [2, 3, 4, 5, 6]
    text = str(err.value)
    assert "nothing was sent" in text and str(path) in text
    assert 'line 2: custom_id is 7 (a JSON number), not a string; write it as a string, "custom_id": "7"' in text
    assert "line 3: not JSON" in text and "single quotes" in text
    assert "line 4: a JSON array, not a request object" in text
    assert "line 5: no custom_id" in text
    assert "line 6: custom_id 'request-1' is also on line 1" in text


def test_one_bad_line_is_named_in_one_sentence(tmp_path):
    path = write(tmp_path, [VLLM_LINES[0], VLLM_LINES[1].replace('"request-2"', '"request-1"')])
    with pytest.raises(RequestFileError, match=r"requests.jsonl, line 2: custom_id 'request-1' is also on line 1"):
        read_requests(path)


def test_many_bad_lines_are_counted_past_the_first_ten(tmp_path):
    path = write(tmp_path, ['{"body": {}}'] * 25)
    with pytest.raises(RequestFileError, match="25 bad lines") as err:
        read_requests(path)
    assert "and 15 more" in str(err.value)


def test_an_empty_file_is_an_empty_request_frame(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    frame = read_requests(path)
    assert list(frame.columns) == ["custom_id", "method", "url", "body"] and len(frame) == 0


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_requests(tmp_path / "nope.jsonl")


def test_sniff_tells_request_files_from_data_rows(tmp_path):
    assert sniff(request_lines(write(tmp_path, VLLM_LINES))) == "requests"
    rows = write(tmp_path, ['{"review": "Great", "custom_id": "a"}', '{"review": "Bad", "custom_id": "b"}'],
                 name="rows.jsonl")
    assert sniff(request_lines(rows)) == "rows"
    both = write(tmp_path, [VLLM_LINES[0], '{"review": "Bad"}'], name="both.jsonl")
    assert sniff(request_lines(both)) == "both"
    # a line that is not JSON decides nothing: read as requests, it is named
    broken = write(tmp_path, [VLLM_LINES[0], "{oops"], name="broken.jsonl")
    assert sniff(request_lines(broken)) == "requests"


# ------------------------------------------------------------------ lines
def test_lines_the_backend_cannot_take_fail_alone(tmp_path):
    path = write(tmp_path, [
        VLLM_LINES[0],
        '{"custom_id": "completions", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Hi"}}',
        '{"custom_id": "get", "method": "GET", "url": "/v1/chat/completions", "body": {"messages": []}}',
        '{"custom_id": "no-body", "method": "POST", "url": "/v1/chat/completions", "body": null}',
        '{"custom_id": "bias", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": '
        '[{"role": "user", "content": "Hi"}], "logit_bias": {"50256": -100}}}',
        '{"custom_id": "hot", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": '
        '[{"role": "user", "content": "Hi"}], "temperature": 9}}',
        '{"custom_id": "texts", "method": "POST", "url": "/v1/embeddings", "body": {"input": ["a", "b"]}}',
        '{"custom_id": "empty", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}}',
    ])
    planned = plan_lines(read_requests(path), Local(), model="smollm2")
    assert [(g.kind, g.positions.tolist()) for g in planned.groups] == [("chat", [0])]
    errors = planned.errors
    assert sorted(errors) == [1, 2, 3, 4, 5, 6, 7]
    assert "url '/v1/completions' is not supported" in errors[1]
    assert "method 'GET'" in errors[2]
    assert "body must be a JSON object" in errors[3]
    assert "logit_bias" in errors[4] and "the local engine does not use it" in errors[4]
    assert "temperature=9: must be a number from 0 to 2" in errors[5]
    assert "one embedding per request line" in errors[6]
    assert "messages must be a non-empty list" in errors[7]
    assert all(e.startswith("invalid request: ") for e in errors.values())


def test_fields_pdbatch_does_not_know_are_sent_where_the_backend_takes_them(tmp_path):
    line = ('{"custom_id": "k", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", '
            '"content": "Hi"}], "top_k": 40}}')
    frame = read_requests(write(tmp_path, [line]))
    assert plan_lines(frame, Mock()).errors == {}  # a backend that takes any field
    assert "top_k=40" in plan_lines(frame, Local()).errors[0]  # the local engine would ignore it


def test_lines_without_method_and_url_take_their_kind_from_the_body(tmp_path):
    path = write(tmp_path, [
        '{"custom_id": "c", "body": {"messages": [{"role": "user", "content": "Hello, world!"}], "max_tokens": 4}}',
        '{"custom_id": "e", "body": {"input": "Hello"}}',
        '{"custom_id": "x", "body": {"prompt": "Hello"}}',
    ])
    planned = plan_lines(read_requests(path), Local())
    assert [(g.kind, g.model, g.positions.tolist()) for g in planned.groups] == [
        ("chat", "smollm2-135m-instruct", [0]), ("embeddings", "multilingual-e5-small", [1])]
    assert "neither messages (chat) nor input (embeddings)" in planned.errors[2]


# ------------------------------------------------------------------ models
def test_model_argument_is_the_model_of_every_line_and_is_written_into_the_bodies(tmp_path):
    planned = plan_lines(read_requests(write(tmp_path, VLLM_LINES)), Local(), model="smollm2")
    (group,) = planned.groups
    assert group.model == "smollm2-135m-instruct"
    bodies = list(planned.bodies(group))
    assert [b["model"] for b in bodies] == ["smollm2-135m-instruct"] * 2
    assert bodies[0]["max_completion_tokens"] == 1000  # the rest as written
    assert planned.frame["body"][0]["model"] == "meta-llama/Meta-Llama-3-8B-Instruct"  # the frame is not changed


def test_lines_that_agree_on_a_model_run_on_it_and_lines_without_one_follow(tmp_path):
    path = write(tmp_path, [
        '{"custom_id": "a", "body": {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]}}',
        '{"custom_id": "b", "body": {"messages": [{"role": "user", "content": "Hi"}]}}',
    ])
    (group,) = plan_lines(read_requests(path), Local()).groups
    assert group.model == "smollm2-135m-instruct"


def test_lines_naming_different_models_are_refused_naming_them(tmp_path):
    path = write(tmp_path, [
        '{"custom_id": "a", "body": {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]}}',
        '{"custom_id": "b", "body": {"model": "other.gguf", "messages": [{"role": "user", "content": "Hi"}]}}',
        '{"custom_id": "c", "body": {"model": "other.gguf", "messages": [{"role": "user", "content": "Hi"}]}}',
    ])
    with pytest.raises(ConfigError) as err:
        plan_lines(read_requests(path), Local())
    text = str(err.value)
    assert "the chat lines name 2 different models" in text
    assert "'smollm2' (1 line(s): 'a')" in text and "'other.gguf' (2 line(s): 'b', 'c')" in text
    assert "pass model=..." in text


def test_a_model_the_backend_does_not_have_is_refused_saying_what_it_has_and_how_to_choose(tmp_path):
    with pytest.raises(ConfigError) as err:
        plan_lines(read_requests(write(tmp_path, [OPENAI_LINE])), Local())
    text = str(err.value)
    assert "the chat lines name model 'gpt-4o-mini' in body.model, which the local backend does not have" in text
    assert "Its chat models: smollm2-135m-instruct (the default)." in text
    assert "--model NAME on the command line (model='NAME' in Python) overrides body.model" in text


def test_openais_example_file_on_the_command_line_exits_2_saying_what_to_pass(tmp_path, capsys):
    from pdbatch.cli.commands import main

    path = write(tmp_path, [OPENAI_LINE.replace("gpt-4o-mini", "gpt-3.5-turbo-0125")])
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'gpt-3.5-turbo-0125'" in err and "smollm2-135m-instruct" in err and "--model NAME" in err


def test_a_file_of_both_kinds_takes_one_model_per_kind(tmp_path):
    frame = read_requests(write(tmp_path, [VLLM_LINES[0], VLLM_EMBEDDINGS[1]]))
    with pytest.raises(ConfigError, match="cannot serve both kinds"):
        plan_lines(frame, Local(), model="smollm2")
    planned = plan_lines(frame, Local(), model={"chat": "smollm2", "embeddings": "e5-small"})
    assert [(g.kind, g.model, g.positions.tolist()) for g in planned.groups] == [
        ("chat", "smollm2-135m-instruct", [0]), ("embeddings", "multilingual-e5-small", [1])]
    with pytest.raises(ConfigError, match="not \\['chats'\\]"):
        plan_lines(frame, Local(), model={"chats": "smollm2"})


def test_the_request_frame_must_have_the_request_columns():
    with pytest.raises(InputError, match="lacks \\['url', 'body'\\]"):
        plan_lines(pd.DataFrame({"custom_id": ["a"], "method": ["POST"]}), Local())


def test_read_requests_is_public():
    assert pdbatch.read_requests is read_requests


def test_a_relative_path_in_body_model_is_read_beside_the_request_file(tmp_path, monkeypatch):
    files, elsewhere = tmp_path / "files", tmp_path / "elsewhere"
    files.mkdir()
    elsewhere.mkdir()
    (files / "tiny.gguf").write_bytes(b"GGUF")
    (elsewhere / "tiny.gguf").write_bytes(b"GGUF")  # the current directory's file of the same name is not it
    (elsewhere / "only-here.gguf").write_bytes(b"GGUF")
    path = write(files, ['{"custom_id": "a", "body": {"model": "tiny.gguf", "messages": [{"role": "user", '
                         '"content": "Hi"}]}}'])
    monkeypatch.chdir(elsewhere)
    beside = str((files / "tiny.gguf").resolve())
    (group,) = plan_lines(read_requests(path), Local(), base=path.parent).groups
    assert group.model == beside
    # run_requests reads the path beside the file it was given
    assert pdbatch.run_requests(path, backend=Mock(), wait=False, progress=False).model == beside
    # a file that only the current directory holds is refused, not run
    other = write(files, ['{"custom_id": "a", "body": {"model": "only-here.gguf", "messages": [{"role": '
                          '"user", "content": "Hi"}]}}'])
    with pytest.raises(ConfigError, match=r"relative to the current directory.*--model"):
        pdbatch.run_requests(other, backend=Local(), wait=False, progress=False)
    # model= is the caller's own path, read as any argument is: from the current directory
    (group,) = plan_lines(read_requests(other), Local(), model="only-here.gguf", base=other.parent).groups
    assert group.model == str((elsewhere / "only-here.gguf").resolve())


# ------------------------------------------------- what the job's model cannot take
def gemini_lines(tmp_path, model_in_body=False):
    """Three chat lines for a Gemini model, the second with a field Gemini batch lines cannot carry."""
    hi = [{"role": "user", "content": "Hi"}]
    bodies = [{"messages": hi}, {"messages": hi, "logit_bias": {"1": 5}}, {"messages": hi, "max_tokens": 9}]
    if model_in_body:
        bodies = [{"model": "gemini-3.5-flash", **b} for b in bodies]
    return write(tmp_path, [json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                                        "body": b}) for i, b in enumerate(bodies)])


def vertex():
    from pdbatch.backends.vertex import Vertex

    # the real backend object: planning a file asks it nothing over the network
    return Vertex(project="p", staging="gs://my-bucket/pdbatch/")


@pytest.mark.parametrize("model_in_body", [False, True])
def test_a_line_the_jobs_model_cannot_take_fails_alone(tmp_path, model_in_body):
    # a frame's call with logit_bias on Gemini is refused whole (jobs/prepare.py); a file's line has its own body
    path = gemini_lines(tmp_path, model_in_body)
    planned = plan_lines(read_requests(path), vertex(), model=None if model_in_body else "gemini-3.5-flash")
    assert [(g.model, g.positions.tolist()) for g in planned.groups] == [("google/gemini-3.5-flash", [0, 2])]
    (error,) = planned.errors.values()
    assert list(planned.errors) == [1]
    assert error.startswith("invalid request: google/gemini-3.5-flash cannot take logit_bias={\"1\":5}: Gemini "
                            "batch lines have no equivalent")
    assert "Change this line's logit_bias, or run the file on a model that takes it (--model, model=)" in error
    # the same lines on a model that takes logit_bias all run
    planned = plan_lines(read_requests(path), vertex(), model="gpt-oss-120b-maas")
    assert planned.errors == {} and planned.groups[0].positions.tolist() == [0, 1, 2]


def test_each_gemini_refusal_of_a_line_is_that_lines_error(tmp_path):
    path = write(tmp_path, [json.dumps({"custom_id": cid, "body": body}) for cid, body in [
        ("ok", {"messages": [{"role": "user", "content": "Hi"}]}),
        ("tool", {"messages": [{"role": "tool", "content": "42"}]}),
        ("image", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
        ("system", {"messages": [{"role": "system", "content": "Be brief."}]}),
        ("text", {"input": "a text"}),
        ("title", {"input": "a text", "title": "Doc"}),
        ("unknown", {"input": "a text", "truncate": "END"}),
    ]])
    planned = plan_lines(read_requests(path), vertex(),
                         model={"chat": "gemini-3.5-flash", "embeddings": "gemini-embedding-2"})
    assert [(g.kind, g.positions.tolist()) for g in planned.groups] == [("chat", [0]), ("embeddings", [4])]
    errors = {planned.frame.custom_id[p]: e for p, e in planned.errors.items()}
    assert sorted(errors) == ["image", "system", "title", "tool", "unknown"]
    assert "messages[0]: role 'tool' has no Gemini equivalent" in errors["tool"]
    assert "messages[0]: content part of type 'image_url' is not converted" in errors["image"]
    assert "a Gemini request needs a user message besides the system prompt" in errors["system"]
    assert "google/gemini-embedding-2 cannot take title='Doc': gemini-embedding-2 ignores it" in errors["title"]
    assert "truncate='END': no equivalent in google/gemini-embedding-2 batch jobs" in errors["unknown"]


def test_preview_requests_counts_a_line_the_model_cannot_take_as_skipped(tmp_path):
    (preview,) = pdbatch.preview_requests(gemini_lines(tmp_path), backend=vertex(), model="gemini-3.5-flash")
    assert (preview.n_rows, preview.n_requests, preview.n_skipped) == (3, 2, 1)
    assert preview.requests.custom_id.tolist() == ["req-0", "req-2"]
    assert pd.isna(preview.prompt_tokens.iloc[1]) and preview.prompt_tokens.notna().sum() == 2


def test_a_file_whose_every_line_the_model_refuses_runs_no_job_and_gives_each_its_error(tmp_path, pdbatch_home):
    path = write(tmp_path, [json.dumps({"custom_id": f"req-{i}", "body": {
        "messages": [{"role": "user", "content": "Hi"}], "logit_bias": {"1": i}}}) for i in range(2)])
    out = pdbatch.run_requests(path, backend=vertex(), model="gemini-3.5-flash", progress=False)
    assert out.custom_id.tolist() == ["req-0", "req-1"] and out.response.isna().all()
    assert all(e.startswith("invalid request: google/gemini-3.5-flash cannot take logit_bias=") for e in out.error)
    assert list(jobdir.root().iterdir()) == []  # nothing sent, no job folder


@pytest.mark.parametrize(("url", "model", "param", "message"), [
    ("/v1/chat/completions", "gemini-3.5-flash", {"logit_bias": {"1": 5}}, "Gemini batch lines have no equivalent"),
    ("/v1/embeddings", "gemini-embedding-2", {"title": "Doc"}, "gemini-embedding-2 ignores it in batch jobs"),
])
def test_a_frames_call_the_model_cannot_take_is_refused_whole_before_anything_is_written(url, model, param,
                                                                                         message):
    # the same question asked of a frame, whose parameters every row shares: the call is refused, naming them
    frame = pd.DataFrame({"text": ["a", "b"]})
    with pytest.raises(InputError, match=f"{model} cannot take 1 request parameter.*nothing was sent.*{message}"):
        frame.llama.preview("{text}", model=model, backend=vertex(), url=url, **param)


def test_lines_of_a_kind_the_backend_does_not_serve_are_their_own_errors(tmp_path):
    # Anthropic has no embeddings endpoint: a file of chat and embeddings lines runs its chat lines there,
    # and each embeddings line says which backends run it (before: the whole file was refused, advising
    # --model, which cannot help)
    from pdbatch.backends import Anthropic

    embeddings = [line.replace('"request-', '"embed-') for line in VLLM_EMBEDDINGS]
    path = write(tmp_path, [VLLM_LINES[0], *embeddings])
    backend = Anthropic(api_key="sk-ant-test")  # never used: planning asks no server
    planned = plan_lines(read_requests(path), backend, model={"chat": "claude-haiku-4-5"})
    assert [(g.kind, g.positions.tolist()) for g in planned.groups] == [("chat", [0])]
    assert sorted(planned.errors) == [1, 2]
    assert all(e.startswith("invalid request: the anthropic backend runs no embeddings requests")
               for e in planned.errors.values())
    (pv,) = pdbatch.preview_requests(path, backend=backend, model={"chat": "claude-haiku-4-5"})
    assert (pv.n_rows, pv.n_requests, pv.n_skipped) == (3, 1, 2)
