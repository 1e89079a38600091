"""A call rendered as BigQuery SQL: the request rows of a table, built where the table lives.

:func:`render` turns a prompt template (or a column of chat messages), the
system prompt and the body parameters into one ``SELECT`` that produces
``custom_id``, ``method``, ``url``, ``body`` (JSON) and the table's other
columns, the way :mod:`pdbatch.builders.requests` builds request lines from a frame:

* a template becomes ``CONCAT`` over its literal parts and ``CAST(col AS
  STRING)``; a format spec is accepted only where SQL renders it exactly as
  Python does (``{text:.200}`` is ``SUBSTR``, ``{x:.2f}`` is ``FORMAT('%.2f')``,
  ``{n:d}`` a cast), anything else is refused naming the field;
* the body is ``TO_JSON(STRUCT(...))``: the model, the messages, and each body
  parameter as a typed literal (nested values as ``PARSE_JSON`` of their JSON);
* ``custom_id`` is a key column cast to text, or ``row-<n>`` from
  ``ROW_NUMBER() OVER ()``, fixed when the request table is created;
* identifiers are quoted with backticks and every literal is escaped, because
  column names and templates are data (:func:`ident`, :func:`literal`).

Column types decide how a cell becomes text. When the table's schema is known
(``types``), types whose text differs between Python and BigQuery are refused
(FLOAT64 without a spec: ``CAST(0.1 + 0.2 AS STRING)`` is not Python's
``str``), and BOOL renders as Python's ``True``/``False``. Without a schema
(``to_sql`` with no connection) every field is ``CAST(col AS STRING)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..backends.uris import parse_bq
from ..errors import ConfigError, InputError
from ..models import EMBEDDINGS, Kind
from .requests import POSITIONAL_PREFIX
from .template import Template

__all__ = ["Column", "Rendered", "TableRef", "id_sql", "ident", "literal", "null_sql", "render"]

_FORM = "bq://project.dataset.table"
#: Types whose CAST(... AS STRING) is the text Python's str() gives the same value.
_EXACT_TEXT = {"STRING", "INT64", "INTEGER", "DATE"}
_FLOATS = {"FLOAT64", "FLOAT"}
_INTS = {"INT64", "INTEGER"}
_PRECISION_F = re.compile(r"^\.(\d{1,2})f$")
_CUT = re.compile(r"^\.(\d{1,5})$")


@dataclass(frozen=True)
class TableRef:
    """``bq://project.dataset.table``, checked."""

    project: str
    dataset: str
    table: str

    @classmethod
    def parse(cls, uri: Any, what: str = "table") -> TableRef:
        """Parse ``uri``; a URI that names no table is refused with the expected form."""
        ref = parse_bq(uri) if isinstance(uri, str) else None  # the one bq:// grammar, the Vertex backend's
        if ref is None or ref.table is None:
            raise ConfigError(f"{what}={uri!r} does not name a BigQuery table; write {_FORM!r}, "
                              f"e.g. 'bq://my-project.reviews.reviews_2024'")
        return cls(ref.project, ref.dataset, ref.table)

    @property
    def table_id(self) -> str:
        """``project.dataset.table``, as the BigQuery client takes it."""
        return f"{self.project}.{self.dataset}.{self.table}"

    @property
    def dataset_id(self) -> str:
        return f"{self.project}.{self.dataset}"

    @property
    def sql(self) -> str:
        """The table in SQL: each part quoted."""
        return ".".join(ident(p) for p in (self.project, self.dataset, self.table))

    def sibling(self, table: str) -> TableRef:
        """Another table in the same dataset."""
        return TableRef(self.project, self.dataset, re.sub(r"[^A-Za-z0-9_]", "_", table)[:1024])

    def __str__(self) -> str:
        return f"bq://{self.table_id}"


@dataclass(frozen=True)
class Column:
    """A column of the table as its schema gives it (``fields`` for a RECORD)."""

    name: str
    type: str
    mode: str = "NULLABLE"
    fields: tuple[Column, ...] = ()


def ident(name: str) -> str:
    """A quoted identifier: backticks, with backslashes and backticks escaped (names are untrusted)."""
    return "`" + _escape(name, "`") + "`"


