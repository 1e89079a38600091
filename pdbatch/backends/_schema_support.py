"""What each backend's structured output honours in a response schema (see :mod:`pdbatch.lines.schemacheck`).

Each backend class points its ``schema_support`` at one of these.
"""

from __future__ import annotations

from ..lines.schemacheck import SchemaSupport

__all__ = ["LLAMA_GRAMMAR", "OPENAI_STRICT"]

_ALL_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})

#: The local engine turns the schema into a grammar with llama-cpp-python's
#: ``SchemaConverter`` (llama_cpp/llama_grammar.py, ``visit``, 0.3.x). It
#: reads the keywords below and nothing else: ``minimum``/``maximum`` are a
#: TODO there, and ``allOf`` keeps only its components' properties. When it
#: cannot convert a schema (an unknown type, a subschema naming no type, a
#: boolean subschema) llama-cpp-python falls back to any JSON at all, so
#: those are refused here rather than found out in the answers. Its
#: ``visit`` reads one branch per subschema: ``pattern`` before ``format``
#: before ``minLength``/``maxLength``, ``items`` before ``prefixItems``,
#: and a list of types becomes a union of bare types.
LLAMA_GRAMMAR = SchemaSupport(
    where="the local engine's grammar (llama-cpp-python's JSON-schema converter)",
    types=_ALL_TYPES,
    keywords=frozenset({"type", "properties", "required", "additionalProperties", "items", "prefixItems",
                        "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "pattern", "format",
                        "minLength", "maxLength"}),
    formats=frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}),
    boolean_subschemas=False,
    needs_type=True,
    overrides=(("pattern", "format"), ("pattern", "minLength"), ("pattern", "maxLength"),
               ("format", "minLength"), ("format", "maxLength"), ("items", "prefixItems"),
               ("prefixItems", "minItems"), ("prefixItems", "maxItems")),
    list_type_alone=True,
)

#: Vertex's batch jobs take OpenAI's ``response_format: {"type": "json_schema",
#: ..., "strict": true}``. What a strict schema may use is OpenAI's documented
#: subset (platform.openai.com/docs/guides/structured-outputs, "Supported
#: schemas"): these types, these keywords (``$defs``/``$ref`` are written
#: out before sending), and not ``allOf``, ``not``, ``if``/``then``/``else``,
#: ``patternProperties``, ``minLength``/``maxLength``, ``uniqueItems`` ...
OPENAI_STRICT = SchemaSupport(
    where="Vertex's structured output (OpenAI's strict json_schema subset)",
    types=_ALL_TYPES,
    keywords=frozenset({"type", "properties", "required", "additionalProperties", "items", "enum", "const",
                        "anyOf", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
                        "exclusiveMaximum", "multipleOf", "minItems", "maxItems"}),
)
