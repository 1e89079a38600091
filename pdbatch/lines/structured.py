"""Structured output: a JSON schema (or a pydantic model) in, typed columns out.

``schema=`` sets the request's ``response_format`` to OpenAI's
``{"type": "json_schema", ...}`` (what Vertex's OpenAI-compatible endpoint
takes; the local engine turns it into a llama.cpp grammar), and each answer is
parsed into one column per top-level property. An answer that is not JSON, or
does not fit the schema, becomes that row's ``error``; its text stays in
``response`` so nothing is lost.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from ..errors import ConfigError
from .kinds import spec as kind_spec
from .schemacheck import SchemaSupport, check_supported, check_valid

__all__ = ["Schema", "as_schema", "inline_refs", "read_schema_file", "response_format_problem"]

#: The error of an answer that stopped at max_tokens before its JSON was whole.
CUT_SHORT = ("the answer stopped at max_tokens (finish_reason 'length') before its JSON was complete: "
             "raise max_tokens=... (--max-tokens on the command line; e.g. double it, or None for no cap)")

_DTYPES = {"integer": "Int64", "number": "Float64", "boolean": "boolean", "string": "string"}


@dataclass(frozen=True)
class Schema:
    """A response schema and how to read answers with it."""

    name: str
    json_schema: dict[str, Any]
    model: Any = None  # a pydantic model class, when one was given

    @property
    def response_format(self) -> dict[str, Any]:
        """The OpenAI ``response_format`` body field, its schema written out without ``$ref``."""
        schema = inline_refs(self.json_schema)
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": schema, "strict": True}}

    @property
    def columns(self) -> list[str]:
        """The columns the answers are parsed into: the schema's top-level properties."""
        return list(self.json_schema.get("properties", {}))

    def parse(self, responses: pd.Series, errors: pd.Series,
              finish_reasons: pd.Series | None = None) -> tuple[pd.DataFrame, pd.Series]:
        """Parse each answer; returns typed columns and the errors with parse failures added.

        Parameters
        ----------
        responses : pandas.Series
            The raw answers (missing where the row failed).
        errors : pandas.Series
            The rows' errors so far; rows that already failed are left alone.
        finish_reasons : pandas.Series, optional
            Why each answer ended: an answer cut at ``max_tokens`` (``"length"``)
            that does not parse says so, and names the setting to raise.

        Returns
        -------
        (pandas.DataFrame, pandas.Series)
            One column per property, with the index of ``responses``; the updated errors.
        """
        props = self.json_schema.get("properties", {})
        values: dict[str, list[Any]] = {c: [] for c in props}
        new_errors = errors.astype(object).where(errors.notna(), None).tolist()
        finish = [None] * len(responses) if finish_reasons is None else finish_reasons.tolist()
        for i, text in enumerate(responses.tolist()):
            row: dict[str, Any] = {}
            if new_errors[i] is None and isinstance(text, str):
                try:
                    row = self._read(text)
                except ValueError as exc:
                    new_errors[i] = (CUT_SHORT + f" ({exc})" if finish[i] == "length"
                                     else f"response does not match the schema: {exc}")
                    row = {}
            for c in props:
                values[c].append(row.get(c))
        cols = {}
        for c, spec in props.items():
            kind = spec.get("type") if isinstance(spec, dict) else None
            dtype = _DTYPES.get(kind) if isinstance(kind, str) else None
            cols[c] = pd.array(values[c], dtype=dtype) if dtype else pd.Series(values[c], dtype=object).array
        frame = pd.DataFrame(cols, index=responses.index)
        return frame, pd.Series(pd.array(new_errors, dtype="string"), index=errors.index)

    def add_columns(self, result: pd.DataFrame) -> pd.DataFrame:
        """``result`` with one typed column per property, and parse failures in ``error``."""
        finish = result["finish_reason"] if "finish_reason" in result.columns else None
        cols, errors = self.parse(result["response"], result["error"], finish)
        out = result.drop(columns=["error"])
        for c in cols.columns:
            out[c] = cols[c]
        out["error"] = errors
        return out

    def _read(self, text: str) -> dict[str, Any]:
        if self.model is not None:
            from pydantic import ValidationError

            try:
                return self.model.model_validate_json(text).model_dump(mode="json")
            except ValidationError as exc:
                raise ValueError(str(exc).replace("\n", " ")[:300]) from None
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc}): {text[:80]!r}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        for key in self.json_schema.get("required", []):
            if key not in obj:
                raise ValueError(f"missing required field {key!r}")
        for key, spec in self.json_schema.get("properties", {}).items():
            if key in obj and obj[key] is not None and isinstance(spec, dict):
                obj[key] = _coerce(key, obj[key], spec)
        return obj


def _coerce(key: str, value: Any, spec: dict[str, Any]) -> Any:
    kind = str(spec.get("type"))
    ok = {
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }.get(kind)
    if ok is not None and not ok(value):
        raise ValueError(f"field {key!r} should be {kind}, got {value!r:.60}")
    if "enum" in spec and value not in spec["enum"]:
        raise ValueError(f"field {key!r} should be one of {spec['enum']}, got {value!r:.60}")
    return value