def literal(text: str) -> str:
    """A quoted BigQuery string literal holding exactly ``text``."""
    return "'" + _escape(text, "'") + "'"


def _escape(text: str, quote: str) -> str:
    out = []
    for ch in text:
        if ch == "\\" or ch == quote:
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def json_value(value: Any) -> str:
    """A body parameter as SQL: a typed literal, or ``PARSE_JSON`` of its JSON for lists and objects."""
    if value is None:
        return "PARSE_JSON('null')"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # repr is the shortest text that reads back as the same double, as TO_JSON writes it
        return f"CAST({literal(repr(value))} AS FLOAT64)"
    if isinstance(value, str):
        return literal(value)
    return f"PARSE_JSON({literal(orjson.dumps(value).decode())})"


@dataclass(frozen=True)
class Rendered:
    """The pieces of a call's SQL, for the SELECT and for the checks before a job is created.

    Attributes
    ----------
    select : str
        The request rows' SELECT.
    used : list of str
        The columns the prompt or messages read (a null there is ``on_null``'s business).
    null_condition : str
        True for a row with a null in ``used``.
    custom_id : str
        The SQL of the row's custom_id.
    passthrough : list of (str, str)
        Source column and output name of each pass-through column.
    tokens : str
        The row's prompt tokens, approximated as preview's approximation does
        (UTF-8 bytes of the message texts / 4, plus 4 per message).
    """

    select: str
    used: list[str]
    null_condition: str
    custom_id: str
    passthrough: list[tuple[str, str]]
    tokens: str


def render(
    source: TableRef,
    *,
    prompt: str | None,
    messages: str | None,
    system: str | None,
    model: str,
    url: str,
    kind: Kind,
    params: Mapping[str, Any],
    custom_id: str | None,
    on_null: str,
    columns: Sequence[Column] | None = None,
    reserved: Sequence[str] = (),
    rename_reserved: bool = False,
) -> Rendered:
    """The request rows of ``source`` as one BigQuery ``SELECT``.

    Parameters
    ----------
    source : TableRef
        The table read.
    prompt, messages, system : str or None
        As for :func:`pdbatch.builders.requests.build_requests`.
    model, url, kind : str
        The model written in each body, the request URL and its kind.
    params : mapping
        Body parameters, already checked (:func:`pdbatch.lines.params.body_params`).
    custom_id : str or None
        A key column, or None for ``row-<n>`` numbered when the SELECT runs.
    on_null : {"raise", "skip"}
        ``"skip"`` leaves rows with a null in a used column out (the result
        table brings them back with their error); ``"raise"`` makes the query
        fail on such a row (``ERROR``), which ``preview``/``submit`` check
        first and refuse naming rows.
    columns : sequence of Column, optional
        The table's schema; None renders without type checks and passes ``*`` through.
    reserved : sequence of str
        Lower-case names a pass-through column may not take.
    rename_reserved : bool
        Pass such columns as ``input_<name>`` instead of refusing them.

    Returns
    -------
    Rendered
    """
    if on_null not in ("raise", "skip"):
        raise InputError(f"on_null={on_null!r}: use 'raise' (the default) or 'skip'")
    if (prompt is None) == (messages is None):
        raise InputError("pass either prompt='... {column} ...' or messages='<column of message lists>', "
                         "not both or neither")
    if kind == EMBEDDINGS and (messages is not None or system is not None):
        raise InputError("embeddings take a prompt template only (no messages= or system=)")
    types = {c.name: c for c in columns} if columns is not None else None
    names = [c.name for c in columns] if columns is not None else []
    if custom_id is not None:
        _check_key(custom_id, types)
    cid = id_sql(custom_id)

    if prompt is not None:
        try:
            template = Template.parse(prompt, names if types is not None else _fields_of(prompt))
        except InputError as exc:  # the message lists the table's columns: say it is a table's
            raise InputError(str(exc).replace("of the frame", f"of the table {source}")) from exc
        content = _concat(template, types)
        used = template.columns
        null = null_sql(used, messages=False)
    else:
        assert messages is not None
        content = _messages(messages, types)
        used = [messages]
        null = null_sql(used, messages=True)

    fields = [f"{literal(model)} AS model"]
    if kind == EMBEDDINGS:
        fields.append(f"{content} AS input")
    elif prompt is not None:
        msgs = ([f"STRUCT('system' AS role, {literal(system)} AS content)"] if system is not None else [])
        msgs.append(f"STRUCT('user' AS role, {content} AS content)")
        fields.append(f"[{', '.join(msgs)}] AS messages")
    elif system is not None:
        fields.append(f"ARRAY_CONCAT([STRUCT('system' AS role, {literal(system)} AS content)], {content}) "
                      f"AS messages")
    else:
        fields.append(f"{content} AS messages")
    fields += [f"{json_value(v)} AS {ident(k)}" for k, v in params.items()]
    body = f"TO_JSON(STRUCT({', '.join(fields)}))"
    if on_null == "raise" and used:
        shown = ", ".join(used)
        body = (f"IF({null}, ERROR(CONCAT({literal(f'a null in column(s) {shown} used by the prompt, row ')}, "
                f"{cid})), {body})")

    passthrough = _passthrough(names, custom_id, reserved, rename_reserved) if types is not None else []
    keep = [f"src.{ident(col)} AS {ident(out)}" for col, out in passthrough] if types is not None else ["src.*"]
    select = (f"SELECT {cid} AS custom_id, 'POST' AS method, {literal(url)} AS url, {body} AS body"
              f"{''.join(', ' + k for k in keep)}\nFROM {source.sql} AS src")
    if on_null == "skip" and used:
        select += f"\nWHERE NOT ({null})"
    return Rendered(select, list(used), null, cid, passthrough, _tokens(kind, prompt, system, content))


