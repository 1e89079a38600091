"""Check a Vertex AI project before its first batch job: ``pdbatch check`` and ``Vertex.check``.

What fails a real user's first job is the project, not pdbatch: the Vertex AI
API not enabled, the model not enabled in Model Garden (400
FAILED_PRECONDITION "Project ... is not allowed to use Publisher Model"), a
region that does not serve the model, no rights on the staging bucket, or a
bucket in another project that the Vertex AI service agent (which reads the
input and writes the output) cannot use. No test can reach Google, so this
asks the user's own project, cheaply (SPEC.md, "What a real project meets on
its first job"):

* credentials and project: one ``ListBatchPredictionJobs`` with ``pageSize=1`` (free);
* the model: one online chat completion of ``max_tokens=1`` on the region's
  OpenAI-compatible endpoint (``.../endpoints/openapi/chat/completions``), which
  proves the API, the enablement, the region and the caller's rights at a
  fraction of a cent (its cost is shown); embedding models, Google's own,
  need no enabling: Model Garden's free GET is asked instead;
* the caller's rights on the staging bucket (``testIamPermissions``, which
  needs no permission of its own) or dataset (and the dataset's location);
* the service agent's access, where the caller may read the IAM policy.

``submit`` runs the free checks once per (project, location, model) and the
paid request the first time a model is used there, remembering what passed in
``PDBATCH_HOME/preflight.json`` (failures are not remembered: they are asked
again after the fix). ``Vertex(preflight=False)`` turns both off.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from .. import config
from ..atomic import atomic_path
from ..errors import ConfigError, PdbatchError
from ..models import VertexModel, location_problem, online_only_message, retired_message
from ..pricing import ONLINE_PRICES
from . import _garden, _gcp, _gcp_io
from ._endpoint import EMULATOR_VARIABLES, emulator_http
from ._gcp import BqUri, GcsUri, translate
from ._setup import not_enabled_message


class Vertex(Protocol):
    """What the checks use of :class:`pdbatch.backends.vertex.Vertex` (not imported: it imports this)."""

    project: str
    staging: str | None
    output: str | None
    _credentials: Any

    def _jobs(self, location: str) -> Any: ...
    def _client(self, service: str, location: str) -> Any: ...
    def _endpoint(self, location: str) -> str: ...
    def _base_url(self, location: str) -> str: ...
    def _where(self, *uris: object, location: str | None = None) -> str: ...
    def _storage(self) -> Any: ...
    def _bigquery(self) -> Any: ...

__all__ = ["AGENT", "Line", "Report", "before_submit", "check", "run"]

#: The Vertex AI service agent: batch jobs read their input and write their output as it.
AGENT = "service-PROJECT_NUMBER@gcp-sa-aiplatform.iam.gserviceaccount.com"
_AGENT_MEMBER = re.compile(r"^serviceAccount:service-\d+@gcp-sa-aiplatform\.iam\.gserviceaccount\.com$")
#: What pdbatch and the job do with the staging bucket's objects.
BUCKET_PERMISSIONS = ("storage.objects.list", "storage.objects.get", "storage.objects.create")
_READS = {"roles/storage.objectViewer", "roles/storage.objectUser", "roles/storage.objectAdmin",
          "roles/storage.admin", "roles/storage.legacyObjectReader", "roles/storage.legacyBucketReader"}
_WRITES = {"roles/storage.objectCreator", "roles/storage.objectUser", "roles/storage.objectAdmin",
           "roles/storage.admin", "roles/storage.legacyBucketWriter"}
_MARKS = {True: "\u2714", False: "\u2718", None: "?"}
#: A prompt of a few tokens: the answer's one token is all that is paid for beyond it.
_PING = [{"role": "user", "content": "Say OK."}]


@dataclass(frozen=True)
class Line:
    """One check: passed (True), failed (False) or could not tell (None), and the fix for a failure."""

    name: str
    ok: bool | None
    text: str
    fix: str = ""

    def __str__(self) -> str:
        fix = f" Fix: {self.fix}" if self.ok is False and self.fix else ""
        return f"{_MARKS[self.ok]} {self.name}: {self.text}{fix}"


@dataclass
class Report:
    """The lines of a preflight, in order; :attr:`ok` when none failed."""

    lines: list[Line] = field(default_factory=list)
    cost: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no check failed (a check that could not tell does not fail)."""
        return all(line.ok is not False for line in self.lines)

    def __str__(self) -> str:
        return "\n".join(map(str, self.lines))

    def __repr__(self) -> str:
        return str(self)


