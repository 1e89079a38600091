"""Prompt templates: ``"Classify: {review}"`` filled column-wise from a DataFrame.

Templates use ``str.format`` field syntax but only plain column names: attribute
and index access (``{review.__class__}``, ``{review[0]}``) are refused, because
templates travel in notebooks shared between people and ``str.format`` would
happily walk object attributes. Values are rendered once per column, not once
per row, so a million rows cost a few vectorised conversions and one join.
:meth:`Template.render_arrow` goes further: it joins the columns with the
literals inside Arrow, so no Python str is made per row (the response cache
keys rows by these prompts); the JSONL writer takes the same pieces from
:meth:`Template.arrow_parts`, escapes each once and joins them itself.
What one cell becomes (and which cells are refused) is :mod:`pdbatch.builders.cells`;
a refused cell is reported here with its column and row.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from .cells import NoTextError, check_text, first_unencodable, render_value, surrogate_problem

__all__ = ["MAX_FORMAT_SIZE", "CellError", "Template", "render_value"]

#: Largest width or precision a field's format spec may ask for. Padding and
#: digits never need more; ``{x:>50000000}`` would build a 50 MB prompt per row.
#: A precision also cuts text (``{text:.2000}``); longer cuts belong on the
#: column (``df.text.str[:50_000]``).
MAX_FORMAT_SIZE = 10_000
_CONVERSIONS = (None, "r", "s", "a")
# the standard format spec: [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_STANDARD_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<precision>\d+))?[a-zA-Z%]?",
                            re.DOTALL)


class CellError(InputError):
    """A cell that cannot be rendered into a prompt.

    Attributes
    ----------
    column : str
        The template field (the column's name as written in the template).
    position : int
        The row's position in the frame that was rendered.
    problem : str
        What is wrong and how to fix it, without the column and row.
    """

    def __init__(self, column: str, position: int, problem: str) -> None:
        super().__init__(f"column {column!r}, row at position {position}: {problem}")
        self.column = column
        self.position = position
        self.problem = problem


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
            A field is not a column, is empty or positional, uses attribute or
            index access (the message lists the columns), matches several
            columns, has an unknown ``!`` conversion or a width or precision
            over :data:`MAX_FORMAT_SIZE`; or the text holds a lone surrogate.
        """
        if not isinstance(text, str):
            raise InputError(f"prompt must be a str template such as 'Classify: {{review}}', got {type(text).__name__}")
        names: dict[str, list[Any]] = {}
        for c in columns:
            names.setdefault(str(c), []).append(c)
        check_text(text, "the prompt template")
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
            if len(names[field]) > 1:
                raise InputError(_ambiguous_error(field, names[field]))
            if conversion not in _CONVERSIONS:
                raise InputError(f"prompt field {{{field}!{conversion}}}: unknown conversion !{conversion}; "
                                 f"use !r (repr), !s (str) or !a (ascii), or none")
            if spec and ("{" in spec):
                raise InputError(f"prompt field {{{field}:{spec}}}: nested fields in a format spec are not supported")
            _check_spec(field, spec or "")
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
        for f, col in zip(self.fields, rendered, strict=True):
            if _python_text(frame[lookup[f.column]].dtype):
                bad = first_unencodable(col)
                if bad is not None:  # the JSONL writer could not encode it: refuse it here too
                    raise CellError(f.column, bad, surrogate_problem(col[bad]))
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


def _ambiguous_error(field: str, columns: list[Any]) -> str:
    if all(c is columns[0] or c == columns[0] for c in columns):
        return (f"prompt field {{{field}}}: the frame has {len(columns)} columns named {columns[0]!r}; "
                f"templates need unique names. Rename them (df.columns = [...]) or drop the copies "
                f"(df.loc[:, ~df.columns.duplicated()])")
    shown = " and ".join(f"{c!r} ({type(c).__name__})" for c in columns)
    return (f"prompt field {{{field}}} is ambiguous: columns {shown} are all written {field!r}. "
            f"Rename one of them, e.g. df.rename(columns={{{columns[0]!r}: 'new_name'}})")


def _check_spec(field: str, spec: str) -> None:
    m = _STANDARD_SPEC.fullmatch(spec)
    if m is None:  # not a standard spec (e.g. strftime's '%Y-%m' for dates): it cannot pad
        return
    for part in ("width", "precision"):
        size = m.group(part)
        if size and int(size) > MAX_FORMAT_SIZE:
            raise InputError(
                f"prompt field {{{field}:{spec}}}: a {part} of {int(size):,} is over the limit of "
                f"{MAX_FORMAT_SIZE:,} characters per field (it would build a prompt that size for every row). "
                f"Use a smaller {part}; to cut long text, shorten the column first (df[col].str[:N])"
            )


def _python_text(dtype: Any) -> bool:
    """Whether a column of ``dtype`` may render to text Arrow cannot encode (Python str objects).

    Arrow-backed strings are valid UTF-8 by construction, and numbers and
    dates render to ASCII: those columns are not scanned.
    """
    if isinstance(dtype, pd.StringDtype):
        return dtype.storage == "python"
    if isinstance(dtype, pd.ArrowDtype):
        return False
    types = pd.api.types
    return not (types.is_numeric_dtype(dtype) or types.is_bool_dtype(dtype) or types.is_datetime64_any_dtype(dtype))


def _render_column(series: pd.Series, field: _Field) -> Sequence[str]:
    # Fast paths: columns that already hold str, and plain integer columns,
    # convert without a Python call per cell. Everything else goes through
    # render_value so that one cell renders the same way whatever its column.
    if not field.spec and field.conversion is None:
        dtype = series.dtype
        if pd.api.types.is_string_dtype(dtype) and pd.api.types.infer_dtype(series, skipna=False) == "string":
            return series.tolist()
        if _plain_integers(dtype):
            return series.astype(_int_type(dtype)).astype(str).tolist()
    values = series.tolist()
    try:
        if field.spec and field.conversion is None and _plain_numbers(series.dtype):
            return [format(v, field.spec) for v in values]  # what render_value does for these, without its checks
        return [render_value(v, field.spec, field.conversion) for v in values]
    except Exception:  # a user's __format__ may raise anything: find the row, then say why
        _raise_for_cell(values, field)
        raise


def _raise_for_cell(values: list[Any], field: _Field) -> None:
    for i, v in enumerate(values):
        try:
            render_value(v, field.spec, field.conversion)
        except NoTextError as exc:
            raise CellError(field.column, i, str(exc)) from exc
        except Exception as exc:
            shown = f"{{{field.column}" + (f"!{field.conversion}" if field.conversion else "") + f":{field.spec}}}"
            raise CellError(field.column, i, (
                f"the format spec in {shown} does not fit the value {v!r:.60} ({type(v).__name__}): {exc}. "
                f"Drop the spec, or convert the column to the type it needs first "
                f"(e.g. df[col].astype(float) for '.2f', df[col].round().astype('Int64') for 'd')")) from exc


def _plain_integers(dtype: Any) -> bool:
    return pd.api.types.is_integer_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype)