_DEFINITIONS = ("$defs", "definitions")
# Keywords whose value maps names to subschemas: its keys are names, never keywords to drop.
_NAME_MAPS = ("properties", "patternProperties", *_DEFINITIONS)


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with each local ``$ref`` replaced by its definition, and ``$defs`` / ``$schema`` dropped.

    Pydantic puts nested models under ``$defs`` and points at them with
    ``$ref``; Vertex's batch importer fails a whole job on those keys (seen
    for Gemini), and a schema written out in full means the same.

    Raises
    ------
    ConfigError
        A recursive schema (it has no finite written-out form), or a ``$ref``
        that is not a local ``#/$defs/<name>``.
    """
    defs: dict[str, Any] = {}
    for key in _DEFINITIONS:
        defs.update(schema.get(key) or {})

    def walk(node: Any, chain: tuple[str, ...], names: bool = False) -> Any:
        if isinstance(node, list):
            return [walk(v, chain) for v in node]
        if not isinstance(node, dict):
            return node
        if names:
            return {k: walk(v, chain) for k, v in node.items()}
        ref = node.get("$ref")
        out: dict[str, Any] = {}
        if isinstance(ref, str):
            prefix, _, name = ref.rpartition("/")
            if prefix not in ("#/$defs", "#/definitions") or name not in defs:
                raise ConfigError(f"schema=: cannot resolve $ref {ref!r}; only local '#/$defs/<name>' "
                                  f"references can be written out")
            if name in chain:
                raise ConfigError(
                    f"schema= is recursive ({' -> '.join((*chain, name))}): a batch job needs the schema "
                    f"written out in full, which a recursive one has not. Give the nesting a fixed depth "
                    f"(separate models per level) or flatten it."
                )
            out.update(walk(defs[name], (*chain, name)))
        for key, value in node.items():
            if key in ("$ref", "$schema", *_DEFINITIONS):
                continue
            out[key] = walk(value, chain, names=key in _NAME_MAPS)
        return out

    return dict(walk(schema, ()))


def as_schema(schema: Any) -> Schema:
    """Accept a JSON schema dict or a pydantic model class.

    Raises
    ------
    ConfigError
        The schema is not an object schema with properties.
    """
    model = None
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        model = schema
        json_schema = schema.model_json_schema()
        name = schema.__name__
    elif isinstance(schema, dict):
        json_schema = schema
        name = str(schema.get("title") or "response")
    else:
        raise ConfigError(f"schema= must be a JSON schema dict or a pydantic model class, got {type(schema).__name__}")
    check_valid(json_schema)  # "strng" is refused here, not sent to constrain nothing
    inline_refs(json_schema)  # a recursive schema is refused now, before anything is sent
    if json_schema.get("type", "object") != "object" or not json_schema.get("properties"):
        raise ConfigError("schema= must describe a JSON object with 'properties': each becomes a column")
    name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name)[:64] or "response"
    return Schema(name, json_schema, model)


def read_schema_file(path: str) -> dict[str, Any]:
    """The JSON schema in the file at ``path`` (the command line's ``--schema FILE.json``), checked as ``schema=`` is.

    Raises
    ------
    ConfigError
        The file is missing or unreadable, is not JSON (with the line and
        column), or does not hold a schema that gives columns.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"--schema {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        schema = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"--schema {path}: not JSON ({exc}); it should hold one JSON schema object, "
                          f'e.g. {{"type": "object", "properties": {{"label": {{"type": "string"}}}}}}') from None
    if not isinstance(schema, dict):
        raise ConfigError(f"--schema {path}: holds a JSON {type(schema).__name__}, not a JSON schema object")
    try:
        as_schema(schema)
    except ConfigError as exc:
        raise ConfigError(f"--schema {path}: {exc}") from None
    return schema


def response_format_problem(fmt: Any, support: SchemaSupport | None) -> str | None:
    """What is wrong with a request line's own ``response_format`` schema (None: nothing, or no schema).

    A request file's lines carry their ``json_schema`` as written; each is
    checked as ``schema=`` is (valid JSON Schema, and what the backend keeps).
    """
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = (fmt.get("json_schema") or {}).get("schema") if isinstance(fmt.get("json_schema"), dict) else None
    if not isinstance(schema, dict):
        return "response_format json_schema needs a 'schema' object"
    try:
        return _schema_problem(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS), support)
    except orjson.JSONEncodeError as exc:
        return f"response_format: {exc}"


@functools.lru_cache(maxsize=64)
def _schema_problem(schema_json: bytes, support: SchemaSupport | None) -> str | None:
    # cached: a file's lines mostly share one schema, and validating it is the slow part
    schema = orjson.loads(schema_json)
    try:
        check_valid(schema)
        check_supported(inline_refs(schema), support)
    except ConfigError as exc:
        return "response_format " + str(exc).removeprefix("schema= ")
    return None


def apply_schema(params: dict[str, Any], schema: Schema | None, kind: str, support: SchemaSupport | None) -> None:
    """Put ``schema=`` into a call's body fields as ``response_format``, refusing what does not fit.

    One rule for every path that builds bodies (a frame's, a BigQuery table's):
    a schema is for chat, never beside an explicit ``response_format``, and
    only with what the backend's structured output keeps (``support``).

    Parameters
    ----------
    params : dict
        The call's checked body fields; changed in place.
    schema : Schema or None
        The call's ``schema=`` (None: nothing to do).
    kind : str
        The call's kind (``"chat"`` or ``"embeddings"``).
    support : SchemaSupport or None
        What the backend's structured output honours (:attr:`Backend.schema_support`).

    Raises
    ------
    ConfigError
        A schema for embeddings, beside ``response_format``, or using what the backend would not keep.
    """
    if schema is None:
        return
    if "response_format" not in kind_spec(kind).fields:  # the kinds that take a response_format (chat)
        raise ConfigError(f"schema= applies to chat completions, not {kind}")
    if "response_format" in params:
        raise ConfigError("pass schema= or response_format=, not both (schema= sets response_format)")
    params["response_format"] = schema.response_format
    check_supported(params["response_format"]["json_schema"]["schema"], support)
