import re

import numpy as np
import orjson
import pandas as pd
import pytest

import pdbatch
from pdbatch.builders.requests import build_requests
from pdbatch.errors import InputError

AWKWARD = [
    'quotes " and \' and \\ backslash',
    "new\nlines\r\nand\ttabs",
    "emoji 😀🎉 and accents éàü and CJK 日本語",
    "control \x00\x01\x1f chars and \u2028 separators",
    "x" * 100_000,
    "",
]


def plan(df, prompt="{t}", **kw):
    kw.setdefault("model", "m")
    return build_requests(df, prompt, **kw)


def test_to_requests_shape_index_and_order():
    df = pd.DataFrame({"review": ["good", "bad", "ok"]}, index=[10, 5, 7])
    req = df.llama.to_requests("Classify: {review}", max_tokens=5, temperature=0)
    assert list(req.columns) == ["custom_id", "method", "url", "body"]
    assert list(req.index) == [10, 5, 7]
    assert list(req.custom_id) == ["row-0", "row-1", "row-2"]
    assert set(req.method) == {"POST"} and set(req.url) == {"/v1/chat/completions"}
    assert req.body.iloc[1] == {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Classify: bad"}],
        "max_tokens": 5,
        "temperature": 0,
    }


def test_system_message_and_messages_column():
    df = pd.DataFrame({"m": [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "yo"}]]})
    req = df.llama.to_requests(messages="m", system="Be brief.")
    assert req.body.iloc[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


def test_embeddings_body():
    df = pd.DataFrame({"t": ["a", "b"]})
    req = df.llama.to_requests("{t}", url="/v1/embeddings")
    assert req.body.iloc[0] == {"model": "multilingual-e5-small", "input": "a"}
    assert set(req.url) == {"/v1/embeddings"}


def test_custom_id_column_is_used_and_stringified():
    df = pd.DataFrame({"id": [101, 102], "t": ["a", "b"]})
    req = df.llama.to_requests("{t}", custom_id="id")
    assert list(req.custom_id) == ["101", "102"]


def test_duplicate_and_null_custom_ids_refused():
    df = pd.DataFrame({"id": ["a", "a", "b"], "t": ["x", "y", "z"]})
    with pytest.raises(InputError, match=r"duplicate ids: \['a'\]"):
        df.llama.to_requests("{t}", custom_id="id")
    df = pd.DataFrame({"id": ["a", None], "t": ["x", "y"]})
    with pytest.raises(InputError, match="null"):
        df.llama.to_requests("{t}", custom_id="id")
    with pytest.raises(InputError, match="not a column"):
        df.llama.to_requests("{t}", custom_id="nope")


def test_null_in_template_field_names_rows_or_skips():
    df = pd.DataFrame({"t": ["a", None, "c", float("nan")], "u": ["x", "y", None, "z"]})
    with pytest.raises(InputError, match=r"3 row\(s\).*\['t', 'u'\].*row-1, row-2, row-3.*on_null='skip'"):
        df.llama.to_requests("{t} {u}")
    p = plan(df, "{t} {u}", on_null="skip")
    assert p.skipped == {
        1: "skipped: null in column(s) 't'",
        2: "skipped: null in column(s) 'u'",
        3: "skipped: null in column(s) 't'",
    }
    req = p.to_frame()
    assert list(req.custom_id) == ["row-0"]
    with pytest.raises(InputError, match="on_null"):
        plan(df, on_null="drop")


def test_duplicate_index_still_works():
    df = pd.DataFrame({"t": ["a", "b", "c"]}, index=[1, 1, 1])
    req = df.llama.to_requests("{t}")
    assert list(req.custom_id) == ["row-0", "row-1", "row-2"]
    assert [b["messages"][0]["content"] for b in req.body] == ["a", "b", "c"]


def test_argument_errors():
    df = pd.DataFrame({"t": ["a"]})
    with pytest.raises(InputError, match="either prompt"):
        df.llama.to_requests()
    with pytest.raises(InputError, match="not both"):
        df.llama.to_requests("{t}", messages="t")
    with pytest.raises(pdbatch.ConfigError, match=r"max_tokens=<object object at .*>: must be an integer"):
        df.llama.to_requests("{t}", max_tokens=object())
    with pytest.raises(InputError, match="JSON-serialisable"):
        df.llama.to_requests("{t}", extra_body={"x": object()}, backend="mock")
    with pytest.raises(pdbatch.ConfigError, match="url="):
        df.llama.to_requests("{t}", url="/v1/completions")
    with pytest.raises(InputError, match="messages must be a non-empty list"):
        pd.DataFrame({"m": ["not a list"]}).llama.to_requests(messages="m")


@pytest.mark.parametrize("system", [None, "Sys \"quoted\" 😀"])
@pytest.mark.parametrize("params", [{}, {"max_tokens": 7, "stop": ["\n"], "response_format": {"type": "json_object"}}])
def test_jsonl_fast_path_parses_back_to_the_simple_path(tmp_path, system, params):
    df = pd.DataFrame({"t": AWKWARD * 3, "n": range(18)})
    p = plan(df, "Row {n}: {t}", system=system, params=params)
    path = tmp_path / "r.jsonl"
    assert p.write_jsonl(path) == 18
    lines = [orjson.loads(x) for x in path.read_bytes().splitlines()]
    simple = p.to_frame()
    assert lines == simple.to_dict("records")
    assert path.read_bytes().count(b"\n") == 18  # no raw newline inside a line


def test_jsonl_fast_path_messages_and_embeddings(tmp_path):
    msgs = [[{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}] for t in AWKWARD]
    df = pd.DataFrame({"m": msgs, "t": AWKWARD})
    for kw in ({"messages": "m", "system": "s"}, {"messages": "m"}):
        p = build_requests(df, model="m", **kw)
        p.write_jsonl(tmp_path / "a.jsonl")
        written = [orjson.loads(x) for x in (tmp_path / "a.jsonl").read_bytes().splitlines()]
    assert written == p.to_frame().to_dict("records")
    p = build_requests(df, "{t}", model="e", url="/v1/embeddings", params={"input_type": "query"})
    p.write_jsonl(tmp_path / "e.jsonl")
    written = [orjson.loads(x) for x in (tmp_path / "e.jsonl").read_bytes().splitlines()]
    assert written == p.to_frame().to_dict("records")


def test_jsonl_chunks_are_bounded(tmp_path):
    df = pd.DataFrame({"t": [f"text {i}" for i in range(1000)]})
    p = plan(df)
    chunks = list(p.iter_jsonl(chunk_rows=300))
    assert [n for _, n in chunks] == [300, 300, 300, 100]
    assert b"".join(c for c, _ in chunks).count(b"\n") == 1000


def test_to_jsonl_accessor(tmp_path):
    df = pd.DataFrame({"t": ["a", "b"]})
    assert df.llama.to_jsonl(tmp_path / "x.jsonl", "{t}", max_tokens=3) == 2
    first = orjson.loads((tmp_path / "x.jsonl").read_bytes().splitlines()[0])
    assert first["custom_id"] == "row-0" and first["body"]["max_tokens"] == 3


@pytest.mark.parametrize("max_requests,max_bytes", [(7, None), (None, 900), (5, 700), (1000, None)])
def test_split_into_parts_at_limits_in_one_pass(tmp_path, max_requests, max_bytes):
    df = pd.DataFrame({"t": [f"text number {i} " * (i % 5 + 1) for i in range(40)]})
    p = plan(df)
    whole = tmp_path / "whole.jsonl"
    p.write_jsonl(whole)
    parts = p.write_jsonl_parts(tmp_path, max_requests=max_requests, max_bytes=max_bytes)
    joined = b"".join(path.read_bytes() for path, _ in parts)
    assert joined == whole.read_bytes()
    for path, n in parts:
        data = path.read_bytes()
        assert data.count(b"\n") == n > 0
        assert n <= (max_requests or n) and len(data) <= (max_bytes or len(data))
    if max_requests == 1000:
        assert len(parts) == 1


def test_line_over_byte_limit_is_refused(tmp_path):
    p = plan(pd.DataFrame({"t": ["x" * 5000]}))
    with pytest.raises(InputError, match="over the backend's limit"):
        p.write_jsonl_parts(tmp_path, max_bytes=1000)


def test_to_requests_ignores_result_columns_it_does_not_write(tmp_path):
    # only a job adds result columns; looking at the requests must not refuse the frame
    df = pd.DataFrame({"t": ["a"], "response": ["old"], "error": [None]})
    assert df.llama.to_requests("{t}").body.iloc[0]["messages"][0]["content"] == "a"
    assert df.llama.to_jsonl(tmp_path / "r.jsonl", "{t}") == 1


# ------------------------------------------------ bad cells: refused naming column and row
def both_paths(p, tmp_path):
    """The dict path and the JSONL path: each must refuse, with the same message."""
    messages = []
    for run in (p.to_frame, lambda: p.write_jsonl(tmp_path / "r.jsonl")):
        with pytest.raises(InputError) as info:
            run()
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    return messages[0]


@pytest.mark.parametrize("values,prompt,problem", [
    ([1.5, "b"], "{x:.2f}", r"format spec in \{x:\.2f\} does not fit the value 'b' \(str\)"),
    ([2, 1.5], "{x:d}", r"format spec in \{x:d\} does not fit the value 1\.5 \(float\)"),
    ([2, "b"], "{x:%s}", r"format spec in \{x:%s\} does not fit the value 2 \(int\)"),
    ([{"a"}, {1: "a", "1": "b"}], "{x}", "would both be written '1'"),
    (["text", b"\xff"], "{x!r}", "not UTF-8 text"),
    ([[1], [__import__("decimal").Decimal("Infinity")]], "{x}", "no JSON form"),
    ([b"ok", b"\xff"], "{x}", "not UTF-8 text"),
    (["fine", "bad \ud800 here"], "{x}", "lone surrogate"),
])
def test_a_cell_that_cannot_be_rendered_names_column_and_row(tmp_path, values, prompt, problem):
    # the first row renders, the second does not: the message must say which
    df = pd.DataFrame({"id": ["first", "second"], "x": pd.Series(values, dtype=object)})
    msg = both_paths(plan(df, prompt, custom_id="id"), tmp_path)
    row = "first" if prompt == "{x:%s}" else "second"
    assert re.match(f"column 'x', row '{row}': .*{problem}", msg), msg


def test_lone_surrogates_refused_where_they_are(tmp_path):
    df = pd.DataFrame({"t": ["a", "b"], "id": pd.Series(["i1", "i\ud8002"], dtype=object)})
    with pytest.raises(InputError, match=r"column 'id' \(custom_id\), at index 1: .*lone surrogate"):
        plan(df, custom_id="id")
    with pytest.raises(InputError, match=r"system=: .*lone surrogate"):
        plan(df, system="be \udc80 brief")
    with pytest.raises(InputError, match=r"prompt template: .*lone surrogate"):
        plan(df, "\ud800 {t}")
    msgs = pd.DataFrame({"m": [[{"role": "user", "content": "ok"}], [{"role": "user", "content": "x\ud800"}]]})
    with pytest.raises(InputError, match=r"column 'm', row 'row-1': the messages cannot be written as JSON"):
        build_requests(msgs, messages="m", model="m").write_jsonl(tmp_path / "m.jsonl")


def test_duplicate_column_names_refused_where_read():
    df = pd.DataFrame([["a", "b", "c", "d"]], columns=["t", "t", "id", "id"])
    with pytest.raises(InputError, match=r"\{t\}: the frame has 2 columns named 't'"):
        plan(df)
    df.columns = ["t", "u", "id", "id"]
    with pytest.raises(InputError, match=r"custom_id='id': the frame has 2 columns"):
        plan(df, custom_id="id")
    assert plan(df).to_frame().body.iloc[0]["messages"][0]["content"] == "a"  # unused copies are harmless


def test_uint64_request_lines_are_exact_in_both_paths(tmp_path):
    df = pd.DataFrame({"n": np.array([2**64 - 1, 2**63], dtype="uint64")})
    p = plan(df, "n={n}")
    p.write_jsonl(tmp_path / "r.jsonl")
    lines = [orjson.loads(x) for x in (tmp_path / "r.jsonl").read_bytes().splitlines()]
    assert lines == p.to_frame().to_dict("records")
    assert [x["body"]["messages"][0]["content"] for x in lines] == [f"n={2**64 - 1}", f"n={2**63}"]
    # and in a job (the Mock backend echoes what it was sent)
    out = df.llama.batch_predict("n={n}", backend=pdbatch.backends.Mock(), progress=False)
    assert out.response.tolist() == [f"echo: n={2**64 - 1}", f"echo: n={2**63}"]


def test_system_is_refused_for_embeddings():
    df = pd.DataFrame({"t": ["a"]})
    with pytest.raises(InputError, match="system= does not apply to embeddings"):
        df.llama.embed("{t}", system="You are helpful.", backend="mock", progress=False)
    with pytest.raises(InputError, match="system= does not apply to embeddings"):
        build_requests(df, "{t}", model="e", url="/v1/embeddings", params={"system": "x"})


def test_a_body_field_json_cannot_carry_is_named_alone():
    df = pd.DataFrame({"t": ["a"]})
    with pytest.raises(InputError, match=r"parameter\(s\) \['x'\] must be JSON-serialisable"):
        df.llama.to_requests("{t}", max_tokens=5, extra_body={"x": object()}, backend="mock")
