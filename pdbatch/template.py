"""Prompt templates: ``"Classify: {review}"`` filled column-wise from a DataFrame.

Templates use ``str.format`` field syntax but only plain column names: attribute
and index access (``{review.__class__}``, ``{review[0]}``) are refused, because
templates travel in notebooks shared between people and ``str.format`` would
happily walk object attributes. Values are rendered once per column, not once
per row, so a million rows cost a few vectorised conversions and one join.
:meth:`Template.render_arrow` goes further for the JSONL writer: it joins the
columns with the literals inside Arrow, so no Python str is made per row.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import InputError

__all__ = ["Template", "render_value"]


@dataclass(frozen=True)
class _Field:
    column: str
    spec: str  # format spec after ':', e.g. ".2f"
    conversion: str | None  # 'r', 's' or 'a'


@dataclass(frozen=True)
class Template:
    """A parsed prompt template.

    Attributes
    ----------
    text : str
        The template as written.
    literals : tuple of str
        The text between fields; one more than ``fields``.
    fields : tuple
        The fields in order of appearance.
    """

    text: str
    literals: tuple[str, ...]
    fields: tuple[_Field, ...]

    @classmethod
    def parse(cls, text: str, columns: Sequence[Any]) -> Template:
        """Parse ``text`` and check every field against ``columns``.

        Raises
        ------
        InputError
            A field is not a column, is empty or positional, or uses attribute or
            index access; the message lists the columns.
        """
        if not isinstance(text, str):
            raise InputError(f"prompt must be a str template such as 'Classify: {{review}}', got {type(text).__name__}")
        names = {str(c): c for c in columns}
        literals: list[str] = []
        fields: list[_Field] = []
        pending = ""
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise InputError(
                f"prompt template {text!r} is not valid: {exc}. Write literal braces as '{{{{' and '}}}}'."
            ) from exc
        for literal, field, spec, conversion in parsed:
            pending += literal
            if field is None:
                continue
            if field not in names:
                raise InputError(_field_error(field, list(names)))
            if spec and ("{" in spec):
                raise InputError(f"prompt field {{{field}:{spec}}}: nested fields in a format spec are not supported")
            literals.append(pending)
            pending = ""
            fields.append(_Field(field, spec or "", conversion))
        literals.append(pending)
        return cls(text, tuple(literals), tuple(fields))

    @property
    def columns(self) -> list[str]:
        """The columns the template reads, each once, in order of first use."""
        return list(dict.fromkeys(f.column for f in self.fields))

    def render(self, frame: pd.DataFrame, column_map: dict[str, Any] | None = None) -> list[str]:
        """Fill the template for every row of ``frame`` (nulls must be handled before)."""
        n = len(frame)
        if not self.fields:
            return [self.literals[0]] * n
        lookup = column_map or {str(c): c for c in frame.columns}
        rendered = [_render_column(frame[lookup[f.column]], f) for f in self.fields]
        lits = self.literals
        if len(rendered) == 1:
            a, b = lits
            col = rendered[0]
            return [a + v + b for v in col] if (a or b) else list(col)
        # zip the column strings with the literals between them: one join per row
        out: list[str] = []
        parts = [None] * (2 * len(rendered) + 1)
        parts[0::2] = lits  # type: ignore[assignment]
        for values in zip(*rendered, strict=True):
            parts[1::2] = values  # type: ignore[assignment]
            out.append("".join(parts))  # type: ignore[arg-type]
        return out


    def render_arrow(self, frame: pd.DataFrame) -> pa.LargeStringArray:
        """Fill the template for every row of ``frame`` as one Arrow array.

        Gives the same strings as :meth:`render` (nulls must be handled
        before), but the per-row concatenation runs in Arrow: string columns
        of a pandas 3 frame are Arrow arrays already and are not copied.

        Parameters
        ----------
        frame : pandas.DataFrame
            The rows to render.

        Returns
        -------
        pyarrow.LargeStringArray
            One rendered prompt per row of ``frame``.
        """
        parts = self.arrow_parts(frame)
        if len(parts) == 1 and isinstance(parts[0], pa.Array):
            return parts[0]
        if not any(isinstance(p, pa.Array) for p in parts):
            return pa.array(["".join(parts)] * len(frame), type=pa.large_string())  # type: ignore[arg-type]
        return pc.binary_join_element_wise(*[_large(p) for p in parts], _large(""))

    def arrow_parts(self, frame: pd.DataFrame) -> list[str | pa.LargeStringArray]:
        """The template's non-empty literals and its columns rendered as Arrow arrays, in order.

        Joining them row-wise gives :meth:`render_arrow`; a caller can first
        transform each part (the JSONL writer escapes them) and join once.

        Parameters
        ----------
        frame : pandas.DataFrame
            The rows to render (nulls must be handled before).

        Returns
        -------
        list of str or pyarrow.LargeStringArray
            Literals as str, columns as arrays of ``len(frame)`` strings; a
            template without fields gives its one literal.
        """
        lookup = {str(c): c for c in frame.columns}
        parts: list[str | pa.LargeStringArray] = []
        for lit, f in zip(self.literals, self.fields, strict=False):
            if lit:
                parts.append(lit)
            parts.append(_arrow_column(frame[lookup[f.column]], f))
        if self.literals[-1] or not parts:
            parts.append(self.literals[-1])
        return parts


def _field_error(field: str, columns: list[str]) -> str:
    shown = ", ".join(map(repr, columns[:50])) + (" ..." if len(columns) > 50 else "")
    base = field.split(".")[0].split("[")[0]
    if not field or field.isdigit():
        return (
            f"prompt field {{{field}}} is positional; name a column instead, "
            f"e.g. {{{columns[0] if columns else 'text'}}}. Columns: {shown}"
        )
    if base in columns and base != field:
        return (
            f"prompt field {{{field}}} uses attribute or index access, which templates do not allow "
            f"(they may come from shared notebooks). Use the plain column {{{base}}}, or make a new "
            f"column with the value you need. Columns: {shown}"
        )
    return f"prompt field {{{field}}} is not a column of the frame. Columns: {shown}"


def render_value(value: Any, spec: str = "", conversion: str | None = None) -> str:
    """Render one cell for a prompt: numpy scalars as Python values, containers as JSON.

    Parameters
    ----------
    value : Any
        A non-null cell.
    spec, conversion : str
        The field's format spec and ``!r``/``!s``/``!a`` conversion.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if conversion == "r":
        value = repr(value)
    elif conversion == "a":
        value = ascii(value)
    elif conversion == "s":
        value = str(value)
    if spec:
        return format(value, spec)
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    if isinstance(value, np.ndarray):
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    if isinstance(value, pd.Timestamp) and value == value.normalize() and value.tzinfo is None:
        return value.strftime("%Y-%m-%d")
    return str(value)


