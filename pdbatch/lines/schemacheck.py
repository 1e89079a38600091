"""A response schema checked before anything is sent: valid JSON Schema, and only what the backend honours.

Two checks, both naming the place in the schema as a JSON pointer
(``/properties/sentiment/type``):

* :func:`check_valid`: the schema against the JSON Schema 2020-12 metaschema
  (``"type": "strng"`` is not a schema: sent as it is, the local grammar
  converter gives up on it and the answer is constrained by nothing);
* :func:`check_supported`: every type, keyword and string format against what
  the backend's structured output declares it honours
  (:attr:`pdbatch.backends.Backend.schema_support`, a :class:`SchemaSupport`).
  A keyword the service would ignore silently (``minimum`` for llama.cpp's
  grammar) is refused rather than sent, since the answers would not keep it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["ANNOTATIONS", "TYPED_BY", "SchemaSupport", "check_supported", "check_valid", "pointer"]

#: Keywords that describe and never constrain: every backend takes them (and may ignore them).
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "deprecated", "readOnly",
                         "writeOnly", "$schema", "$id"})

#: Keywords whose value is one subschema, a list of them, or a map of names to them.
_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
        "unevaluatedItems", "unevaluatedProperties")
_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAP = ("properties", "patternProperties", "dependentSchemas", "$defs", "definitions")
#: Keywords that say what a subschema holds.
TYPED_BY = ("type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "properties", "items", "prefixItems",
            "pattern")


@dataclass(frozen=True)
class SchemaSupport:
    """What a backend's structured output honours in a response schema.

    Attributes
    ----------
    where : str
        Words for messages: whose structured output this is.
    types : frozenset of str
        Values ``type`` may take.
    keywords : frozenset of str
        Keywords it honours, besides :data:`ANNOTATIONS` (always allowed).
    formats : frozenset of str or None
        String ``format`` values it honours (None: it passes any on).
    boolean_subschemas : bool
        Whether a subschema may be ``true`` / ``false`` (``additionalProperties``
        may always be a boolean).
    needs_type : bool
        Whether every subschema must say what it holds (one of
        :data:`TYPED_BY`): a converter that cannot read ``{"title": "x"}`` alone.
    overrides : tuple of (str, str)
        ``(a, b)``: where both are in one subschema, ``b`` is ignored (the
        converter reads ``a`` only).
    list_type_alone : bool
        Whether ``"type": [...]`` (a union of types) ignores the subschema's other keywords.
    """

    where: str
    types: frozenset[str]
    keywords: frozenset[str]
    formats: frozenset[str] | None = None
    boolean_subschemas: bool = True
    needs_type: bool = False
    overrides: tuple[tuple[str, str], ...] = ()
    list_type_alone: bool = False


def pointer(path: Iterator[Any] | list[Any] | tuple[Any, ...]) -> str:
    """A JSON pointer (RFC 6901) for a path of keys and indexes; ``""`` is the whole schema."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def check_valid(schema: dict[str, Any]) -> None:
    """Refuse a schema that is not valid JSON Schema (draft 2020-12).

    Raises
    ------
    ConfigError
        Naming the place in the schema and what is wrong there.
    """
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    errors = list(Draft202012Validator(Draft202012Validator.META_SCHEMA).iter_errors(schema))
    if not errors:
        return
    err = best_match(errors)
    where = pointer(err.absolute_path) or "/"
    found = err.message
    if list(err.absolute_path)[-1:] == ["type"]:  # jsonschema says "not valid under any of the given schemas"
        found = f"{err.instance!r} is not a JSON Schema type"
    raise ConfigError(f"schema= is not a valid JSON schema at {where}: {found}. Fix the schema (JSON Schema "
                      f"draft 2020-12: types are string, number, integer, boolean, object, array, null).")


def check_supported(schema: dict[str, Any], support: SchemaSupport | None) -> None:
    """Refuse what ``support`` does not honour, naming the first place in ``schema`` that has it.

    ``schema`` is the schema as sent (references written out). ``support``
    None: the backend declares no limit, nothing is refused.

    Raises
    ------
    ConfigError
        A type, keyword, string format, boolean subschema or shape the
        backend's structured output would not keep.
    """
    if support is None:
        return
    for where, node in _subschemas(schema, ()):
        problem = _problem(node, support, where)
        if problem:
            place, what, fix = problem
            raise ConfigError(f"schema= at {pointer(place) or '/'}: {what}; {support.where} does not honour "
                              f"it, so the answers would not keep it. {fix}")


def _problem(node: Any, support: SchemaSupport,
             where: tuple[Any, ...]) -> tuple[tuple[Any, ...], str, str] | None:
    """The first thing in one subschema that ``support`` does not honour: (place, what, the fix)."""
    if isinstance(node, bool):
        if support.boolean_subschemas or where[-1:] == ("additionalProperties",):
            return None
        return where, f"the boolean subschema {str(node).lower()}", "Write it as a subschema with a 'type'."
    for key in node:
        if key not in support.keywords and key not in ANNOTATIONS:
            return ((*where, key), f"the keyword {key!r}",
                    f"Remove it; supported keywords: {', '.join(sorted(support.keywords))}.")
    kinds = node.get("type")
    for i, kind in enumerate(kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []):
        if kind not in support.types:
            return ((*where, "type", *([i] if isinstance(kinds, list) else [])), f"the type {kind!r}",
                    f"Use one of: {', '.join(sorted(support.types))}.")
    if support.needs_type and not any(k in node for k in TYPED_BY):
        return where, "a subschema that does not say what it holds", "Give it a 'type' (or an 'enum' or 'anyOf')."
    for first, ignored in support.overrides:
        if first in node and ignored in node:
            return (*where, ignored), f"{ignored!r} beside {first!r}", f"Keep one of them (only {first!r} is read)."
    extra = sorted(k for k in node if k not in ANNOTATIONS and k != "type")
    if support.list_type_alone and isinstance(kinds, list) and extra:
        return ((*where, extra[0]), f"{extra[0]!r} beside a list of types",
                "A list of types is read as a union of bare types: write "
                f"'anyOf': [{{'type': ..., '{extra[0]}': ...}}, {{'type': 'null'}}] instead.")
    fmt = node.get("format")
    if fmt is not None and support.formats is not None and fmt not in support.formats:
        return ((*where, "format"), f"the string format {fmt!r}",
                f"Remove it, or use one of: {', '.join(sorted(support.formats))} (or a 'pattern').")
    return None


def _subschemas(node: Any, where: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every subschema with its path, the schema itself first."""
    yield where, node
    if not isinstance(node, dict):
        return
    for key in _ONE:
        if key in node and isinstance(node[key], (dict, bool)):
            yield from _subschemas(node[key], (*where, key))
    for key in _LIST:
        if isinstance(node.get(key), list):
            for i, sub in enumerate(node[key]):
                yield from _subschemas(sub, (*where, key, i))
    for key in _MAP:
        if isinstance(node.get(key), dict):
            for name, sub in node[key].items():
                yield from _subschemas(sub, (*where, key, name))
