"""The fast paths give what the simple paths give, on small data (speed lives in benchmarks/)."""

import contextlib
import random
import sys
import warnings
from decimal import Decimal

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

from pdbatch.builders.requests import build_requests
from pdbatch.builders.template import Template
from pdbatch.lines import outputs
from pdbatch.lines.jsontext import json_escape
from pdbatch.results import join
from pdbatch.results import parse as results
from pdbatch.results.join import join_results
from pdbatch.results.parse import parse_bytes, parse_files, parse_lines
from tests.builders.test_requests import AWKWARD
from tests.results.test_results import chat_line, openai_line


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
    "content list": dumps({"custom_id": "row-26",
                           "response": {"choices": [{"message": {"content": [{"type": "text"}]}}]}}),
    "response error": dumps({"custom_id": "row-27", "response": {"error": {"message": "overloaded"}}}),
    "response empty": dumps({"custom_id": "row-28", "response": {}}),
    "response null": dumps({"custom_id": "row-29", "response": None, "status": ""}),
    "float tokens": dumps({"custom_id": "row-30",
                           "response": resp(usage={"prompt_tokens": 3.0, "completion_tokens": 2.5})}),
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
    # Values msgspec's typed schema does not expect: the line (or its block)
    # must go to the reference and come out the same.
    "status number": dumps({"custom_id": "row-41", "status": 5, "response": resp("s5")}),
    "status list": dumps({"custom_id": "row-42", "status": ["bad"], "response": resp()}),
    "status false": dumps({"custom_id": "row-43", "status": False, "response": resp("sf")}),
    "duplicate status key": b'{"custom_id": "row-44", "status": "gone", "status": "", "response": '
                            + dumps(resp("dup")) + b"}",
    "custom_id object": dumps({"custom_id": {"a": 1}, "response": resp()}),
    "custom_id escaped": b'{"custom_id": "row-\\u0034\\u0035", "response": ' + dumps(resp("esc")) + b"}",
    "custom_id null": dumps({"custom_id": None, "response": resp("nul")}),
    "content number": dumps({"custom_id": "row-46", "response": {"choices": [{"message": {"content": 42}}]}}),
    "content object": dumps({"custom_id": "row-47", "response": {"choices": [{"message": {"content": {"k": 1.5}}}]}}),
    "finish number": dumps({"custom_id": "row-48", "response": {"choices": [{"text": "t", "finish_reason": 3}]}}),
    "message string": dumps({"custom_id": "row-49", "response": {"choices": [{"message": "hi", "text": "t"}]}}),
    "message empty, text": dumps({"custom_id": "row-50", "response": {"choices": [{"message": {}, "text": "tt"}]}}),
    "content and text": dumps({"custom_id": "row-51", "response": {"choices": [{"message": {"content": "c"},
                               "text": "t"}]}}),
    "two choices": dumps({"custom_id": "row-52", "response": {"choices": [{"text": "first"}, {"text": "second"}]}}),
    "choices and data": dumps({"custom_id": "row-53", "response": {"choices": [{"text": "c"}],
                               "data": [{"embedding": [1]}]}}),
    "choices object": dumps({"custom_id": "row-54", "response": {"choices": {"0": {"text": "x"}}}}),
    "tokens as text": dumps({"custom_id": "row-55", "response": resp(usage={"prompt_tokens": "12",
                                                                             "completion_tokens": True})}),
    "tokens at int64 edges": dumps({"custom_id": "row-56", "response": resp(usage={"prompt_tokens": 2**63 - 1,
                                                                                    "completion_tokens": -(2**63)})}),
    "tokens past int64": dumps({"custom_id": "row-57", "response": resp(usage={"prompt_tokens": 2**63,
                                                                                "completion_tokens": 2**64 - 1})}),
    "tokens negative zero float": b'{"custom_id": "row-58", "response": {"choices": [{"text": "z"}], '
                                  b'"usage": {"prompt_tokens": -0.0, "completion_tokens": 1e2}}}',
    "usage string": dumps({"custom_id": "row-59", "response": {"choices": [{"text": "u"}], "usage": "none"}}),
    "response number": dumps({"custom_id": "row-60", "response": 7}),
    "response list": dumps({"custom_id": "row-61", "response": [resp()]}),
    "response empty string": dumps({"custom_id": "row-62", "response": "", "status": ""}),
    "error false": dumps({"custom_id": "row-63", "error": False, "response": resp("ef")}),
    "error empty list": dumps({"custom_id": "row-64", "error": [], "response": resp("el")}),
    "error and status": dumps({"custom_id": "row-65", "status": "Quota", "error": {"code": 1}, "response": resp()}),
    "whitespace status and error": dumps({"custom_id": "row-66", "status": " ", "error": "boom"}),
    "openai status_code float": dumps({"custom_id": "row-67", "response": {"status_code": 200.0, "body": resp("f")}}),
    "openai status_code text": dumps({"custom_id": "row-68", "response": {"status_code": "200", "body": resp("t")}}),
    "openai body string": dumps({"custom_id": "row-69", "response": {"status_code": 500, "body": "oops"}}),
    "openai no status_code": dumps({"custom_id": "row-70", "response": {"body": resp("nsc")}}),
    "openai 200 with error body": dumps({"custom_id": "row-71", "response": {"status_code": 200,
                                         "body": {"error": {"message": "inner"}}}}),
    "openai 200 embedding": dumps({"custom_id": "row-72", "response": {"status_code": 200, "body": {
                                   "data": [{"embedding": [0.25, -1]}], "usage": {"prompt_tokens": 3}}}}),
    "embedding past int64": dumps({"custom_id": "row-73", "response": {"data": [{"embedding": [2**63, 1]}]}}),
    "embedding big int": dumps({"custom_id": "row-74", "response": {"data": [{"embedding": [2**60 + 2**36 + 1]}]}}),
    "embedding bools": dumps({"custom_id": "row-75", "response": {"data": [{"embedding": [True, 0.5]}]}}),
    "embedding nested": dumps({"custom_id": "row-76", "response": {"data": [{"embedding": [[1.0, 2.0]]}]}}),
    "embedding empty": dumps({"custom_id": "row-77", "response": {"data": [{"embedding": []}]}}),
    "embedding tiny and huge": b'{"custom_id": "row-78", "response": {"data": [{"embedding": '
                               b'[1e-320, 3.4e38, 1e-50, 0.1]}]}}',
    "data null item": dumps({"custom_id": "row-79", "response": {"data": [None]}}),
    "huge request echo": chat_line("row-80", "big", request={"messages": [{"role": "user",
                                   "content": "\"q\"\n\u2028 é 😀 " * 40_000}]}),
    "unicode everywhere": chat_line("row-81", "é 😀 \u2028 \x00 日本", request={"é": ["😀", {"\ud7ff": 1}]}),
    "bad utf-8 in request echo": b'{"custom_id": "row-82", "request": {"x": "\xff\xfe"}, "response": '
                                 + dumps(resp("latin")) + b"}",
    "latin-1 line": ('{"custom_id": "row-83", "request": "caf\u00e9 au lait", '
                     '"response": {"choices": [{"text": "été"}]}}').encode("latin-1"),
    "bad utf-8 in content": b'{"custom_id": "row-84", "response": {"choices": [{"text": "\xc3("}]}}',
    "encoded surrogate in echo": b'{"custom_id": "row-85", "request": "\xed\xa0\x80", "response": '
                                 + dumps(resp()) + b"}",
    "lone surrogate escape in echo": b'{"custom_id": "row-86", "request": "\\ud800", "response": '
                                     + dumps(resp()) + b"}",
    "control character in echo": b'{"custom_id": "row-87", "request": "a\tb", "response": ' + dumps(resp()) + b"}",
    "NaN in echo": b'{"custom_id": "row-88", "request": {"t": NaN}, "response": ' + dumps(resp()) + b"}",
    "big integer in echo": b'{"custom_id": "row-89", "request": {"seed": 123456789012345678901234567890}, '
                           b'"response": ' + dumps(resp("bigint")) + b"}",
    "deep echo": b'{"custom_id": "row-90", "request": ' + b"[" * 500 + b"]" * 500 + b', "response": '
                 + dumps(resp("deep")) + b"}",
    "too deep echo": b'{"custom_id": "row-91", "request": ' + b"[" * 2000 + b"]" * 2000 + b', "response": '
                     + dumps(resp("deeper")) + b"}",
    "two objects on a line": chat_line("row-92", "one") + b" " + chat_line("row-93", "two"),
    "two objects touching": chat_line("row-94", "one") + chat_line("row-95", "two"),
    "trailing comma": b'{"custom_id": "row-96", "response": {"choices": [{"text": "x"},]}}',
    "leading spaces": b"   " + chat_line("row-97", "indented") + b" \t",
    "form feed line": b"\x0c",
    "value spread over lines": b'{"custom_id": "row-98", "response":\n' + dumps(resp()) + b"}",
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
        return results.typed(parse_lines(lines))


