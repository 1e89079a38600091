"""A frame row whose own messages the model cannot take is that row's error; the others run (jobs/rowmodel.py).

Planned against the real Vertex backend object: planning asks it nothing over
the network. The run against the emulator is in tests/backends/test_vertex_gemini.py.
"""

from __future__ import annotations

import pandas as pd
import pytest

from pdbatch.backends import Local
from pdbatch.backends.vertex import Vertex
from pdbatch.call import Call, Options
from pdbatch.errors import InputError, PdbatchWarning
from pdbatch.jobs.prepare import prepare

FLASH = "gemini-3.5-flash"
HI = [{"role": "user", "content": "Hi"}]
TOOL = [{"role": "user", "content": "What is 6 x 7?"}, {"role": "tool", "content": "42"}]


def vertex() -> Vertex:
    return Vertex(project="p", staging="gs://my-bucket/pdbatch/")


def chats(*rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"q{i}" for i in range(len(rows))], "chat": list(rows)})


def test_preview_counts_a_row_whose_messages_gemini_cannot_take_as_skipped():
    pv = chats(HI, TOOL, HI).llama.preview(messages="chat", custom_id="id", model=FLASH, backend=vertex())
    assert (pv.n_rows, pv.n_requests, pv.n_skipped) == (3, 2, 1)
    assert pv.requests.custom_id.tolist() == ["q0", "q2"]  # the sample shows only what would be sent
    assert pv.prompt_tokens.isna().tolist() == [False, True, False]


def test_the_run_marks_the_row_failed_names_it_and_warns():
    frame = chats(HI, TOOL, HI)
    call = Call(messages="chat", custom_id="id", model=FLASH)
    with pytest.warns(PdbatchWarning, match=r"1 row\(s\) \(q1\) have messages google/gemini-3.5-flash cannot take "
                                            r"and are not sent"):
        p = prepare(frame, call, vertex(), Options(cache=False))
    assert p.part.send.positions.tolist() == [0, 2]
    assert list(p.plan.skipped) == [1]
    error = p.plan.skipped[1]
    # the row (column and custom_id), the problem (which message, which role) and the fix
    assert error.startswith("invalid request: column 'chat', row 'q1': google/gemini-3.5-flash cannot take these "
                            "messages: messages[1]: role 'tool' has no Gemini equivalent")
    assert error.endswith("Change this row's messages, or run the call on a model that takes them (model=)")
    assert p.part.counts.skipped == 1 and p.part.counts.sent == 2


@pytest.mark.parametrize(("messages", "problem"), [
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
     "messages[0]: content part of type 'image_url' is not converted"),
    ([{"role": "system", "content": "Be brief."}], "a Gemini request needs a user message besides the system prompt"),
    ([{"role": "user", "content": "Hi", "tool_calls": []}], "messages[0]: tool_calls cannot be sent to Gemini"),
])
def test_each_refusal_of_the_conversion_is_that_rows_error(messages, problem):
    # system= is every row's: a row's list of system messages only still has no user message
    pv = chats(HI, messages).llama.preview(messages="chat", system="Be brief.", model=FLASH, backend=vertex())
    assert (pv.n_requests, pv.n_skipped) == (1, 1)
    p = prepare(chats(HI, messages), Call(messages="chat", system="Be brief.", model=FLASH), vertex(), Options(),
                check_limits=False)
    assert problem in p.plan.skipped[1] and "row 'row-1'" in p.plan.skipped[1]


def test_a_call_whose_every_row_is_refused_is_refused_before_anything_is_sent():
    with pytest.raises(InputError, match=r"every row \(2: row-0, row-1\) has messages google/gemini-3.5-flash "
                                         r"cannot take; nothing was submitted\. The first: column 'chat', row "
                                         r"'row-0': .*role 'tool'"):
        chats(TOOL, TOOL).llama.batch_predict(messages="chat", model=FLASH, backend=vertex(), progress=False)


class CountingVertex(Vertex):
    """The real backend, counting how often it is asked what a model cannot take."""

    asked = 0

    def unsupported_for_model(self, model, kind, params):  # type: ignore[no-untyped-def]
        CountingVertex.asked += 1
        return super().unsupported_for_model(model, kind, params)


@pytest.mark.parametrize(("model", "messages"), [
    (FLASH, None),  # a template call: no row has messages of its own
    ("gpt-oss-120b-maas", "chat"),  # an open model reads OpenAI lines: any messages go
])
def test_rows_are_not_looked_at_unless_the_call_has_messages_and_the_model_checks_them(model, messages):
    frame = chats(*[HI] * 50).assign(text="Hi")
    CountingVertex.asked = 0
    prompt = None if messages else "{text}"
    p = prepare(frame, Call(prompt=prompt, messages=messages, model=model), CountingVertex(project="p",
                staging="gs://my-bucket/pdbatch/"), Options(), check_limits=False)
    assert CountingVertex.asked == 1  # the shared parameters, once
    assert p.plan.skipped == {}
    # the backend says which calls need the per-row question
    assert not Local().checks_messages("any.gguf", "chat")
    assert not vertex().checks_messages("google/gemini-embedding-2", "embeddings")
    assert vertex().checks_messages(f"google/{FLASH}", "chat")


def test_a_tool_message_goes_to_a_model_that_takes_it():
    p = prepare(chats(HI, TOOL), Call(messages="chat", model="gpt-oss-120b-maas"), vertex(), Options(),
                check_limits=False)
    assert p.plan.skipped == {} and p.part.send.positions.tolist() == [0, 1]