def run(vx: Vertex, spec: VertexModel, location: str, *, paid: bool = True) -> Report:
    """Every check, in order; ``paid=False`` skips the online request (the model line then says so)."""
    report = Report()
    report.lines.append(_project(vx, location))
    line, cost = _model(vx, spec, location, paid=paid)
    report.lines.append(line)
    report.cost = cost
    if vx.staging:
        places = [(_gcp.parse_uri(vx.staging, "staging"), "staging")]
        if vx.output:
            places.append((_gcp.parse_uri(vx.output, "output"), "output"))
        for uri, what in places:
            report.lines += _place(vx, uri, what, location)
    else:
        report.lines.append(Line("staging", False, "no staging= set: nothing to upload the requests to",
                                 "Vertex(staging='gs://bucket/prefix/') or 'bq://project.dataset' "
                                 "(or PDBATCH_VERTEX_STAGING)"))
    return report


def check(vx: Vertex, spec: VertexModel, location: str) -> Report:
    """Every check, paid one included; when all pass, ``submit`` need not run them again."""
    report = run(vx, spec, location)
    if report.ok and all(line.ok for line in report.lines[:2]):
        today = dt.date.today().isoformat()
        _remember(_key(vx, spec, location), {"free": today, "paid": today})
    return report


def _key(vx: Vertex, spec: VertexModel, location: str) -> str:
    return f"{vx.project}|{location}|{spec.resource}"


def before_submit(vx: Vertex, spec: VertexModel, location: str) -> None:
    """The checks ``submit`` runs: free ones once per (project, location, model), the paid one once too.

    Raises
    ------
    ConfigError
        A check failed; the message has one line per failure, with its fix. Nothing was uploaded.
    """
    key = _key(vx, spec, location)
    done = _remembered().get(key, {})
    if "free" in done and "paid" in done:
        return
    paid = spec.kind == "chat" and "paid" not in done
    report = run(vx, spec, location, paid=paid)
    if not report.ok:
        failed = "\n".join(str(line) for line in report.lines if line.ok is False)
        raise ConfigError(f"the Vertex AI project is not ready for this job (nothing was uploaded):\n{failed}\n"
                          f"`pdbatch check --backend vertex --model {spec.model_id}` runs every check again.")
    if any(line.ok is None for line in report.lines[:2]):
        return  # the project or the model could not be checked (an outage): ask again next time
    today = dt.date.today().isoformat()
    _remember(key, {"free": today, **({"paid": today} if paid or spec.kind != "chat" else {})})


# ------------------------------------------------------------------ checks
def _project(vx: Vertex, location: str) -> Line:
    parent = f"projects/{vx.project}/locations/{location}"
    try:
        client = vx._jobs(location)
        with translate(f"listing batch prediction jobs in {parent}", where=vx._where(location=location)):
            _gcp.retrying(lambda: next(iter(client.list_batch_prediction_jobs(
                request={"parent": parent, "page_size": 1}).pages), None))
    except PdbatchError as exc:
        if _passing(exc):
            return Line("project", None, f"Vertex AI did not answer ({exc}); job creation will tell")
        return Line("project", False, str(exc),
                    f"enable the API (gcloud services enable aiplatform.googleapis.com --project {vx.project}), "
                    f"grant the caller roles/aiplatform.user, and sign in (gcloud auth application-default login)")
    return Line("project", True, f"credentials resolve and project {vx.project!r} answers in {location!r} "
                                 f"(Vertex AI API enabled, jobs may be listed)")


def _passing(exc: BaseException) -> bool:
    """An outage or rate limit that outlived the retries: says nothing about the project."""
    from google.api_core import exceptions as gexc

    return isinstance(exc.__cause__, (*_gcp.transient(), gexc.RetryError))


def _model(vx: Vertex, spec: VertexModel, location: str, *, paid: bool) -> tuple[Line, float]:
    name = f"model {spec.model_id}"
    if spec.status() == "retired":
        return Line(name, False, retired_message(spec), "pick a live model (`pdbatch models`)"), 0.0
    if not spec.batch:
        return Line(name, False, online_only_message(spec), "pick a model that runs batch jobs"), 0.0
    problem = location_problem(spec, location)
    if problem:
        return Line(name, False, problem, f"use location={spec.region!r}"), 0.0
    if spec.kind != "chat" or not paid:
        with contextlib.suppress(PdbatchError):
            garden = vx._client("ModelGardenServiceClient", location)
            answer, detail = _garden.served(garden, vx._endpoint(location), spec.resource)
            if answer is False:
                return Line(name, False, f"Model Garden does not serve {spec.resource} ({detail})",
                            "`pdbatch models` lists the live models"), 0.0
        why = ("Google's own embedding model: nothing to enable" if spec.kind != "chat"
               else "its enablement was checked by an online request earlier, or preflight is off")
        return Line(name, True, f"served in {location!r} ({why})"), 0.0
    return _online(vx, spec, location)


