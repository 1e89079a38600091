"""One cell -> prompt text: what is converted, and what is refused.

The rules (also in the README, under "Bad input"): text stays as it is; bytes
are decoded as UTF-8; lists, tuples, dicts, sets and arrays become JSON, with
what has an obvious JSON form converted on the way (sets sorted, int keys as
text, ``Decimal`` as its digits, dates as ISO text); other values render with
``str``. Refused, with what to do: bytes that are not UTF-8, containers holding
something without a JSON form, objects without a text form of their own, and
lone surrogates, which cannot be sent as UTF-8.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..errors import InputError

__all__ = ["NoTextError", "check_text", "first_unencodable", "render_value", "surrogate_problem"]


class NoTextError(ValueError):
    """A cell value with no text form for a prompt (see :func:`render_value`)."""


def check_text(text: str, where: str) -> None:
    """Refuse text that cannot be encoded as UTF-8 (lone surrogates), naming ``where``."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(f"{where}: {surrogate_problem(text, exc)}") from exc


def first_unencodable(values: Sequence[str]) -> int | None:
    """The position of the first string that cannot be encoded as UTF-8, or None."""
    # isascii is O(1) in CPython: only non-ASCII strings are encoded to look
    for i, v in enumerate(values):
        if not v.isascii():
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return i
    return None


def surrogate_problem(text: str, exc: UnicodeEncodeError | None = None) -> str:
    """What is wrong with ``text`` (a lone surrogate, shown in context) and how to fix it."""
    if exc is None:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            exc = e
    at = exc.start if exc is not None else 0
    return (f"{text[at]!r} at character {at} of {text[max(0, at - 20) : at + 20]!r} is a lone surrogate, "
            f"not a character: such text cannot be sent as UTF-8 (it usually comes from decoding bytes with "
            f"errors='surrogateescape'). Replace it, e.g. s.encode('utf-8', 'replace').decode('utf-8')")


def render_value(value: Any, spec: str = "", conversion: str | None = None) -> str:
    """Render one cell for a prompt: numpy scalars as Python values, containers as JSON.

    Bytes are decoded as UTF-8; lists, tuples, dicts and sets become JSON (sets
    sorted, int keys as strings, ``Decimal`` as a JSON number, dates as ISO
    text); anything else renders with ``str``.

    Parameters
    ----------
    value : Any
        A non-null cell.
    spec, conversion : str
        The field's format spec and ``!r``/``!s``/``!a`` conversion.

    Raises
    ------
    NoTextError
        Bytes that are not UTF-8, a container holding something without a
        JSON form, or an object with no text form of its own (the default
        ``<object at 0x...>``).
    ValueError, TypeError
        A format spec that does not fit the value.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if spec or conversion is not None:
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = _decode(value)
        if conversion == "r":
            value = repr(value)
        elif conversion == "a":
            value = ascii(value)
        elif conversion == "s":
            value = str(value)
        return format(value, spec) if spec else value
    # the common types first: this runs once per cell of most columns
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple, set, frozenset, np.ndarray)):
        try:
            return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        except TypeError:
            return _json(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _decode(value)
    if isinstance(value, pd.Timestamp) and value == value.normalize() and value.tzinfo is None:
        return value.strftime("%Y-%m-%d")
    if type(value).__str__ is object.__str__ and type(value).__repr__ is object.__repr__:
        # '<Foo object at 0x7f...>' differs in every process: never a prompt
        raise NoTextError(f"the value {value!r:.60} has no text form of its own (its str() is the default "
                          f"'<... at 0x...>', different in every process); convert the column to text first "
                          f"(df[col].map(...))")
    return str(value)


def _decode(value: bytes | bytearray | memoryview) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoTextError(f"bytes {bytes(value)[:40]!r} are not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         f"decode the column yourself, e.g. df[col].str.decode('latin-1')") from exc


def _json(value: Any) -> str:
    # what orjson refused (int keys, sets, Decimal, Timestamp, bytes inside): convert, or say what cannot be
    converted = _jsonable(value)
    try:
        return orjson.dumps(converted, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError as exc:
        raise NoTextError(f"the {type(value).__name__} cannot be written as JSON: {exc}") from exc


def _jsonable(value: Any) -> Any:
    """``value`` with what has an obvious JSON form converted; a NoTextError names what has none."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return orjson.Fragment(str(value))  # exact, where orjson stops at 64 bits
    if isinstance(value, np.ndarray) and value.dtype == object:
        return _jsonable(value.tolist())
    if isinstance(value, (str, int, float, type(None), datetime.date, datetime.time, np.ndarray)) and \
            not isinstance(value, pd.Timestamp):
        return value
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _decode(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise NoTextError(f"Decimal({str(value)!r}) has no JSON form")
        return orjson.Fragment(str(value))  # the digits as written, not rounded to a float
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [_jsonable(v) for v in value]
        # a set has no order: sorted, so that the prompt is the same in every process
        try:
            return sorted(items)
        except TypeError:  # mixed types: by their JSON text
            return sorted(items, key=lambda v: orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY))
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = k.item() if isinstance(k, np.generic) else k
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise NoTextError(f"a dict key {k!r} ({type(k).__name__}) has no JSON form; JSON keys are text")
            if str(key) in out:
                raise NoTextError(f"dict keys {key!r} and {str(key)!r} would both be written {str(key)!r} in JSON")
            out[str(key)] = _jsonable(v)
        return out
    raise NoTextError(f"a {type(value).__name__} ({value!r:.40}) inside a list or dict has no JSON form; "
                      f"convert the column first (df[col].map(...))")
