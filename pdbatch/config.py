"""Session settings: explicit argument, then ``pdbatch.configure``, then ``PDBATCH_*``, then default.

Only two settings are global: which backend a call uses when it names none, and
where pdbatch keeps its job folders. Everything specific to a backend goes to
that backend's constructor, whose defaults may be set here too
(``configure(vertex={"project": ...})``, or ``PDBATCH_VERTEX_*`` variables), so
that ``backend="vertex"`` works without building the object.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = ["Settings", "configure", "home", "settings"]

DEFAULT_BACKEND = "local"


@dataclass(frozen=True)
class Settings:
    """Values set with :func:`configure`; ``None`` means "fall back"."""

    backend: str | Backend | None = None
    home: Path | None = None
    vertex: Mapping[str, Any] = field(default_factory=dict)


_settings = Settings()


def configure(
    *,
    backend: str | Backend | None = None,
    home: str | os.PathLike[str] | None = None,
    vertex: Mapping[str, Any] | None = None,
) -> Settings:
    """Set session defaults.

    Parameters
    ----------
    backend : str or Backend, optional
        The backend used when a call passes none: a registered name such as
        ``"local"`` or ``"vertex"``, or a backend object such as
        ``pdbatch.backends.Vertex(project=..., location=...)``.
        Overrides the ``PDBATCH_BACKEND`` environment variable.
    home : path, optional
        Folder holding job folders and manifests. Overrides ``PDBATCH_HOME``;
        the default is ``~/.pdbatch``.
    vertex : mapping, optional
        Defaults for :class:`pdbatch.backends.Vertex` arguments (``project``,
        ``location``, ``staging``, ``output``, ``api_endpoint``, ...), merged
        into earlier ones. They override the ``PDBATCH_VERTEX_*`` variables;
        explicit constructor arguments override both.

    Returns
    -------
    Settings
        The settings now in force (unset values are ``None``).
    """
    global _settings
    changes: dict[str, Any] = {}
    if backend is not None:
        changes["backend"] = backend
    if home is not None:
        changes["home"] = Path(home).expanduser()
    if vertex is not None:
        changes["vertex"] = {**_settings.vertex, **vertex}
    _settings = replace(_settings, **changes)
    return _settings


def settings() -> Settings:
    """Return the settings set with :func:`configure`."""
    return _settings


def reset() -> None:
    """Forget everything set with :func:`configure` (used by tests)."""
    global _settings
    _settings = Settings()


def default_backend() -> str | Backend:
    """The backend to use when a call names none."""
    return _settings.backend or os.environ.get("PDBATCH_BACKEND") or DEFAULT_BACKEND


def home() -> Path:
    """The folder holding pdbatch's job folders (created on first use, private to the user)."""
    from .atomic import private_dir

    path = _settings.home or Path(os.environ.get("PDBATCH_HOME") or Path.home() / ".pdbatch")
    return private_dir(Path(path).expanduser())
