"""The per-line checks of a request file (pdbatch.builders.linecheck): what a bad line is told."""

import pandas as pd
import pytest

import pdbatch
from pdbatch.backends import Mock
from pdbatch.builders.linecheck import shown
from pdbatch.builders.requestfile import plan_lines

CHAT = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0}


def test_a_request_frames_value_that_is_not_json_is_named_not_a_crash():
    # a frame given to run_requests directly may hold any Python object where a file would hold JSON
    df = pd.DataFrame({"custom_id": ["a", "b", "c"], "method": ["POST", {"POST"}, "POST"],
                       "url": ["/v1/chat/completions"] * 3, "body": [CHAT, CHAT, {1, 2}]})
    errors = plan_lines(df, Mock(), None).errors  # each such line is refused with its value quoted
    assert errors[1] == "invalid request: method {'POST'}: batch request lines are POST"
    assert errors[2] == "invalid request: body must be a JSON object, not {1, 2}"
    # running it: the job's copy of the frame cannot keep a set, which is said naming the column and row
    with pytest.raises(pdbatch.InputError, match=r"column 'method' holds values .*row 1: set"):
        pdbatch.run_requests(df, backend=Mock(), progress=False)


def test_shown_quotes_json_and_cuts_long_values():
    assert shown({"a": 1}) == '{"a":1}' and shown("x") == "'x'" and shown({1}) == "{1}"
    assert len(shown("y" * 100)) == 60 and shown("y" * 100).endswith("...")