def id_sql(custom_id: str | None) -> str:
    """The SQL of a row's custom_id: the key column as text, or ``row-<n>`` numbered when the query runs."""
    if custom_id is not None:
        return f"CAST(src.{ident(custom_id)} AS STRING)"
    return f"CONCAT({literal(POSITIONAL_PREFIX)}, CAST(ROW_NUMBER() OVER () - 1 AS STRING))"


def null_sql(used: Sequence[str], *, messages: bool) -> str:
    """True for a row of ``src`` with a null in a used column (an empty message list counts as null)."""
    if messages:
        col = f"src.{ident(used[0])}"
        return f"{col} IS NULL OR ARRAY_LENGTH({col}) = 0"
    return " OR ".join(f"src.{ident(c)} IS NULL" for c in used) or "FALSE"


def _tokens(kind: Kind, prompt: str | None, system: str | None, content: str) -> str:
    extra = len(system.encode()) if system is not None else 0
    if prompt is not None:
        n_msgs = 0 if kind == EMBEDDINGS else 1 + (system is not None)
        return f"CAST(CEIL((BYTE_LENGTH({content}) + {extra}) / 4) AS INT64) + {4 * n_msgs}"
    texts = f"(SELECT SUM(BYTE_LENGTH(m.content)) FROM UNNEST({content}) AS m)"
    n = f"ARRAY_LENGTH({content}) + {int(system is not None)}"
    return f"CAST(CEIL((COALESCE({texts}, 0) + {extra}) / 4) AS INT64) + 4 * ({n})"


def _fields_of(prompt: str) -> list[str]:
    """Without a schema every field is taken to be a column (the query will say if one is not)."""
    import string

    try:
        return [f for _, f, _, _ in string.Formatter().parse(prompt) if f]
    except (ValueError, TypeError):
        return []  # Template.parse reports the template's own mistake


def _check_key(column: str, types: Mapping[str, Column] | None) -> None:
    if types is None:
        return
    if column not in types:
        raise InputError(f"custom_id={column!r} is not a column of the table. Columns: {list(types)}")
    if types[column].type not in ("STRING", "INT64", "INTEGER"):
        raise InputError(f"custom_id={column!r} is a {types[column].type} column; ids come from STRING or "
                         f"INT64 columns (their text is the same in SQL and Python)")


