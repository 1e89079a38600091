"""``Call`` and ``Options``: what a ``df.llama`` call sends per row, and how it runs.

Both are built by keyword (by the accessor and the CLI), passed whole down to
the job, and stored once in its manifest (:mod:`pdbatch.store.jobdir`), so that
``job.call`` / ``job.options`` and ``retry_failed`` see exactly what was asked.
Adding an option means: the accessor's signature, the field here, and its one use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .errors import ConfigError
from .lines.kinds import KINDS
from .models import CHAT, URLS, Kind, kind_of_url

__all__ = ["KEYWORDS", "CacheMode", "Call", "Options", "url_for"]

#: ``cache=``: True reuses deterministic answers, "always" any answer, False none.
CacheMode = Literal[True, False, "always"]


@dataclass(frozen=True, kw_only=True)
class Call:
    """What to send for each row (the request half of a ``batch_predict`` call).

    Attributes
    ----------
    prompt, messages, system : str or None
        The prompt template, the column of message lists, the system prompt.
    model : str or None
        The model as the user named it (None: the backend's default).
    url : str
        ``/v1/chat/completions`` or ``/v1/embeddings``.
    custom_id : str or None
        The column whose values identify rows (None: ``row-<position>``).
    on_null : {"raise", "skip", "empty"}
        What a null cell in the template does.
    params : mapping
        Request body fields (``max_tokens``, ``temperature``, ...).
    schema : dict, pydantic model class or None
        ``schema=``: the answer's structure (stored as JSON schema).
    classify : mapping or None
        Set for ``df.llama.classify``: the labels, the output column,
        calibration and the answer prefix (:class:`pdbatch.results.classify.LabelSpec`).
    requests : mapping or None
        Set for a request file's job (:mod:`pdbatch.jobs.runfile`), whose rows are
        request lines sent as they are: ``{"model": the model= given,
        "siblings": [ids of the jobs running the file's other kind of line]}``.
    table : mapping or None
        Set for a BigQuery table's job (:mod:`pdbatch.jobs.tablejob`): the source,
        request and output tables and what the result table is built from.
    """

    prompt: str | None = None
    messages: str | None = None
    system: str | None = None
    model: str | None = None
    url: str = URLS[CHAT]
    custom_id: str | None = None
    on_null: str = "raise"
    params: Mapping[str, Any] = field(default_factory=dict)
    schema: Any = None
    classify: Mapping[str, Any] | None = None
    requests: Mapping[str, Any] | None = None
    table: Mapping[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        """A JSON-serialisable copy for the manifest (the schema as JSON schema)."""
        from .lines.structured import as_schema  # pandas: only when a job is saved

        data = asdict(self)
        data["params"] = dict(self.params)
        data["schema"] = as_schema(self.schema).json_schema if self.schema is not None else None
        return data

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Call:
        """Rebuild a call saved with :meth:`record` (unknown keys, from a newer pdbatch, are ignored)."""
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def saved(self) -> bool:
        """False for the stand-in call of a job saved before calls were kept (nothing to repeat)."""
        return self.prompt is not None or self.messages is not None


@dataclass(frozen=True, kw_only=True)
class Options:
    """How to run a call (the job half of a ``batch_predict`` call).

    Attributes
    ----------
    cache : {True, False, "always"}
        The response cache mode.
    overwrite : bool
        The result may replace columns the frame already has.
    passthrough, rename_reserved : bool
        Hand the frame's columns to the backend (see ``Backend.accepts_passthrough``),
        renaming those whose names the service reserves.
    max_rows, max_cost : int, float or None
        Refuse a call that would send more requests or cost more.
    prices : mapping or None
        ``{model: (input, output)}`` dollars per million tokens, for ``max_cost``.
    display_name : str or None
        The job's name in the backend's console (None: ``pdbatch-<time>``).
    """

    cache: CacheMode = True
    overwrite: bool = False
    passthrough: bool = False
    rename_reserved: bool = False
    max_rows: int | None = None
    max_cost: float | None = None
    prices: Mapping[str, tuple[float, float]] | None = None
    display_name: str | None = None

    def __post_init__(self) -> None:
        # checked where every caller builds its options (accessor, CLI, request files, retries)
        if self.cache not in (True, False, "always"):
            raise ConfigError(f"cache={self.cache!r}: use True (default), False, or 'always'")

    def record(self) -> dict[str, Any]:
        """A JSON-serialisable copy for the manifest."""
        data = asdict(self)
        if self.prices is not None:
            data["prices"] = {k: list(v) for k, v in self.prices.items()}
        return data

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Options:
        """Rebuild options saved with :meth:`record` (unknown keys are ignored)."""
        known = cls.__dataclass_fields__
        values = {k: v for k, v in data.items() if k in known}
        if values.get("prices") is not None:
            values["prices"] = {k: (float(v[0]), float(v[1])) for k, v in values["prices"].items()}
        if values.get("cache") not in (True, False, "always"):
            values.pop("cache", None)
        return cls(**values)


#: Every keyword argument of the df.llama methods: a body field close to one
#: of these is more likely a typo of it ("progres") than a new field.
KEYWORDS = frozenset({*Call.__dataclass_fields__, *Options.__dataclass_fields__,
                      "backend", "progress", "timeout", "kind", "job_id"} - {"params"})


def url_for(kind: Kind | None, url: str | None) -> str:
    """The call's endpoint from ``kind=`` and ``url=`` (either, or both when they agree); chat by default.

    Raises
    ------
    ConfigError
        An unknown kind, or a kind that contradicts the url.
    """
    if kind is not None and (not isinstance(kind, str) or kind not in KINDS):  # the declared kinds (lines.kinds)
        raise ConfigError(f"kind={kind!r}: use {' or '.join(map(repr, KINDS))}")
    if url is not None:
        if kind is not None and kind_of_url(url) != kind:
            raise ConfigError(f"kind={kind!r} contradicts url={url!r}")
        return url
    return URLS[kind or CHAT]
