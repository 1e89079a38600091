"""Request body parameters: the fields pdbatch knows, checked before anything runs.

Keyword arguments that are not pdbatch's own (``max_tokens=8``,
``temperature=0``) go into every request body. A typo there would otherwise
travel silently into a job that then runs on the service's defaults, and a
wrong type would fail every row after the job was paid for. So every body
field is checked here, once, before a request is built:

- a known OpenAI chat-completions or embeddings field, checked by type and range;
- a field the backend adds (the local e5 engine's ``input_type``);
- anything else is refused with the close matches, among the body fields and
  the call's own keyword arguments (``progres`` -> ``progress``);
- ``extra_body={...}`` passes fields this list does not know, unchecked (as
  the OpenAI client's argument of that name does);
- a backend refuses the fields it cannot honour (:meth:`Backend.unsupported_params`).

Some OpenAI fields are refused on every backend because the result frame
cannot carry what they ask for (``n > 1``, ``logprobs``, tool calls,
streaming): their answers would be lost silently.

Each kind declares its fields (:mod:`pdbatch.lines.kinds`, built from the
checks of :mod:`pdbatch.lines.checks`): the one place that knows body fields;
the local engine checks each row's body with them too.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ..errors import InputError
from .checks import CHAT_FIELDS, EMBEDDINGS_FIELDS, Check, boolean, integer, kind_of, one_of
from .kinds import EMBEDDINGS, KINDS, Kind, spec

__all__ = ["CHAT_FIELDS", "DEFAULT_MAX_TOKENS", "EMBEDDINGS_FIELDS", "EXTRA_BODY", "RESERVED", "BodyRules", "Check",
           "body_params", "boolean", "check_fields", "integer", "one_of"]  # the checks: re-exported


#: The cap on answer length when a chat call gives no ``max_tokens``. Without
#: one, every row may generate until its context window is full: a small
#: local model that loops then runs for minutes per row, and a Vertex model
#: with a 128k window bills up to that. 512 tokens (about 380 English words)
#: holds a classification, an extraction or a few paragraphs; a longer answer
#: ends with ``finish_reason="length"``, and ``max_tokens=None`` lifts the cap.
DEFAULT_MAX_TOKENS = 512

#: The keyword argument that carries fields the list does not know.
EXTRA_BODY = "extra_body"

#: Fields that are arguments of their own and never body parameters.
RESERVED = {"model": "model=", "messages": "messages= (a column of message lists)", "input": "the prompt template"}

#: Why an argument of chat calls does not apply to embeddings, where that helps.
_WHY_NOT = {("system", EMBEDDINGS): ": the model embeds the text alone; put any instruction into the template "
                                    "itself, e.g. 'query: {text}'"}

#: Names people bring from other libraries, and what pdbatch calls them.
ALIASES = {
    "template": "prompt",
    "prompt_template": "prompt",
    "system_prompt": "system",
    "system_message": "system",
    "max_length": "max_tokens",
    "max_new_tokens": "max_tokens",
    "max_output_tokens": "max_tokens",
    "num_predict": "max_tokens",
    "n_predict": "max_tokens",
    "stop_sequences": "stop",
    "random_seed": "seed",
    "json_schema": "schema",
    "response_schema": "schema",
}


# ------------------------------------------------------------------ the check
def _plain(value: Any) -> Any:
    # numpy scalars (a value taken from a frame) become Python ones: JSON has no numpy
    item = getattr(value, "item", None)
    return item() if callable(item) and type(value).__module__ == "numpy" else value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = [ALIASES[name]] if name in ALIASES else difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


def check_fields(
    params: Mapping[str, Any],
    kind: Kind,
    *,
    extra_fields: Mapping[str, Check] | None = None,
    keywords: Iterable[str] = (),
    escape: str = "extra_body={{'{name}': ...}}",
) -> tuple[dict[str, Any], list[str]]:
    """Check body fields by name, type and range.

    Parameters
    ----------
    params : mapping
        Field name to value, as the caller gave them (``extra_body`` included).
    kind : {"chat", "embeddings"}
    extra_fields : mapping, optional
        Fields a backend adds to OpenAI's, with their checks.
    keywords : iterable of str
        The call's own keyword arguments, offered as close matches for typos.
    escape : str
        How to pass an unknown field, as the caller writes it: a format
        string with ``{name}`` (the command line writes ``--param extra_body=...``).

    Returns
    -------
    (dict, list of str)
        The fields with ``extra_body`` merged in (numpy scalars made plain),
        and one message per problem found.
    """
    known = {**spec(kind).fields, **(extra_fields or {})}
    # the field each row's input fills is never a parameter, whichever kind declares it
    reserved = {**RESERVED, spec(kind).payload: RESERVED.get(spec(kind).payload, "the prompt template")}
    out: dict[str, Any] = {}
    problems: list[str] = []
    for name, raw in params.items():
        value = _plain(raw)
        if name == EXTRA_BODY:
            continue
        if name in reserved:
            problems.append(f"{name!r} cannot be a body parameter: pass it as {reserved[name]}")
        elif name in known and value is None:
            # None means "not given", as OpenAI's own client reads it; for the
            # length caps it is an explicit "no cap", which body_params keeps
            if name in ("max_tokens", "max_completion_tokens"):
                out[name] = None
        elif name in known:
            wrong = known[name](value)
            if wrong:
                problems.append(f"{name}={_shown(raw)}: {wrong}")
            else:
                out[name] = value
        elif other := _owner(name, kind):
            problems.append(f"{name!r} is a field of {other} requests, not {kind} requests")
        elif name in keywords:  # an argument of another df.llama method (embed(system=...))
            problems.append(f"{name}= does not apply to {kind} requests" + _WHY_NOT.get((name, kind), ""))
        else:
            problems.append(
                f"unknown parameter {name!r}{_suggest(name, [*known, *keywords])} "
                f"(to send a body field pdbatch does not know, pass {escape.format(name=name)})"
            )
    extra = params.get(EXTRA_BODY)
    if extra is not None:
        if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
            problems.append(f"{EXTRA_BODY} must be a dict of field names to values, got {kind_of(extra)}")
        else:
            for name, value in extra.items():
                if name in reserved:
                    problems.append(f"{EXTRA_BODY}[{name!r}]: pass it as {reserved[name]}")
                elif name in known or name in out:
                    problems.append(f"{EXTRA_BODY}[{name!r}]: a field pdbatch knows; pass it as {name}=... "
                                    f"so that it is checked")
                else:
                    out[name] = _plain(value)
    both = out.get("max_tokens") is not None and out.get("max_completion_tokens") is not None
    if both and "max_completion_tokens" in known:
        problems.append("pass max_tokens or max_completion_tokens, not both")
    return out, problems


def _owner(name: str, kind: str) -> str | None:
    """The first other kind that takes body field ``name`` (None: none does)."""
    return next((k for k, declared in KINDS.items() if k != kind and name in declared.fields), None)


class BodyRules(Protocol):
    """What a backend says about request bodies (every :class:`~pdbatch.backends.Backend` has both methods).

    Declared here, by its shape, so that checking a call's parameters needs
    no backend module (this module stands below the backends).
    """

    def body_fields(self, kind: Kind) -> Mapping[str, Check]: ...

    def unsupported_params(self, kind: Kind, params: Mapping[str, Any]) -> dict[str, str]: ...


def body_params(
    params: Mapping[str, Any],
    kind: Kind,
    backend: BodyRules,
    *,
    keywords: Iterable[str] = (),
    escape: str = "extra_body={{'{name}': ...}}",
) -> dict[str, Any]:
    """The body fields a call sends: checked, refused where ``backend`` cannot honour them, defaults added.

    A chat call without ``max_tokens`` (or ``max_completion_tokens``) gets
    :data:`DEFAULT_MAX_TOKENS`; ``max_tokens=None`` sends no cap at all.

    Parameters
    ----------
    params : mapping
        The call's body keyword arguments (``extra_body`` included).
    kind : {"chat", "embeddings"}
    backend : BodyRules
        Usually the Backend: adds its own fields (:meth:`Backend.body_fields`) and refuses those it
        cannot honour (:meth:`Backend.unsupported_params`).
    keywords, escape
        As in :func:`check_fields`.

    Returns
    -------
    dict
        The fields to put into every request body.

    Raises
    ------
    InputError
        (a :class:`ConfigError`) Naming every field that is unknown, of the
        wrong type or range, or not supported by the backend, with how to fix it.
    """
    out, problems = check_fields(params, kind, extra_fields=backend.body_fields(kind), keywords=keywords,
                                 escape=escape)
    if not problems:
        for name, why in backend.unsupported_params(kind, out).items():
            problems.append(f"{name}={out[name]!r}: {why}")
    if len(problems) == 1:
        raise InputError(f"bad request parameter (nothing was sent): {problems[0]}")
    if problems:
        listed = "".join(f"\n  - {p}" for p in problems)
        raise InputError(f"{len(problems)} bad request parameters (nothing was sent):{listed}")
    if "max_tokens" in spec(kind).fields:  # a kind that caps its answers' length gets a cap by default
        if "max_tokens" not in out and "max_completion_tokens" not in out:
            out["max_tokens"] = DEFAULT_MAX_TOKENS
        for name in ("max_tokens", "max_completion_tokens"):
            if name in out and out[name] is None:
                del out[name]  # None: no cap, and no null for the service to refuse
    return out