def assert_same(fast, slow):
    pd.testing.assert_frame_equal(fast.drop(columns="embedding"), slow.drop(columns="embedding"))
    for a, b in zip(fast["embedding"], slow["embedding"], strict=True):
        assert (a is None and b is None) or (a.dtype == b.dtype == np.float32 and a.tolist() == b.tolist())


@pytest.mark.parametrize("plain", [3, 300])
@pytest.mark.parametrize("name", list(SHAPES))
def test_each_shape_parses_the_same_both_ways(name, plain):
    # Surrounded by plain lines, so that msgspec decodes the block and the odd
    # line is left to the reference alone (or, when it breaks the block's
    # decode, each line of the block is decoded on its own) without changing a
    # row, in a short block (3 plain lines) and a longer one (300).
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
    for block in (1 << 30, 64 << 10, 4 << 10, 512):
        monkeypatch.setattr(results, "BLOCK_BYTES", block)
        with quiet():
            assert_same(parse_bytes(data), slow)


@pytest.mark.parametrize("limit", [1000, 3000])
def test_a_deep_line_reads_the_same_whatever_the_recursion_limit(limit):
    # IPython's completer (jedi) raises the limit to 3000 on import, which lets
    # msgspec read deeper than orjson's fixed 1024: both paths must still agree.
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        test_each_shape_parses_the_same_both_ways("too deep echo", 3)
        test_each_shape_parses_the_same_both_ways("too deep echo", 300)
        deep = parse_bytes(SHAPES["too deep echo"] + b"\n")
    finally:
        sys.setrecursionlimit(old)
    read = deep["response"].notna().item()
    assert read == (limit > 2000), deep["error"].item()  # 2000 levels: read only when the interpreter allows it