def _online(vx: Vertex, spec: VertexModel, location: str) -> tuple[Line, float]:
    """One chat completion of ``max_tokens=1``: enabled, served here, and the caller may use it."""
    import requests

    name = f"model {spec.model_id}"
    base = vx._base_url(location)
    url = f"{base}/v1/projects/{vx.project}/locations/{location}/endpoints/openapi/chat/completions"
    body = {"model": spec.body_name, "messages": _PING, "max_tokens": 1}
    try:
        session = _session(vx, base)
        answer = session.post(url, json=body, timeout=60)
    except ConfigError as exc:
        return Line(name, False, str(exc)), 0.0
    except PdbatchError as exc:
        return Line(name, False, str(exc), "gcloud auth application-default login"), 0.0
    except (requests.RequestException, OSError) as exc:
        return Line(name, False, f"cannot reach {base} ({type(exc).__name__}: {exc})",
                    "check the network and api_endpoint"), 0.0
    if answer.status_code == 200:
        usage = _json(answer).get("usage") or {}
        tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 1)
        price = ONLINE_PRICES.get(spec.model_id)
        cost = (tokens_in * price[0] + tokens_out * price[1]) / 1e6 if price else 0.0
        shown = f"${cost:.6f}" if price else "price unknown"
        return Line(name, True, f"enabled for {vx.project!r} and served in {location!r} (one online request: "
                                f"{tokens_in} + {tokens_out} tokens, {shown})"), cost
    error = _json(answer).get("error") or {}
    message = str(error.get("message") or answer.text[:300])
    if "is not allowed to use Publisher Model" in message:
        return Line(name, False, not_enabled_message(spec, vx.project)), 0.0
    if answer.status_code in (401, 403):
        return Line(name, False, f"the online request was refused ({answer.status_code}: {message})",
                    f"grant the caller roles/aiplatform.user on {vx.project!r} (aiplatform.endpoints.predict)"), 0.0
    if answer.status_code == 404 or "not supported in location" in message or "not available" in message:
        return Line(name, False, f"{spec.resource} is not served in {location!r} ({message})",
                    f"use location={spec.region!r}, or `pdbatch models` for the live models"), 0.0
    if answer.status_code == 429 or answer.status_code >= 500:
        return Line(name, None, f"the online request was not answered ({answer.status_code}: {message}); "
                                f"job creation will tell"), 0.0
    return Line(name, False, f"the online request failed ({answer.status_code}: {message})",
                "run `pdbatch check` again; if it persists, check the model's page in Model Garden"), 0.0


def _session(vx: Vertex, base: str) -> Any:
    import requests

    if base.startswith("http://"):
        # Plain HTTP only to a loopback emulator, as for endpoints read from a job
        # folder (._endpoint), and never with a token.
        if not emulator_http(base):
            raise ConfigError(f"api_endpoint={base!r} is plain HTTP: the online check goes there only for a "
                              f"loopback emulator while {' or '.join(EMULATOR_VARIABLES)} is set; use https://")
        return requests.Session()
    from google.auth.transport.requests import AuthorizedSession

    credentials = vx._credentials
    with translate("finding Google credentials", where=vx._where()):
        if credentials is None:
            import google.auth

            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        return AuthorizedSession(credentials)


def _json(answer: Any) -> dict[str, Any]:
    try:
        data = answer.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _place(vx: Vertex, uri: GcsUri | BqUri, what: str, location: str) -> list[Line]:
    if isinstance(uri, GcsUri):
        return _bucket(vx, uri, what)
    return _dataset(vx, uri, what, location)


