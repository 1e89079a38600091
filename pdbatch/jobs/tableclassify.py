"""``table.llama.classify``: the label columns of a table job's result, read in SQL.

The requests are a frame's classify requests for a backend without label
scores (:func:`pdbatch.results.classify.request_params`: the labels as a JSON
schema ``enum``, ``temperature=0``), rendered by :mod:`pdbatch.builders.sqlbuild`.
The result table gets what :func:`pdbatch.results.classify.add_columns` gives a
frame: the label column (``JSON_VALUE`` of the answer's ``label``, kept only
when it is one of the labels, else NULL with the row's error), one
``p_<label>`` FLOAT64 column per label (NULL: such a backend returns no label
probabilities) and ``error``; the raw answer columns are left out.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from ..builders.sqlbuild import ident, literal
from ..errors import ConfigError
from ..results.classify import DEFAULT_PREFIX, LabelSpec

__all__ = ["answer_columns", "check_names", "empty_columns", "label_spec"]

#: BigQuery's limit on a column name's length (https://cloud.google.com/bigquery/docs/schemas#column_names).
MAX_NAME = 300
#: Flexible column names take letters, marks, numbers, connectors (``_``), dashes and spaces of any
#: language, and these ASCII signs (https://cloud.google.com/bigquery/docs/schemas#flexible-column-names).
_SIGNS = set("&%=+:'<>#|")
_CATEGORIES = ("L", "M", "N", "Pc", "Pd", "Zs")
#: Prefixes a column name may not start with, whatever its case (same page, "Column names").
RESERVED_PREFIXES = ("_table_", "_file_", "_partition", "_row_timestamp", "__root__", "_colidentifier")
_NOT_JSON, _QUOTE = literal("answer is not a label: '"), literal("'")
_ANSWER, _NOT_LABEL = literal("answer '"), literal("' is not one of the labels")


def label_spec(record: Any) -> LabelSpec:
    """The labels of a saved call, checked again: a job folder is data anyone could edit.

    Raises
    ------
    ConfigError
        What :meth:`LabelSpec.make` refuses, also when the record lacks its labels or is not a mapping.
    """
    # read field by field, not with LabelSpec.from_record, which takes a well-formed record for granted (a KeyError)
    data = record if isinstance(record, Mapping) else {}
    return LabelSpec.make(data.get("labels"), output=data.get("output", "label"),
                          calibrate=bool(data.get("calibrate", True)), prefix=data.get("prefix", DEFAULT_PREFIX),
                          output_name="output_column")


def check_names(spec: LabelSpec) -> None:
    """Refuse, before anything is created, result columns BigQuery would refuse once the job has run.

    Raises
    ------
    ConfigError
        A column name (``output_column`` or ``p_<label>``) that is too long,
        has a character BigQuery's column names cannot hold, or equals another
        one but for case (BigQuery's column names ignore case).
    """
    seen: dict[str, str] = {"custom_id": "custom_id"}
    for name in spec.columns:
        what = "output_column=" if name == spec.output else f"label {name[2:]!r} (its column {name!r})"
        if len(name) > MAX_NAME:
            raise ConfigError(f"{what}: a BigQuery column name has at most {MAX_NAME} characters; shorten it")
        bad = sorted({ch for ch in name if ch not in _SIGNS and not unicodedata.category(ch).startswith(_CATEGORIES)})
        if bad:
            raise ConfigError(f"{what}: BigQuery column names cannot hold {bad}; use labels of letters, digits, "
                              f"spaces, '-' and '_' in a table's classify")
        if name.lower().startswith(RESERVED_PREFIXES):
            raise ConfigError(f"{what}: BigQuery reserves column names starting with "
                              f"{', '.join(p.upper() for p in RESERVED_PREFIXES)}; pick another name")
        other = seen.get(name.lower())
        if other is not None:
            raise ConfigError(f"{what}: the result table would have columns {other!r} and {name!r}, the same "
                              f"name to BigQuery (column names ignore case); make the labels differ in more than case")
        seen[name.lower()] = name


def answer_columns(spec: LabelSpec, content: str, failure: str) -> list[str]:
    """The label, probability and error columns of a row whose answer text is ``content`` (SQL).

    ``failure`` is the SQL of the row's error before its answer is read (no
    answer, the service's error): NULL for an answered row.
    """
    labels = ", ".join(literal(label) for label in spec.labels)
    # SAFE.PARSE_JSON: text that is not JSON (a cut answer) is no label, not a failed query
    picked = f"JSON_VALUE(SAFE.PARSE_JSON({content}), '$.label')"
    ok = f"({failure}) IS NULL AND {picked} IN ({labels})"
    # the frames' messages (results.classify._read: the text quoted and cut), for the same answers
    not_json = f"CONCAT({_NOT_JSON}, SUBSTR({content}, 1, 80), {_QUOTE})"
    not_label = f"CONCAT({_ANSWER}, SUBSTR({picked}, 1, 78), {_NOT_LABEL})"
    problem = (f"CASE WHEN {content} IS NULL THEN 'no answer' WHEN {picked} IS NULL THEN {not_json} "
               f"WHEN {picked} NOT IN ({labels}) THEN {not_label} END")
    return [f"IF({ok}, {picked}, CAST(NULL AS STRING)) AS {ident(spec.output)}",
            *_no_probabilities(spec), f"COALESCE({failure}, {problem}) AS error"]


def empty_columns(spec: LabelSpec, error: str) -> list[str]:
    """The same columns for a row that was never sent (typed as :func:`answer_columns` types them)."""
    return [f"CAST(NULL AS STRING) AS {ident(spec.output)}", *_no_probabilities(spec), f"{error} AS error"]


def _no_probabilities(spec: LabelSpec) -> list[str]:
    # A backend that generates the label gives no label probabilities (the frames' columns are NaN)
    return [f"CAST(NULL AS FLOAT64) AS {ident(col)}" for col in spec.prob_columns]