def _concat(template: Template, types: Mapping[str, Column] | None) -> str:
    parts = []
    for lit, field in zip(template.literals, template.fields, strict=False):
        if lit:
            parts.append(literal(lit))
        parts.append(_field_sql(field.column, field.spec, field.conversion, types))
    if template.literals[-1] or not parts:
        parts.append(literal(template.literals[-1]))
    return parts[0] if len(parts) == 1 and not template.fields else f"CONCAT({', '.join(parts)})"


def _field_sql(column: str, spec: str, conversion: str | None, types: Mapping[str, Column] | None) -> str:
    col = f"src.{ident(column)}"
    shown = "{" + column + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
    if conversion not in (None, "s"):
        raise InputError(f"prompt field {shown}: the !{conversion} conversion has no exact SQL equivalent; "
                         f"drop it (a table's prompt renders each value as its text)")
    info = types[column] if types is not None else None
    typ = info.type if info is not None else None
    if info is not None and (info.mode == "REPEATED" or info.type in ("RECORD", "STRUCT", "JSON")):
        raise InputError(f"prompt field {shown}: column {column!r} is a {info.mode.lower()} {info.type} "
                         f"value, which renders differently in SQL and Python; make it text in a view first")
    if not spec:
        if typ is None or typ in _EXACT_TEXT:
            return f"CAST({col} AS STRING)"
        if typ in ("BOOL", "BOOLEAN"):
            return f"IF({col}, 'True', 'False')"  # Python's str(True), not SQL's 'true'
        raise InputError(
            f"prompt field {shown}: column {column!r} is {typ}, whose text differs between BigQuery and "
            f"Python (floats, timestamps, numerics); give a format spec SQL renders exactly, e.g. "
            f"{{{column}:.2f}}, or cast it in a view")
    m = _PRECISION_F.match(spec)
    if m and (typ is None or typ in _FLOATS | _INTS):
        return f"FORMAT({literal('%.' + m.group(1) + 'f')}, CAST({col} AS FLOAT64))"
    if spec == "d" and (typ is None or typ in _INTS):
        return f"CAST({col} AS STRING)"
    m = _CUT.match(spec)
    if m and (typ is None or typ == "STRING"):
        return f"SUBSTR({col}, 1, {int(m.group(1))})"
    raise InputError(
        f"prompt field {shown}: the format spec {spec!r} has no exact SQL equivalent for a "
        f"{typ or 'column'} (supported: '.Nf' for numbers, 'd' for integers, '.N' to cut text); "
        f"drop it or compute the text in a view")


def _messages(column: str, types: Mapping[str, Column] | None) -> str:
    col = f"src.{ident(column)}"
    if types is None:
        return col
    if column not in types:
        raise InputError(f"messages={column!r} is not a column of the table. Columns: {list(types)}")
    c = types[column]
    sub = [(f.name, f.type) for f in c.fields]
    if c.mode != "REPEATED" or c.type not in ("RECORD", "STRUCT") or sub != [("role", "STRING"),
                                                                             ("content", "STRING")]:
        raise InputError(f"messages={column!r} must be an ARRAY<STRUCT<role STRING, content STRING>> column "
                         f"(a repeated record with exactly those fields); it is {c.mode} {c.type} {sub}")
    return col


def _passthrough(names: list[str], custom_id: str | None, reserved: Sequence[str],
                 rename: bool) -> list[tuple[str, str]]:
    """Each column but the key named ``custom_id`` itself, renamed away from reserved names if asked."""
    taken = {n.lower() for n in names}
    out = []
    clash = [n for n in names if n.lower() in reserved and not (n == custom_id == "custom_id")]
    if clash and not rename:
        raise ConfigError(
            f"the table has column(s) {clash}, names the batch service reserves ({', '.join(reserved)}); "
            f"rename them in a view, or pass rename_reserved=True to carry them as "
            f"{['input_' + c for c in clash]}")
    for n in names:
        if n == custom_id == "custom_id":
            continue
        new = n
        if n in clash:
            new = f"input_{n}"
            while new.lower() in taken:
                new = f"input_{new}"
            taken.add(new.lower())
        out.append((n, new))
    return out