def _bucket(vx: Vertex, uri: GcsUri, what: str) -> list[Line]:
    name = f"{what} gs://{uri.bucket}"
    try:
        with translate(f"testing your rights on gs://{uri.bucket}", where=vx._where(f"bucket gs://{uri.bucket}")):
            bucket = vx._storage().bucket(uri.bucket)
            granted = set(_gcp.retrying(lambda: bucket.test_iam_permissions(list(BUCKET_PERMISSIONS))))
    except PdbatchError as exc:
        return [Line(name, False, str(exc), f"create the bucket, or use one you can write to ({what}=)")]
    missing = [p for p in BUCKET_PERMISSIONS if p not in granted]
    if missing:
        return [Line(name, False, f"the caller lacks {', '.join(missing)} on it",
                     f"grant roles/storage.objectUser on gs://{uri.bucket} to the caller, or use another bucket")]
    lines = [Line(name, True, "the caller may list, read and write objects (testIamPermissions)")]
    return [*lines, _bucket_agent(vx, bucket, uri)]


def _bucket_agent(vx: Vertex, bucket: Any, uri: GcsUri) -> Line:
    from google.api_core import exceptions as gexc

    name = "service agent"
    grant = (f"if gs://{uri.bucket} is in another project than {vx.project!r}, grant the Vertex AI service agent "
             f"{AGENT} (of {vx.project!r}) roles/storage.objectUser on it")
    try:
        policy = _gcp.retrying(lambda: bucket.get_iam_policy(requested_policy_version=3))
    except (gexc.GoogleAPICallError, gexc.RetryError, OSError) as exc:
        return Line(name, None, f"cannot read the IAM policy of gs://{uri.bucket} "
                                f"({type(exc).__name__}): {grant}")
    members = {(b["role"], m) for b in policy.bindings for m in b.get("members", ())}
    own = {f"projectOwner:{vx.project}", f"projectEditor:{vx.project}"}
    if any(m in own for _, m in members):
        return Line(name, True, f"gs://{uri.bucket} is in project {vx.project!r}, where the Vertex AI service "
                                f"agent has access")
    roles = {r for r, m in members if _AGENT_MEMBER.match(m)}
    if roles & _READS and roles & _WRITES:
        return Line(name, True, f"a Vertex AI service agent may read and write gs://{uri.bucket}")
    return Line(name, False, f"gs://{uri.bucket} is in another project and the Vertex AI service agent has no "
                             f"object rights on it: the job could not read its input or write its output",
                f"grant {AGENT} (of {vx.project!r}) roles/storage.objectUser on gs://{uri.bucket}")


def _dataset(vx: Vertex, uri: BqUri, what: str, location: str) -> list[Line]:
    name = f"{what} bq://{uri.dataset_id}"
    try:
        where = vx._where(f"dataset {uri.dataset_id}", location=location)
        with translate(f"reading the dataset {uri.dataset_id}", where=where):
            dataset = _gcp.retrying(lambda: vx._bigquery().get_dataset(uri.dataset_id))
    except PdbatchError as exc:
        return [Line(name, False, str(exc), f"create the dataset in {location!r}, or use one you can read")]
    if not _gcp_io.same_region(dataset.location or "", location):
        return [Line(name, False, f"the dataset is in {dataset.location}, the job in {location!r}: they must be "
                                  f"in the same location", f"use a dataset in {location!r} ({what}=)")]
    lines = [Line(name, True, f"readable, in {dataset.location} like the job (creating tables in it needs "
                              f"roles/bigquery.dataEditor)")]
    if uri.project == vx.project:
        return [*lines, Line("service agent", True, f"dataset in project {vx.project!r}, where the Vertex AI "
                                                    f"service agent has access")]
    agent = any(_AGENT_MEMBER.match(f"serviceAccount:{e.entity_id}") for e in dataset.access_entries
                if isinstance(e.entity_id, str))
    if agent:
        return [*lines, Line("service agent", True, f"a Vertex AI service agent has access to {uri.dataset_id}")]
    return [*lines, Line("service agent", False, f"{uri.dataset_id} is in another project and grants the Vertex "
                                                 f"AI service agent nothing",
                         f"grant {AGENT} (of {vx.project!r}) roles/bigquery.dataEditor on {uri.dataset_id}")]


# ------------------------------------------------------------------ memory
def _path() -> Any:
    return config.home() / "preflight.json"


def _remembered() -> dict[str, dict[str, str]]:
    """What passed before. Written by this home only; a damaged file counts as nothing remembered."""
    path = _path()
    try:
        if path.is_symlink():
            return {}  # never follow a link out of PDBATCH_HOME
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, dict)}


def _remember(key: str, passed: dict[str, str]) -> None:
    data = _remembered()
    data[key] = {**data.get(key, {}), **passed}
    with contextlib.suppress(OSError), atomic_path(_path()) as tmp:
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
