"""The fast paths give what the simple paths give, on small data (speed lives in benchmarks/)."""

import contextlib
import random
import warnings

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

from pdbatch import results
from pdbatch.requests import build_requests, json_escape
from pdbatch.results import join_results, parse_bytes, parse_files, parse_lines
from pdbatch.template import Template

from .test_requests import AWKWARD
from .test_results import chat_line, openai_line


def dumps(obj):
    return orjson.dumps(obj)


def resp(text="ok", **extra):
    return {"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1}, **extra}


#: One line of every shape the parsers must agree on, named for failure messages.
SHAPES = {
    "vertex": chat_line("row-0", "hello"),
    "vertex awkward text": chat_line("row-1", AWKWARD[0] + AWKWARD[1] + AWKWARD[2]),
    "vertex null status": dumps({"custom_id": "row-2", "response": resp(), "status": None}),
    "vertex no status": dumps({"custom_id": "row-3", "response": resp()}),
    "vertex failed": dumps({"custom_id": "row-4", "status": "Bad Request: {\"error\": \"too long\"}", "request": {}}),
    "vertex failed with spaces": dumps({"custom_id": "row-5", "status": "  Internal  \n"}),
    "whitespace status": dumps({"custom_id": "row-6", "status": "   ", "response": resp("ws")}),
    "status object": dumps({"custom_id": "row-7", "status": {"code": 3, "message": "bad arg"}}),
    "openai ok": openai_line("row-8", "hi"),
    "openai error": openai_line("row-9", error={"code": "rate_limit", "message": "slow down"}),
    "openai error numeric code": openai_line("row-10", error={"code": 429, "message": "slow"}),
    "openai error string": dumps({"custom_id": "row-11", "error": "plain text error"}),
    "openai empty error object": dumps({"custom_id": "row-12", "error": {}, "response": {"status_code": 200,
                                        "body": resp("fine")}}),
    "openai http 400": openai_line("row-13", status_code=400),
    "openai body null": dumps({"custom_id": "row-14", "response": {"status_code": 200, "body": None}}),
    "bigquery json text": dumps({"custom_id": "row-15", "response": orjson.dumps(resp("bq")).decode(), "status": None}),
    "bigquery bad json text": dumps({"custom_id": "row-16", "response": "{not json", "status": ""}),
    "embedding": dumps({"custom_id": "row-17", "response": {"object": "list", "data": [{"embedding": [0.5, 1, -2e-3]}],
                        "usage": {"prompt_tokens": 4}}, "status": ""}),
    "embedding null": dumps({"custom_id": "row-18", "response": {"data": [{"embedding": None}]}}),
    "embedding not numbers": dumps({"custom_id": "row-19", "response": {"data": [{"embedding": ["a", "b"]}]}}),
    "data empty": dumps({"custom_id": "row-20", "response": {"data": []}}),
    "choices empty": dumps({"custom_id": "row-21", "response": {"choices": []}}),
    "choices null": dumps({"custom_id": "row-22", "response": {"choices": None, "usage": {"prompt_tokens": 1}}}),
    "choice null": dumps({"custom_id": "row-23", "response": {"choices": [None]}}),
    "message null, text": dumps({"custom_id": "row-24", "response": {"choices": [{"message": None, "text": "t"}]}}),
    "content null": dumps({"custom_id": "row-25", "response": {"choices": [{"message": {"content": None}}]}}),
    "content list": dumps({"custom_id": "row-26", "response": {"choices": [{"message": {"content": [{"type": "text"}]}}]}}),
    "response error": dumps({"custom_id": "row-27", "response": {"error": {"message": "overloaded"}}}),
    "response empty": dumps({"custom_id": "row-28", "response": {}}),
    "response null": dumps({"custom_id": "row-29", "response": None, "status": ""}),
    "float tokens": dumps({"custom_id": "row-30", "response": resp(usage={"prompt_tokens": 3.0, "completion_tokens": 2.5})}),
    "huge tokens": b'{"custom_id": "row-31", "response": {"choices": [{"text": "x"}], "usage": {"prompt_tokens": '
                   + str(2**70).encode() + b"}}}",
    "numeric id": dumps({"custom_id": 32, "response": resp()}),
    "no id": dumps({"response": resp("orphan")}),
    "duplicate key": b'{"custom_id": "row-34", "custom_id": "row-35", "response": {"choices": []}}',
    "not an object": b"[1, 2, 3]",
    "malformed with id": b'{"custom_id": "row-36", "response": {"choi',
    "malformed without id": b"not json and no id",
    "crlf": chat_line("row-37", "crlf") + b"\r",
    "unknown id": chat_line("row-999999", "stray"),
    "long line": chat_line("row-38", "y" * 300_000),
}


@contextlib.contextmanager
def quiet():
    """Unreadable-line and unknown-id warnings are tested on their own below."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def typed_reference(lines):
    """The simple path: one line at a time, then the typed columns."""
    with quiet():
        return results._typed(parse_lines(lines))


def assert_same(fast, slow):
    pd.testing.assert_frame_equal(fast.drop(columns="embedding"), slow.drop(columns="embedding"))
    for a, b in zip(fast["embedding"], slow["embedding"], strict=True):
        assert (a is None and b is None) or (a.dtype == b.dtype == np.float32 and a.tolist() == b.tolist())


@pytest.mark.parametrize("plain", [3, 300])
@pytest.mark.parametrize("name", list(SHAPES))
def test_each_shape_parses_the_same_both_ways(name, plain):
    # Surrounded by plain lines, so that Arrow reads the block and the odd line
    # is handed over on its own (or its block falls back) without changing a
    # row. Among 300, the lean read keeps the block and the odd line goes per
    # line; among 3, the block is read again with the full schema.
    lines = [chat_line(f"row-{100 + i}", f"x{i}") for i in range(plain)]
    lines.insert(1, SHAPES[name])
    data = b"\n".join(lines) + b"\n"
    with quiet():
        fast = parse_bytes(data)
    assert_same(fast, typed_reference(data.split(b"\n")))


def test_every_shape_together_in_small_blocks(monkeypatch):
    lines = list(SHAPES.values()) * 5 + [chat_line(f"row-{i}", f"a{i}") for i in range(2000)]
    random.Random(1).shuffle(lines)
    data = b"\n".join(lines) + b"\n\n  \n" + b'{"custom_id": "row-40", "response": {"ch'  # blank lines, truncated end
    slow = typed_reference(data.split(b"\n"))
    for block, sub in ((1 << 30, 1 << 20), (64 << 10, 4 << 10), (4 << 10, 512)):
        monkeypatch.setattr(results, "BLOCK_BYTES", block)
        monkeypatch.setattr(results, "SUB_BLOCK_BYTES", sub)
        with quiet():
            assert_same(parse_bytes(data), slow)


def test_unreadable_lines_are_counted_in_a_warning():
    with pytest.warns(RuntimeWarning, match="2 output line"):
        out = parse_bytes(b"garbage\n" + chat_line("row-0", "a") + b"\n{oops\n")
    assert out["custom_id"].tolist() == ["row-0"]


def test_common_shapes_never_take_the_per_line_path(monkeypatch):
    calls = []
    real = results._extract
    monkeypatch.setattr(results, "_extract", lambda obj: calls.append(obj) or real(obj))
    lines = [chat_line(f"row-{i}", f"t{i}") for i in range(500)]
    lines += [openai_line(f"row-{i}", f"o{i}") for i in range(500, 700)]
    lines += [dumps({"custom_id": f"row-{i}", "status": "Internal error"}) for i in range(700, 720)]
    lines += [dumps({"custom_id": f"row-{i}", "response": {"data": [{"embedding": [1.0, 2.0]}]}, "status": ""})
              for i in range(720, 730)]
    lines.append(openai_line("row-730", error={"code": "x", "message": "y"}))  # only this one goes per line
    out = parse_bytes(b"\n".join(lines) + b"\n")
    assert len(out) == 731 and len(calls) == 1 and calls[0]["custom_id"] == "row-730"
    assert out["error"].iloc[700] == "Internal error" and out["response"].iloc[600] == "o600"


def test_parse_files_streams_blocks_and_can_drop_a_half_written_line(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "BLOCK_BYTES", 1000)
    lines = [chat_line(f"row-{i}", "z" * (i % 50)) for i in range(300)]
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n" + b'{"custom_id": "row-300", "resp')
    whole = parse_files([path])
    assert len(whole) == 301 and whole["error"].iloc[-1].startswith("malformed")
    assert_same(whole, typed_reference(path.read_bytes().splitlines()))
    done = parse_files([path], complete_only=True)
    assert done["custom_id"].tolist() == [f"row-{i}" for i in range(300)]


def test_typed_columns():
    out = parse_bytes(chat_line("row-0", "a") + b"\n" + SHAPES["vertex failed"] + b"\n")
    assert [str(out[c].dtype) for c in out.columns] == ["string", "string", "string", "Int64", "Int64",
                                                        "object", "string"]
    assert out["response"].isna().tolist() == [False, True]


# ------------------------------------------------------------------ joins


def reference_join(df, lines, custom_ids=None):
    """The simple join: a dict per id, a success beats a failure, later beats earlier."""
    with quiet():
        parsed = parse_lines(lines)
    best = {}
    for rec in parsed.to_dict("records"):
        old = best.get(rec["custom_id"])
        if old is None or rec["error"] is None or old["error"] is not None:
            best[rec["custom_id"]] = rec
    ids = custom_ids if custom_ids is not None else [f"row-{i}" for i in range(len(df))]
    out = df.copy()
    rows = [best.get(i) for i in ids]
    for col, dtype in (("response", "string"), ("finish_reason", "string"), ("prompt_tokens", "Int64"),
                       ("completion_tokens", "Int64")):
        out[col] = pd.array([None if r is None else r[col] for r in rows], dtype=dtype)
    out["error"] = pd.array([results.MISSING if r is None else r["error"] for r in rows], dtype="string")
    return out


def output_lines(ids, seed=0):
    rng = random.Random(seed)
    lines = []
    for k, cid in enumerate(ids):
        r = rng.random()
        if r < 0.02:
            continue  # missing
        if r < 0.05:
            lines.append(dumps({"custom_id": cid, "status": f"Internal error {k}"}))
        elif r < 0.07:
            lines.append(openai_line(cid, error={"code": "e", "message": f"m{k}"}))
        else:
            lines.append(chat_line(cid, AWKWARD[k % 4] + str(k), p=k % 50, c=k % 7))
        if r > 0.97:  # a duplicate: failed first, then the success
            lines.insert(rng.randrange(len(lines)), dumps({"custom_id": cid, "status": "retry"}))
    lines += [chat_line("row-99999999", "stray"), chat_line("row-01", "not ours"), chat_line("zzz", "?")]
    rng.shuffle(lines)
    return lines


@pytest.mark.parametrize("user_ids", [False, True])
def test_join_20k_shuffled_matches_the_simple_join(user_ids):
    n = 20_000
    df = pd.DataFrame({"text": [f"t{i}" for i in range(n)]}, index=np.arange(n)[::-1] * 3)
    ids = np.array([f"id \"{i}\" é" for i in range(n)], dtype=object) if user_ids else None
    lines = output_lines(ids if user_ids else [f"row-{i}" for i in range(n)])
    expected = reference_join(df, lines, None if ids is None else list(ids))
    with pytest.warns(RuntimeWarning, match="matches no row"):
        fast = join_results(df, parse_bytes(b"\n".join(lines) + b"\n"), kind="chat", custom_ids=ids)
    with pytest.warns(RuntimeWarning, match="matches no row"):
        slow = join_results(df, parse_lines(lines), kind="chat", custom_ids=ids)
    pd.testing.assert_frame_equal(fast, expected)
    pd.testing.assert_frame_equal(slow, expected)


def test_positions_of_takes_only_ids_as_written():
    ids = pd.Series(["row-0", "row-12", "row-012", "row-+1", "row- 1", "row-", "row-1e3", "x", None, "row-5"],
                    dtype="string")
    assert results.positions_of(ids, None, 13).tolist() == [0, 12, -1, -1, -1, -1, -1, -1, -1, 5]
    assert results.positions_of(ids, None, 5).tolist()[-1] == -1
    assert results.positions_of(pd.Series(["row-99999999999999999999"]), None, 5).tolist() == [-1]


def test_embeddings_join_keeps_float32_arrays_per_row():
    df = pd.DataFrame({"t": ["a", "b", "c"]})
    lines = [dumps({"custom_id": f"row-{i}", "response": {"data": [{"embedding": [i, 0.25]}]}, "status": ""})
             for i in (2, 0)]
    out = join_results(df, parse_bytes(b"\n".join(lines)), kind="embeddings")
    assert out.embedding.iloc[0].dtype == np.float32 and out.embedding.iloc[2].tolist() == [2.0, 0.25]
    assert out.embedding.iloc[1] is None and out.error.iloc[1].startswith("missing")


# --------------------------------------------------------------- requests


def test_json_escape_matches_orjson_byte_for_byte():
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(128)] + ["é", "日", "😀", "\u2028", "\u2029", "\x7f", "\u0085"]
    values = [c for c in alphabet] + AWKWARD + ["".join(rng.choice(alphabet) for _ in range(rng.randrange(30)))
                                                 for _ in range(3000)]
    got = json_escape(pa.array(values)).to_pylist()
    assert got == [orjson.dumps(v)[1:-1].decode() for v in values]


def awkward_frame(n):
    rng = random.Random(2)
    text = [AWKWARD[i % len(AWKWARD)][:300] + f" {i}" if i % 3 else f"plain review {i}" for i in range(n)]
    return pd.DataFrame({
        "t": text,
        "n": range(n),
        "f": [rng.random() for _ in range(n)],
        "o": pd.Series([{"k": i} if i % 2 else [i, "x"] for i in range(n)], dtype=object),
        "s": pd.array([f"s{i}" if i % 7 else None for i in range(n)], dtype="string"),
        "id": [f"id-{i}-\"q\"\\" for i in range(n)],
    })


@pytest.mark.parametrize("kw", [
    {"prompt": "Row {n} ({f:.3f}): {t} / {o} {t!r}", "system": "Sys \"q\" 😀", "params": {"max_tokens": 7}},
    {"prompt": "{t}", "custom_id": "id", "params": {"stop": ["\n"], "response_format": {"type": "json_object"}}},
    {"prompt": "{s}|{t}", "on_null": "skip"},
    {"prompt": "no fields at all"},
    {"prompt": "{t}", "url": "/v1/embeddings", "params": {"input_type": "query"}},
])
def test_20k_request_lines_parse_back_to_the_simple_path(tmp_path, kw):
    df = awkward_frame(20_000)
    plan = build_requests(df, kw.pop("prompt"), model="m 😀", **kw)
    path = tmp_path / "r.jsonl"
    n = plan.write_jsonl(path)
    data = path.read_bytes()
    assert n == data.count(b"\n") == len(plan.positions)
    assert [orjson.loads(x) for x in data.splitlines()] == plan.to_frame().to_dict("records")
    assert b"".join(c for c, _ in plan.iter_jsonl(chunk_rows=777)) == data


def test_render_arrow_matches_render():
    df = awkward_frame(500).assign(
        i=pd.array(range(500), dtype="Int64"),
        b=[i % 2 == 0 for i in range(500)],
        d=pd.date_range("2024-01-01", periods=500, freq="37h"),
        c=pd.Categorical([f"c{i % 3}" for i in range(500)]),
        py=pd.array([f"p{i}" for i in range(500)], dtype="string[python]"),
        obj=pd.Series([f"o{i}" for i in range(500)], dtype=object),
    )
    for text in ("{t}", "<{i}> {b} {d} {c} {py} {obj} {o} {f:.2f} {n!r}", "lit only", "{n}{n}"):
        tpl = Template.parse(text, df.columns)
        assert tpl.render_arrow(df).to_pylist() == tpl.render(df)