def _render_column(series: pd.Series, field: _Field) -> Sequence[str]:
    # Fast paths: columns that already hold str, and plain integer columns,
    # convert without a Python call per cell. Everything else goes through
    # render_value so that one cell renders the same way whatever its column.
    if not field.spec and field.conversion is None:
        dtype = series.dtype
        if pd.api.types.is_string_dtype(dtype) and pd.api.types.infer_dtype(series, skipna=False) == "string":
            return series.tolist()
        if pd.api.types.is_integer_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
            return series.astype("int64").astype(str).tolist()
    return [render_value(v, field.spec, field.conversion) for v in series.tolist()]


def _arrow_column(series: pd.Series, field: _Field) -> pa.LargeStringArray:
    # The same rules as _render_column, producing Arrow: str columns pass
    # through (zero-copy when Arrow-backed), integers are cast in Arrow, and
    # anything else is rendered per cell by render_value.
    if not field.spec and field.conversion is None:
        dtype = series.dtype
        if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
            return _as_large_string(pa.array(series.array))
        if pd.api.types.is_integer_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
            return pc.cast(pa.array(series.to_numpy(dtype="int64")), pa.large_string())
    return pa.array(_render_column(series, field), type=pa.large_string())


def _large(part: str | pa.Array) -> pa.Scalar | pa.Array:
    return pa.scalar(part, pa.large_string()) if isinstance(part, str) else part


def _as_large_string(arr: pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr if arr.type == pa.large_string() else arr.cast(pa.large_string())
