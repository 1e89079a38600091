"""A frame's rows checked before any request line is built: the id column, message lists, body values.

Each refusal names the column and the row (its id, or its index label) and what to change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..errors import InputError
from .cells import check_text

__all__ = ["check_messages", "check_unique", "custom_ids", "json_ok"]


def custom_ids(frame: pd.DataFrame, column: str | None) -> np.ndarray | None:
    """The ids of ``frame``'s rows from its column ``column`` (as str, checked unique and not null).

    ``None`` for the default ids, ``row-<position>``.
    """
    if column is None:
        return None
    if column not in frame.columns:
        raise InputError(f"custom_id={column!r} is not a column of the frame. Columns: {list(frame.columns)}")
    check_unique(frame, column, "custom_id")
    values = frame[column]
    null = values.isna().to_numpy()
    if null.any():
        rows = [str(i) for i in frame.index[null][:10]]
        raise InputError(
            f"column {column!r} (custom_id) has {int(null.sum())} null value(s), at index {rows}; every row needs an id"
        )
    ids = np.array([str(v.item() if isinstance(v, np.generic) else v) for v in values.tolist()], dtype=object)
    try:  # one encode for all ids; the row is looked for only when one fails
        "".join(ids.tolist()).encode("utf-8")
    except UnicodeEncodeError:
        for label, cid in zip(frame.index, ids.tolist(), strict=True):
            check_text(cid, f"column {column!r} (custom_id), at index {label!r}")
    dup = pd.Index(ids).duplicated(keep=False)
    if dup.any():
        shown = sorted(set(ids[dup].tolist()))[:10]
        raise InputError(
            f"column {column!r} (custom_id) has duplicate ids: {shown}; ids must be unique so that each answer "
            f"finds its row. Drop duplicates or omit custom_id= to use row positions."
        )
    return ids


def check_unique(frame: pd.DataFrame, column: Any, argument: str) -> None:
    """Refuse a column name the frame holds more than once (``argument`` names the setting)."""
    n = int((frame.columns == column).sum())
    if n > 1:
        raise InputError(f"{argument}={column!r}: the frame has {n} columns with that name; rename them "
                         f"(df.columns = [...]) or drop the copies (df.loc[:, ~df.columns.duplicated()])")


def check_messages(value: Any, custom_id: str, column: str) -> list[dict[str, Any]]:
    """One row's messages checked: a non-empty list of role/content dicts that JSON can write."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise InputError(
            f"column {column!r}, row {custom_id!r}: messages must be a non-empty list of "
            f"{{'role': ..., 'content': ...}} dicts, got {type(value).__name__}"
        )
    for m in value:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise InputError(
                f"column {column!r}, row {custom_id!r}: each message needs 'role' and 'content', got {m!r:.200}"
            )
    try:
        orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:  # a set, bytes, a lone surrogate...: refused here, not deep in the writer
        raise InputError(f"column {column!r}, row {custom_id!r}: the messages cannot be written as JSON ({exc}); "
                         f"messages hold text, numbers, lists and dicts with text keys") from exc
    return list(value)


def json_ok(value: Any) -> bool:
    """Whether orjson can write ``value`` (to name only the body fields at fault)."""
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True
