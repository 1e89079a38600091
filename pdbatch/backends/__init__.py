"""Backends: where batch jobs run.

The registry maps a short name to a backend class. The built-in backends are
registered here exactly as a third-party package would register its own, by
calling :func:`register` (or through the ``pdbatch.backends`` entry-point group,
which is read on first lookup of an unknown name).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from ..errors import ConfigError
from .base import TERMINAL_STATES, Backend, JobStatus

__all__ = [
    "TERMINAL_STATES",
    "Anthropic",
    "Backend",
    "JobStatus",
    "Local",
    "Mock",
    "OpenAI",
    "Vertex",
    "get_backend",
    "register",
    "registered",
]

_REGISTRY: dict[str, str | type[Backend]] = {}


def register(name: str, backend: str | type[Backend]) -> None:
    """Register a backend class under ``name``.

    Parameters
    ----------
    name : str
        The name users pass as ``backend="name"``.
    backend : type or str
        The class, or ``"module:Class"`` to import lazily (so that an optional
        backend costs nothing until used).
    """
    _REGISTRY[name] = backend


def registered() -> list[str]:
    """Names of the registered backends."""
    _load_entry_points()
    return sorted(_REGISTRY)


def _load_entry_points() -> None:
    for ep in entry_points(group="pdbatch.backends"):
        _REGISTRY.setdefault(ep.name, ep.value)


def backend_class(name: str) -> type[Backend]:
    """The class registered under ``name``."""
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backend {name!r}; registered backends: {registered()}. "
                          f"Pass one of these names or a Backend object.")
    cls = _REGISTRY[name]
    if isinstance(cls, str):
        module, _, attr = cls.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = cls
    return cls


def get_backend(backend: str | Backend | None = None, **settings: Any) -> Backend:
    """Resolve ``backend`` (a name, an object or ``None`` for the session default) to an object.

    Parameters
    ----------
    backend : str, Backend or None
        ``None`` uses ``pdbatch.configure(backend=...)``, then ``PDBATCH_BACKEND``,
        then ``"local"``.
    **settings
        Constructor arguments, used when ``backend`` is a name.

    Returns
    -------
    Backend
    """
    from .. import config

    configured = set(config.settings().backends)
    if configured - set(_REGISTRY):  # entry points are read only when a name is not known yet
        unknown = configured - set(registered())
        if unknown:
            raise ConfigError(f"pdbatch.configure({', '.join(sorted(unknown))}=...) names no registered backend "
                              f"(registered: {registered()}); fix the name, or register the backend first")
    if backend is None:
        backend = config.default_backend()
    if isinstance(backend, Backend):
        return backend
    if isinstance(backend, str):
        return backend_class(backend)(**settings)
    raise ConfigError(f"backend must be a name such as 'local' or a Backend object, got {type(backend).__name__}")


register("local", "pdbatch.backends.local:Local")
register("vertex", "pdbatch.backends.vertex:Vertex")
register("mock", "pdbatch.backends.mock:Mock")
register("openai", "pdbatch.backends.openai:OpenAI")
register("anthropic", "pdbatch.backends.anthropic:Anthropic")


def __getattr__(name: str) -> Any:
    # `pdbatch.backends.Vertex` without importing google-cloud (or openai) until it is used.
    if name in ("Anthropic", "Local", "Mock", "OpenAI", "Vertex"):
        return backend_class(name.lower())
    raise AttributeError(name)
