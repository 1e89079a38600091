"""A job's manifest record (``manifest.json``): what rebuilds a job, and how an older one is read.

Reading the file, with the error that names it, is :func:`pdbatch.store.jobdir.read`;
this module is the record and its validation only, so that anything may
import it without the job folder's I/O.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from ..models import Kind

__all__ = ["Manifest"]


@dataclass
class Manifest:
    """The saved description of a submitted job."""

    id: str
    parts: list[str]
    backend: str
    backend_settings: dict[str, Any]
    model: str
    kind: Kind
    n_rows: int
    skipped: dict[int, str] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    version: int = 2
    #: the call (:meth:`pdbatch.call.Call.record`): the prompt, params, custom_id column, schema, ...
    call: dict[str, Any] = field(default_factory=dict)
    #: how it ran (:meth:`pdbatch.call.Options.record`): cache, overwrite, passthrough, display_name, ...
    options: dict[str, Any] = field(default_factory=dict)
    #: what became of the frame's rows (:meth:`pdbatch.display.reporter.RowCounts.record`): sent, merged, cached, ...
    rows: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["skipped"] = {str(k): v for k, v in self.skipped.items()}
        return orjson.dumps(data, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """Parse :meth:`to_json`'s output; raises ValueError or TypeError on anything else."""
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise TypeError(f"a JSON object was expected, not {type(data).__name__}")
        data["skipped"] = {int(k): v for k, v in data.get("skipped", {}).items()}
        if data.get("version", 1) < 2:
            _upgrade(data)
        known = {f for f in cls.__dataclass_fields__}
        record = cls(**{k: v for k, v in data.items() if k in known})
        # a folder can be edited or come from elsewhere: a field of the wrong type is damage named here,
        # not a raw TypeError deep in result() (pdbatch.store.jobdir turns this into a JobFolderError)
        wrong = [name for name, ok in _field_checks(record) if not ok]
        if wrong:
            raise TypeError(f"{', '.join(map(repr, wrong))} {'has' if len(wrong) == 1 else 'have'} the wrong type")
        return record


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _field_checks(record: Manifest) -> list[tuple[str, bool]]:
    """Each field's type as :meth:`Manifest.to_json` writes it (a request file's ``call.requests`` too)."""
    requests = record.call.get("requests") if isinstance(record.call, dict) else None
    return [
        ("id", isinstance(record.id, str)),
        ("parts", isinstance(record.parts, list) and all(isinstance(p, str) for p in record.parts)),
        ("backend", isinstance(record.backend, str)),
        ("backend_settings", isinstance(record.backend_settings, dict)),
        ("model", isinstance(record.model, str)),
        ("kind", isinstance(record.kind, str)),
        ("n_rows", _whole(record.n_rows)),
        ("skipped", all(isinstance(v, str) and 0 <= k < record.n_rows for k, v in record.skipped.items())
         if _whole(record.n_rows) else True),
        ("created", isinstance(record.created, (int, float)) and not isinstance(record.created, bool)),
        ("call", isinstance(record.call, dict)),
        ("call.requests", requests is None or (isinstance(requests, dict) and isinstance(
            siblings := requests.get("siblings", []), list) and all(isinstance(s, str) for s in siblings))),
        ("options", isinstance(record.options, dict)),
        ("rows", isinstance(record.rows, dict) and all(_whole(v) for v in record.rows.values())),
    ]


def _upgrade(data: dict[str, Any]) -> None:
    # Version 1 kept the custom_id column, the schema and some options beside
    # the call (which older jobs lack altogether): fold them into call/options.
    call = data.get("call") or {}
    call.setdefault("custom_id", data.get("custom_id_column"))
    if call.get("schema") is None:
        call["schema"] = data.get("schema")
    data["call"] = call
    data["options"] = {"cache": data.get("cache", False), "overwrite": data.get("overwrite", False),
                       "display_name": data.get("display_name") or None}