def test_unreadable_lines_are_counted_in_a_warning():
    with pytest.warns(RuntimeWarning, match="2 output line"):
        out = parse_bytes(b"garbage\n" + chat_line("row-0", "a") + b"\n{oops\n")
    assert out["custom_id"].tolist() == ["row-0"]


def test_common_shapes_never_take_the_per_line_path(monkeypatch):
    calls = []
    real = outputs.outcome
    monkeypatch.setattr(outputs, "outcome", lambda obj: calls.append(obj) or real(obj))
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


def test_parse_files_lines_longer_than_a_block_and_no_final_newline(tmp_path, monkeypatch):
    # The reader reuses one buffer and grows it for a line longer than a block.
    monkeypatch.setattr(results, "BLOCK_BYTES", 4096)
    rng = random.Random(3)
    lines = [chat_line(f"row-{i}", "w" * rng.choice([0, 10, 5000, 20_000])) for i in range(200)]
    lines.insert(50, SHAPES["status object"])
    lines.insert(120, SHAPES["malformed with id"])
    path = tmp_path / "long.jsonl"
    path.write_bytes(b"\n".join(lines))  # the last line is whole but has no newline
    whole = parse_files([path, path])
    assert len(whole) == 2 * len(lines)
    assert_same(whole, typed_reference(path.read_bytes().split(b"\n") * 2))
    done = parse_files([path], complete_only=True)
    assert_same(done, typed_reference(lines[:-1]))


def test_a_block_of_embeddings_reads_like_the_reference(monkeypatch):
    calls = []
    real = outputs.outcome
    monkeypatch.setattr(outputs, "outcome", lambda obj: calls.append(obj) or real(obj))
    rng = random.Random(4)
    lines = [dumps({"custom_id": f"row-{i}", "status": "",
                    "response": {"object": "list", "data": [{"embedding": [rng.uniform(-1, 1) for _ in range(i % 9)]
                                                              + [i, -(2**40)]}], "usage": {"prompt_tokens": i}}})
             for i in range(600)]
    lines[7] = dumps({"custom_id": "row-7", "status": "Internal error"})
    lines[8] = dumps({"custom_id": "row-8", "response": {"data": [{"embedding": None}]}})
    data = b"\n".join(lines) + b"\n"
    fast = parse_bytes(data)
    assert [c["custom_id"] for c in calls] == ["row-8"]
    assert_same(fast, typed_reference(data.split(b"\n")))
    assert fast["embedding"].iloc[10].tolist()[-2:] == [10.0, -(2.0**40)] and fast["prompt_tokens"].iloc[10] == 10


