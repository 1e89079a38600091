"""Preview and run agree on the rows over the context window (the real local tokenizer counts them)."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

import pdbatch
from pdbatch import run
from pdbatch.backends import Local
from pdbatch.call import Call
from pdbatch.errors import ConfigError
from pdbatch.jobs.fit import OVER_WINDOW, hold_back
from pdbatch.store import jobdir

PROMPT = "Classify the sentiment of this review in one word: {review}"


def no_jobs():
    folder = jobdir.root()
    return not folder.exists() or not any(folder.iterdir())


def test_max_tokens_past_the_window_is_refused_as_preview_says(reviews):
    df = reviews.iloc[:4]
    pv = df.llama.preview(PROMPT, max_tokens=100_000)
    assert len(pv.over_context) == 4 and "over the context window" in repr(pv)
    reason = pv.over_context_reasons["row-0"]
    assert reason.startswith(OVER_WINDOW) and "max_tokens=100000" in reason and "2048" in reason
    with pytest.raises(ConfigError, match=r"every row \(4: row-0, row-1, row-2, row-3\) is over the context window"
                       ) as err:
        df.llama.batch_predict(PROMPT, max_tokens=100_000, progress=False)
    longest = f"row-{int(pv.prompt_tokens.to_numpy().argmax())}"
    assert pv.over_context_reasons[longest][len(OVER_WINDOW) + 2:] in str(err.value), \
        "the run gives the reason preview gives, for the row whose fix fits every row"
    assert no_jobs(), "nothing was submitted"


def test_the_run_holds_back_exactly_the_rows_preview_lists(reviews):
    df = reviews.iloc[:6]
    pv = df.llama.preview(PROMPT, max_tokens=16)
    assert pv.over_context == [] and pv.over_context_reasons == {}
    tight = Local(n_ctx=72)  # the same rows against a small window: some fit, some do not
    pv = df.llama.preview(PROMPT, max_tokens=16, backend=tight)
    expected = [f"row-{i}" for i, n in enumerate(pv.prompt_tokens) if n + 16 > 72]
    assert pv.over_context == expected and 0 < len(expected) < len(df)
    # the run's path counts only the rows its byte bound cannot clear, and must find the same ones
    planned, _ = run.plan(df, Call(prompt=PROMPT, params={"max_tokens": 16}), tight)
    with pytest.warns(UserWarning, match=f"{len(expected)} row\\(s\\)"):
        held = hold_back(planned, tight)
    assert {f"row-{p}": why for p, why in held.skipped.items()} == pv.over_context_reasons


@pytest.mark.slow
def test_rows_over_the_window_fail_without_being_sent_with_previews_reason(reviews):
    long_text = " ".join(["This blender is loud but it works well enough for smoothies."] * 200)
    df = pd.DataFrame({"review": [reviews.review.iloc[0], long_text, reviews.review.iloc[1]]})
    pv = df.llama.preview(PROMPT, max_tokens=4, temperature=0)
    assert pv.over_context == ["row-1"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = df.llama.batch_predict(PROMPT, max_tokens=4, temperature=0, progress=False)
    assert any("1 row(s) (row-1) are over the context window" in str(w.message) for w in caught)
    assert out.error.iloc[1] == pv.over_context_reasons["row-1"]
    assert out.error.iloc[[0, 2]].isna().all() and out.response.iloc[[0, 2]].notna().all()
    assert pd.isna(out.response.iloc[1])
    # retried unchanged, the row would be over again: it is not sent, and the warning says what would help
    with pytest.warns(UserWarning, match=r"\(index 1\) were not sent again: the prompt does not fit .* larger"):
        assert out.llama.retry_failed(progress=False) is out


def _line(cid, max_tokens):
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": max_tokens,
                                "temperature": 0}})


def test_a_request_file_whose_every_line_is_over_is_refused_as_preview_says(tmp_path):
    path = tmp_path / "req.jsonl"
    path.write_text(_line("a", 100_000) + "\n" + _line("b", 5_000) + "\n")
    (pv,) = pdbatch.preview_requests(str(path))
    assert pv.over_context == ["a", "b"] and "max_tokens=5000" in pv.over_context_reasons["b"]
    with pytest.raises(ConfigError, match=r"every row \(2: a, b\) is over the context window"):
        pdbatch.run_requests(str(path), progress=False)
    assert no_jobs()


@pytest.mark.slow
def test_a_request_files_lines_are_held_back_each_by_its_own_max_tokens(tmp_path):
    path = tmp_path / "req.jsonl"
    path.write_text(_line("fits", 4) + "\n" + _line("over", 100_000) + "\n")
    (pv,) = pdbatch.preview_requests(str(path))
    assert pv.over_context == ["over"], "each line's own cap, not the file's largest"
    with pytest.warns(UserWarning, match=r"1 row\(s\) \(over\)"):
        job = pdbatch.run_requests(str(path), wait=False, progress=False)
    out = job.wait(progress=False).result()
    assert out.set_index("custom_id").error["over"] == pv.over_context_reasons["over"]
    assert pd.isna(out.set_index("custom_id").error["fits"])
    lines = list(job.output_lines())
    assert [x["error"]["code"] for x in lines if x["error"]] == ["context_length_exceeded"]
