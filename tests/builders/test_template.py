import numpy as np
import pandas as pd
import pytest

from pdbatch.builders.template import Template
from pdbatch.errors import InputError


def render(template, frame):
    return Template.parse(template, frame.columns).render(frame)


def test_fills_fields_row_by_row_in_order():
    df = pd.DataFrame({"a": ["x", "y"], "b": ["1", "2"]})
    assert render("{a}-{b}!", df) == ["x-1!", "y-2!"]
    assert render("{b}", df) == ["1", "2"]
    assert render("no fields", df) == ["no fields", "no fields"]
    assert render("{{literal}} {a}", df) == ["{literal} x", "{literal} y"]


def test_unknown_field_lists_columns():
    df = pd.DataFrame({"review": ["x"], "stars": [1]})
    with pytest.raises(InputError, match=r"\{revew\} is not a column.*'review', 'stars'"):
        Template.parse("{revew}", df.columns)


@pytest.mark.parametrize("field", ["review.__class__", "review[0]", "review.__class__.__init__.__globals__"])
def test_attribute_and_index_access_refused(field):
    df = pd.DataFrame({"review": ["x"]})
    with pytest.raises(InputError, match="attribute or index access"):
        Template.parse("{" + field + "}", df.columns)


def test_positional_fields_refused():
    df = pd.DataFrame({"review": ["x"]})
    for t in ("{}", "{0}"):
        with pytest.raises(InputError, match="positional"):
            Template.parse(t, df.columns)


def test_broken_braces_explained():
    with pytest.raises(InputError, match="literal braces"):
        Template.parse("oops {", ["a"])


def test_column_names_with_dots_are_columns_not_attributes():
    df = pd.DataFrame({"a.b": ["v"]})
    assert render("{a.b}", df) == ["v"]


def test_non_string_values_render_sensibly():
    df = pd.DataFrame(
        {
            "i": np.array([1, 2], dtype=np.int64),
            "f": [0.1, 2.5],
            "b": [True, False],
            "d": pd.to_datetime(["2024-01-02", "2024-03-04"]),
            "t": pd.to_datetime(["2024-01-02 10:30:00", "2024-03-04 00:00:01"]),
            "o": pd.Series([np.int32(7), np.float64(1.5)], dtype=object),
            "l": [[1, 2], {"k": "v"}],
        }
    )
    assert render("{i}|{f}|{b}|{d}|{o}|{l}", df) == [
        "1|0.1|True|2024-01-02|7|[1,2]",
        "2|2.5|False|2024-03-04|1.5|{\"k\":\"v\"}",
    ]
    assert render("{t}", df) == ["2024-01-02 10:30:00", "2024-03-04 00:00:01"]


def test_format_spec_and_conversion():
    df = pd.DataFrame({"price": [3.14159], "name": ["x"]})
    assert render("{price:.2f} {name!r}", df) == ["3.14 'x'"]


def test_nullable_and_arrow_strings():
    df = pd.DataFrame({"s": pd.array(["é", "日本"], dtype="string")})
    assert render("<{s}>", df) == ["<é>", "<日本>"]


# ------------------------------------------------------ bad input, refused or rendered exactly
def both_ways(template, frame):
    """Render with the dict path and the Arrow path; they must agree."""
    tpl = Template.parse(template, frame.columns)
    plain = tpl.render(frame)
    assert tpl.render_arrow(frame).to_pylist() == plain
    return plain


@pytest.mark.parametrize("dtype", ["uint64", "UInt64", "uint64[pyarrow]"])
def test_uint64_past_int64_renders_exactly(dtype):
    df = pd.DataFrame({"n": pd.Series([2**64 - 1, 2**63, 7], dtype=dtype)})
    assert both_ways("{n}", df) == ["18446744073709551615", "9223372036854775808", "7"]


def test_unknown_conversion_refused_naming_the_field():
    with pytest.raises(InputError, match=r"\{x!z\}: unknown conversion !z"):
        Template.parse("{x!z}", ["x"])


@pytest.mark.parametrize("spec", [">50000000", "050000000", ".20000f", "x^10001", ",.10001"])
def test_huge_widths_and_precisions_refused_naming_the_field(spec):
    with pytest.raises(InputError, match=r"prompt field \{x:" + spec.replace("^", r"\^").replace(".", r"\.")
                       + r"\}.*over the limit of 10,000"):
        Template.parse("{x:" + spec + "}", ["x"])


def test_widths_and_precisions_up_to_the_limit_and_date_formats_are_fine():
    df = pd.DataFrame({"x": ["ab"], "d": pd.to_datetime(["2024-01-02"]), "f": [1.5]})
    assert len(both_ways("{x:>10000}", df)[0]) == 10_000
    assert both_ways("{x:.1}|{d:%Y/%m}|{f:+.3f}", df) == ["a|2024/01|+1.500"]


@pytest.mark.parametrize("columns", [[1, "1"], [True, "True"], ["x", "x"]])
def test_columns_that_read_the_same_are_refused(columns):
    field = str(columns[0])
    with pytest.raises(InputError, match=r"prompt field \{" + field + r"\}.*(ambiguous|2 columns named)"):
        Template.parse("{" + field + "}", columns)