def test_one_odd_line_sends_only_its_block_line_by_line(monkeypatch):
    # A value of an unexpected type makes msgspec reject the whole block; its
    # lines are then decoded one by one, and only the odd one goes to the reference.
    calls = []
    real = outputs.outcome
    monkeypatch.setattr(outputs, "outcome", lambda obj: calls.append(obj) or real(obj))
    lines = [chat_line(f"row-{i}", f"t{i}") for i in range(3000)]
    lines[1500] = SHAPES["status object"]
    data = b"\n".join(lines) + b"\n"
    fast = parse_bytes(data)
    assert [c["custom_id"] for c in calls] == ["row-7"]
    assert_same(fast, typed_reference(data.split(b"\n")))


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
    out["error"] = pd.array([join.MISSING if r is None else r["error"] for r in rows], dtype="string")
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
    assert join.positions_of(ids, None, 13).tolist() == [0, 12, -1, -1, -1, -1, -1, -1, -1, 5]
    assert join.positions_of(ids, None, 5).tolist()[-1] == -1
    assert join.positions_of(pd.Series(["row-99999999999999999999"]), None, 5).tolist() == [-1]


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
        u=np.array([2**64 - 1 - i for i in range(500)], dtype="uint64"),
        U=pd.array([2**63 + i for i in range(500)], dtype="UInt64"),
        x=pd.Series([{i, -i} if i % 3 else [Decimal(i) / 8, b"b"] for i in range(500)], dtype=object),
    )
    for text in ("{t}", "<{i}> {b} {d} {c} {py} {obj} {o} {f:.2f} {n!r}", "lit only", "{n}{n}", "{u} {U} {x}"):
        tpl = Template.parse(text, df.columns)
        assert tpl.render_arrow(df).to_pylist() == tpl.render(df)


@pytest.mark.parametrize("kw", [
    {"prompt": "Row {n} ({f:.3f}): {t} / {o} {t!r}", "system": "Sys \"q\" 😀", "params": {"max_tokens": 7}},
    {"prompt": "{s}|{t}", "on_null": "skip", "custom_id": "id"},
    {"prompt": "no fields at all"},
    {"prompt": "{t}", "url": "/v1/embeddings", "params": {"input_type": "query"}},
])
def test_cache_keys_from_arrow_prompts_are_the_keys_of_each_payload(kw):
    # plan_reuse keys template rows from Arrow arrays, without a str or a body per row: the same keys
    from pdbatch.jobs.reuse import _row_keys
    from pdbatch.store.cache import RowKeys

    df = awkward_frame(3_000)
    df["t"] = [AWKWARD[i % len(AWKWARD)][:300] + str(i % 50) for i in range(len(df))]
    plan = build_requests(df, kw.pop("prompt"), model="m 😀", **kw)
    fast = [(p, k) for pos, keys in _row_keys(plan, "mock", {"w": 1}) for p, k in zip(pos.tolist(), keys, strict=True)]
    reference = RowKeys("mock", plan.model, plan.url, plan.body(""), "text", {"w": 1})
    assert [p for p, _ in fast] == plan.positions.tolist()
    assert [k for _, k in fast] == [reference.key(t) for t in plan.payloads(plan.positions)]
    # one key per distinct body: rows repeat exactly when their bodies do
    bodies = [orjson.dumps(plan.body(t), option=orjson.OPT_SORT_KEYS) for t in plan.payloads(plan.positions)]
    assert len(set(k for _, k in fast)) == len(set(bodies))
    # the backend's name is part of every key
    assert next(iter(_row_keys(plan, "other", {"w": 1})))[1][0] != fast[0][1]


def test_cache_keys_of_message_lists_follow_their_bodies():
    from pdbatch.jobs.reuse import _row_keys

    msgs = [[{"role": "user", "content": "a"}], [{"content": "a", "role": "user"}], [{"role": "user", "content": "b"}]]
    plan = build_requests(pd.DataFrame({"m": msgs}), messages="m", model="m", system="s")
    keys = next(iter(_row_keys(plan, "mock", {})))[1]
    assert keys[0] == keys[1] != keys[2]  # key order in a message does not change the body sent
