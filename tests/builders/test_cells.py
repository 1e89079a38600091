"""What one cell becomes in a prompt, the same on the dict path and the Arrow path; what is refused."""

import numpy as np
import pandas as pd
import pytest

from pdbatch.builders.template import Template
from pdbatch.errors import InputError
from tests.builders.test_template import both_ways


def test_bytes_are_decoded_as_utf8():
    df = pd.DataFrame({"b": pd.Series([b"caf\xc3\xa9", bytearray(b"x"), np.bytes_(b"np")], dtype=object)})
    assert both_ways("<{b}>", df) == ["<café>", "<x>", "<np>"]


def test_containers_render_as_json_where_the_form_is_obvious():
    import decimal

    df = pd.DataFrame({"o": pd.Series([
        {"b", "a"},
        [decimal.Decimal("1.10"), {3, 1, 2}],
        {1: "x", "k": [b"y"]},
        [pd.Timestamp("2024-01-02 03:04"), 2**70],
        frozenset({1, "a"}),
    ], dtype=object)})
    assert both_ways("{o}", df) == [
        '["a","b"]', "[1.10,[1,2,3]]", '{"1":"x","k":["y"]}', f'["2024-01-02T03:04:00",{2**70}]', '["a",1]',
    ]


@pytest.mark.parametrize("value,problem", [
    (b"\xff\xfe", "not UTF-8 text"),
    ([1j], "complex.*no JSON form"),
    ({(1, 2): "a"}, "dict key .* no JSON form"),
    ({1: "a", "1": "b"}, "would both be written '1'"),
    ([__import__("decimal").Decimal("NaN")], "no JSON form"),
    (object(), "no text form of its own"),
])
def test_cells_without_a_text_form_are_refused_naming_the_column(value, problem):
    df = pd.DataFrame({"ok": ["a", "b"], "o": pd.Series(["fine", value], dtype=object)})
    tpl = Template.parse("{o}", df.columns)
    for render_it in (tpl.render, tpl.render_arrow):
        with pytest.raises(InputError, match=r"column 'o', row at position 1: .*" + problem):
            render_it(df)
