"""Session settings: explicit argument, then ``pdbatch.configure``, then ``PDBATCH_*``, then default.

Only two settings are global: which backend a call uses when it names none, and
where pdbatch keeps its job folders. Everything specific to a backend goes to
that backend's constructor, whose defaults may be set here too, for any
registered backend by its name (``configure(vertex={"project": ...})``, or
``PDBATCH_VERTEX_PROJECT``), so that ``backend="vertex"`` works without
building the object. A backend reads them with :func:`backend_default`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

#: A registered backend name or a ``Backend`` object. Settings hold it and never
#: use it, so its type is not imported: config sits below the backends, which read it.
BackendChoice = Any

__all__ = ["Settings", "backend_default", "backend_setting", "configure", "home", "settings"]

DEFAULT_BACKEND = "local"


@dataclass(frozen=True)
class Settings:
    """Values set with :func:`configure`; ``None`` means "fall back"."""

    backend: BackendChoice = None
    home: Path | None = None
    #: defaults for backend constructors, by the backend's registry name
    backends: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def vertex(self) -> Mapping[str, Any]:
        """The defaults set for the Vertex backend (``configure(vertex=...)``)."""
        return self.backends.get("vertex", {})


_settings = Settings()


def configure(
    *,
    backend: BackendChoice = None,
    home: str | os.PathLike[str] | None = None,
    **backends: Mapping[str, Any],
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
    **backends : mapping
        Defaults for a backend's constructor arguments, by the backend's
        registered name, merged into earlier ones: ``vertex={"project": ...,
        "location": ..., "staging": ...}`` for :class:`pdbatch.backends.Vertex`,
        and the same for any other backend. They override the
        ``PDBATCH_<NAME>_<SETTING>`` variables; explicit constructor arguments
        override both. A name no backend is registered under is refused when
        a backend is next looked up.

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
    if backends:
        merged = dict(_settings.backends)
        for name, values in backends.items():
            if not isinstance(values, Mapping):
                raise TypeError(f"configure({name}=...) takes a dict of {name!r} backend settings, "
                                f"not {type(values).__name__}")
            merged[name] = {**merged.get(name, {}), **values}
        changes["backends"] = merged
    _settings = replace(_settings, **changes)
    return _settings


def settings() -> Settings:
    """Return the settings set with :func:`configure`."""
    return _settings


def reset() -> None:
    """Forget everything set with :func:`configure` (used by tests)."""
    global _settings
    _settings = Settings()


def backend_default(backend: str, setting: str) -> Any:
    """A backend setting's default: ``configure(<backend>={setting: ...})``, then ``PDBATCH_<BACKEND>_<SETTING>``.

    Backends call this for each constructor argument left out, so that users
    set defaults for any backend in the same two ways.

    Parameters
    ----------
    backend : str
        The backend's registry name (``"vertex"``).
    setting : str
        The constructor argument (``"project"``).

    Returns
    -------
    Any
        The configured value, the environment variable's text (an empty one
        counts as unset), or None.
    """
    configured = _settings.backends.get(backend, {}).get(setting)
    if configured is not None:
        return configured
    return os.environ.get(f"PDBATCH_{backend.upper()}_{setting.upper()}") or None


def backend_setting(backend: str, setting: str, value: Any, default: Any) -> Any:
    """A backend constructor argument resolved: ``value`` when given, else :func:`backend_default`, else ``default``.

    The one order every backend follows: explicit argument, ``configure(<backend>=...)``,
    ``PDBATCH_<BACKEND>_<SETTING>``, then the backend's own default.
    """
    if value is not None:
        return value
    configured = backend_default(backend, setting)
    return default if configured is None else configured


def default_backend() -> BackendChoice:
    """The backend to use when a call names none."""
    return _settings.backend or os.environ.get("PDBATCH_BACKEND") or DEFAULT_BACKEND


def home() -> Path:
    """The folder holding pdbatch's job folders (created on first use, private to the user)."""
    from .atomic import private_dir

    path = _settings.home or Path(os.environ.get("PDBATCH_HOME") or Path.home() / ".pdbatch")
    path = private_dir(Path(path).expanduser())
    if path not in _checked:
        _checked.add(path)
        _warn_if_shared(path)
    return path


#: Homes whose mode was looked at (once per process: home() is called often).
_checked: set[Path] = set()


def _warn_if_shared(path: Path) -> None:
    """Say once that other users can write the home (copied from elsewhere, or a shared folder).

    pdbatch creates it ``0700``; a home others can write lets them plant
    links, swap job folders and edit the response cache, so that you read
    their answers as yours.
    """
    import stat
    import warnings

    from .errors import PdbatchWarning

    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if mode & 0o022:
        who = "anyone" if mode & 0o002 else "its group"
        warnings.warn(f"PDBATCH_HOME {path} can be written by {who} (mode {mode:o}): they could change your job "
                      f"folders and the answers in its response cache. pdbatch uses it as it is; make it yours "
                      f"alone with: chmod 700 {path}", PdbatchWarning, stacklevel=3)