def _plain_numbers(dtype: Any) -> bool:
    # tolist() gives Python ints and floats for these
    return (_plain_integers(dtype) or pd.api.types.is_float_dtype(dtype)) and not isinstance(dtype, pd.ArrowDtype)


def _int_type(dtype: Any) -> str:
    # uint64 past 2**63 would wrap around to negative numbers in int64
    return "uint64" if pd.api.types.is_unsigned_integer_dtype(dtype) else "int64"


def _arrow_column(series: pd.Series, field: _Field) -> pa.LargeStringArray:
    # The same rules as _render_column, producing Arrow: str columns pass
    # through (zero-copy when Arrow-backed), integers are cast in Arrow, and
    # anything else is rendered per cell by render_value.
    if not field.spec and field.conversion is None:
        dtype = series.dtype
        if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
            return _as_large_string(pa.array(series.array))
        if _plain_integers(dtype):
            return pc.cast(pa.array(series.to_numpy(dtype=_int_type(dtype))), pa.large_string())
    rendered = _render_column(series, field)
    try:
        return pa.array(rendered, type=pa.large_string())
    except UnicodeEncodeError:
        bad = first_unencodable(rendered)
        if bad is None:
            raise
        raise CellError(field.column, bad, surrogate_problem(rendered[bad])) from None


def _large(part: str | pa.Array) -> pa.Scalar | pa.Array:
    return pa.scalar(part, pa.large_string()) if isinstance(part, str) else part


def _as_large_string(arr: pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr if arr.type == pa.large_string() else arr.cast(pa.large_string())
