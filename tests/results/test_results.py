import random

import numpy as np
import orjson
import pandas as pd
import pytest

import pdbatch
from pdbatch.errors import InputError
from pdbatch.results.join import join_results
from pdbatch.results.parse import parse_lines


def chat_line(cid, text, finish="stop", p=3, c=2, **extra):
    return orjson.dumps({
        "custom_id": cid,
        "request": {"messages": []},
        "response": {"object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}},
        "status": "",
        "processed_time": "2026-01-01T00:00:00Z",
        **extra,
    })


def openai_line(cid, text=None, error=None, status_code=200):
    ok = {"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    body = ok if text is not None else {"error": {"message": "bad"}}
    return orjson.dumps({"id": "batch_req_1", "custom_id": cid,
                         "response": None if error else {"status_code": status_code, "request_id": "r", "body": body},
                         "error": error})


def test_parse_every_shape():
    lines = [
        chat_line("a", "hello"),
        orjson.dumps({"custom_id": "b", "status": "Bad Request: {\"error\": \"too long\"}", "processed_time": "t",
                      "request": {}}),
        openai_line("c", "hi"),
        openai_line("d", error={"code": "rate_limit", "message": "slow down"}),
        openai_line("e", status_code=400),
        orjson.dumps({"custom_id": "f", "response": orjson.dumps({"choices": [{"message": {"content": "bq"},
                      "finish_reason": "length"}]}).decode(), "status": None}),
        orjson.dumps({"custom_id": "g", "response": {"object": "list", "data": [{"embedding": [0.5, 1.5]}]},
                      "status": ""}),
        b'{"custom_id": "h", "response": {"choi',
        b"not json and no id",
        b"",
    ]
    with pytest.warns(RuntimeWarning, match="1 output line"):
        out = parse_lines(lines).set_index("custom_id")
    assert out.loc["a", "response"] == "hello" and out.loc["a", "prompt_tokens"] == 3
    assert out.loc["a", "error"] is None
    assert out.loc["b", "error"].startswith("Bad Request") and out.loc["b", "response"] is None
    assert out.loc["c", "response"] == "hi"
    assert out.loc["d", "error"] == "rate_limit: slow down"
    assert out.loc["e", "error"] == "HTTP 400: bad"
    assert out.loc["f", "response"] == "bq" and out.loc["f", "finish_reason"] == "length"
    assert out.loc["g", "embedding"] == [0.5, 1.5]
    assert out.loc["h", "error"].startswith("malformed output line")


def frame(n=6):
    return pd.DataFrame({"text": [f"t{i}" for i in range(n)]}, index=list("abcdef")[:n])


def test_join_shuffled_missing_duplicated_and_unknown():
    df = frame()
    lines = [chat_line(f"row-{i}", f"answer {i}") for i in range(6) if i != 4]
    lines.append(orjson.dumps({"custom_id": "row-2", "status": "Internal error"}))  # failed duplicate
    lines.append(chat_line("row-99", "stray"))
    random.Random(0).shuffle(lines)
    with pytest.warns(RuntimeWarning, match="matches no row"):
        out = join_results(df, parse_lines(lines), kind="chat")
    assert list(out.index) == list("abcdef")
    assert list(out.columns) == ["text", "response", "finish_reason", "prompt_tokens", "completion_tokens", "error"]
    assert out.loc["c", "response"] == "answer 2" and pd.isna(out.loc["c", "error"])  # success wins
    assert pd.isna(out.loc["e", "response"]) and out.loc["e", "error"].startswith("missing")
    assert [out.loc[k, "response"] for k in "abdf"] == ["answer 0", "answer 1", "answer 3", "answer 5"]
    assert str(out.prompt_tokens.dtype) == "Int64" and str(out.response.dtype) == "string"


def test_join_by_custom_id_column():
    df = pd.DataFrame({"id": ["x", "y", "z"], "t": [1, 2, 3]})
    lines = [chat_line("z", "Z"), chat_line("x", "X"), chat_line("y", "Y")]
    out = join_results(df, parse_lines(lines), kind="chat", custom_ids=np.array(["x", "y", "z"], dtype=object))
    assert list(out.response) == ["X", "Y", "Z"]


def test_join_skipped_rows_and_overwrite():
    df = frame(3)
    out = join_results(df, parse_lines([chat_line("row-0", "a")]), kind="chat", skipped={1: "skipped: null"})
    assert list(out.error.fillna("ok"))[:2] == ["ok", "skipped: null"]
    assert out.error.iloc[2].startswith("missing")
    df2 = out[["text", "response"]]
    with pytest.raises(InputError, match="overwrite=True"):
        join_results(df2, parse_lines([]), kind="chat")
    again = join_results(df2, parse_lines([chat_line("row-0", "new")]), kind="chat", overwrite=True)
    assert again.response.iloc[0] == "new"


def test_embeddings_join_gives_float_arrays():
    df = frame(2)
    lines = [orjson.dumps({"custom_id": f"row-{i}", "response": {"data": [{"embedding": [i, 1.0]}]}, "status": ""})
             for i in range(2)]
    out = join_results(df, parse_lines(lines), kind="embeddings")
    assert list(out.columns) == ["text", "embedding", "error"]
    assert isinstance(out.embedding.iloc[1], np.ndarray) and out.embedding.iloc[1].dtype == np.float32
    assert out.embedding.iloc[1].tolist() == [1.0, 1.0]


def test_read_predictions_folder(tmp_path):
    (tmp_path / "prediction-model-1").mkdir()
    (tmp_path / "prediction-model-1" / "predictions_00001.jsonl").write_bytes(chat_line("row-1", "b") + b"\n")
    (tmp_path / "prediction-model-1" / "predictions_00002.jsonl").write_bytes(
        chat_line("row-0", "a") + b"\n" + openai_line("row-2", "c") + b"\n")
    out = pdbatch.read_predictions(tmp_path)
    assert out.index.name == "custom_id"
    assert out.loc[["row-0", "row-1", "row-2"], "response"].tolist() == ["a", "b", "c"]
