"""Gemini embedding lines on Vertex: what a model's batch lines cannot carry, named before and at conversion.

Fast: no emulator. The round trips through the Vertex emulator are in
tests/backends/test_vertex_service.py.
"""

from __future__ import annotations

import pytest

from pdbatch.backends import _gemini_embed
from pdbatch.errors import ConfigError
from pdbatch.models import parse_vertex

EMBEDDING_2 = parse_vertex("gemini-embedding-2", "embeddings")
EMBEDDING_001 = parse_vertex("gemini-embedding-001", "embeddings")


@pytest.mark.parametrize(("body", "field", "why"), [
    ({"title": "Doc"}, "title", "gemini-embedding-2 ignores it in batch jobs"),
    ({"encoding_format": "base64"}, "encoding_format", "batch jobs return floats only"),
    ({"input_type": "code"}, "input_type", "use one of"),
    ({"truncate": "END"}, "truncate", "no equivalent in google/gemini-embedding-2 batch jobs"),
])
def test_what_the_conversion_refuses_is_named_before_it_and_then_with_its_row(body, field, why):
    body = {"input": "a text", **body}
    refused = _gemini_embed.unsupported(EMBEDDING_2, body)
    assert list(refused) == [field] and why in refused[field]
    with pytest.raises(ConfigError, match=f"^row 'doc-7': {field}=.*{why}"):
        _gemini_embed.request_line(EMBEDDING_2, {"custom_id": "doc-7", "body": body})


def test_what_the_model_takes_is_converted_and_refused_nothing():
    body = {"input": "a text", "model": "x", "dimensions": 8, "input_type": "query", "encoding_format": "float"}
    assert _gemini_embed.unsupported(EMBEDDING_001, body) == {}
    assert _gemini_embed.request_line(EMBEDDING_001, {"custom_id": "a", "body": body}) == {"key": "a", "request": {
        "content": {"parts": [{"text": "a text"}]},
        "embed_content_config": {"output_dimensionality": 8, "task_type": "RETRIEVAL_QUERY"}}}
