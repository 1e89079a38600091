"""In-process emulator of Vertex AI batch prediction (REST v1, JSON).

Speaks what google-cloud-aiplatform 2.x sends with ``api_transport="rest"``
and ``api_endpoint="http://127.0.0.1:PORT"``::

    POST   /v1/projects/P/locations/L/batchPredictionJobs          create
    GET    /v1/projects/P/locations/L/batchPredictionJobs          list (filter: state, display_name, labels.KEY)
    GET    /v1/projects/P/locations/L/batchPredictionJobs/ID       get
    POST   /v1/projects/P/locations/L/batchPredictionJobs/ID:cancel
    DELETE /v1/projects/P/locations/L/batchPredictionJobs/ID       -> Operation
    GET    /v1/projects/P/locations/L/operations/N
    GET    /v1/publishers/PUB/models/MODEL                         Model Garden: is the model served?
    POST   /v1/projects/P/locations/L/endpoints/openapi/chat/completions   one online answer (the preflight)

Only the models in ``emu.live_models`` are served (default: the ones Google
lists live on 2026-11-30); any other answers 404 "Publisher Model ... not
found", on the Model Garden GET and at job creation, as a retired model does.
As on the service (SPEC.md "Models", "What a real project meets on its first
job"), each catalogued model is served only in its locations (``BATCH_LOCATIONS``,
online also ``ONLINE_LOCATIONS``), a model without batch support refuses job
creation (400 "Do not support publisher model"), and a model in
``emu.not_enabled`` (not enabled in Model Garden for the project) answers 400
FAILED_PRECONDITION "Project ... is not allowed to use Publisher Model ...",
at job creation and on the online endpoint.
Gemini embedding models read and write their own line format ({"key",
"request"} in, {"key", "request", "response": {"embedding": {"values"}}} out)
from Cloud Storage only. Gemini chat models read Gemini request lines ({"key",
"request": {"contents", ...}}) and write {"key", "request", "status",
"processed_time", "response": {"candidates", "usageMetadata"}}; an OpenAI line
sent to them fails on its row, as a Gemini line sent to an open model does.
``emu.output_shape`` picks the output lines of open-model chat jobs: "gemini"
({..., "request", "response", "status", "processed_time"}) or "model_garden"
({"custom_id", "error": "", "response", "id"}).

Jobs run on a background thread: QUEUED -> PENDING -> RUNNING -> SUCCEEDED,
one ``step`` seconds apart, reading input from and writing output to the
GCS / BigQuery emulators with the real client libraries. Tests steer failures
through ``emu.faults`` (see Faults) and inspect ``emu.requests``.

    with VertexEmulator(gcs_url=..., bq_url=...) as emu:
        aiplatform.init(..., api_endpoint=emu.url, api_transport="rest")
"""
from __future__ import annotations

import datetime as dt
import json
import random
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import fake_model, vertex_io
from .vertex_io import JobFailure

TERMINAL_STATES = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED",
                   "JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED"}
HTTP_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
               404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED",
               499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
               503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
MODEL_RE = re.compile(r"^(?:projects/[^/]+/locations/[^/]+/)?"
                      r"publishers/[a-z0-9][a-z0-9._-]*/models/[A-Za-z0-9][A-Za-z0-9._@-]*$")
JOBS_RE = re.compile(r"^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/batchPredictionJobs"
                     r"(?:/([^/:]+))?(:cancel)?$")
PUBLISHER_MODEL_RE = re.compile(r"^/(v1|v1beta1)/(publishers/[^/]+/models/[^/:]+)$")
FILTER_TERM_RE = re.compile(r'^\s*(state|display_name|displayName|labels\.[A-Za-z0-9_]+)\s*(!=|=)\s*'
                            r'(?:"([^"]*)"|([^\s"]*))\s*$')
#: A label key with a hyphen: list filters are AIP-160 (SPEC.md "What a real project meets on its
#: first job": documented as labels.key=value, no documented key has a hyphen), where "-" is the
#: negation operator; the emulator refuses such a filter rather than guess how it parses.
HYPHEN_LABEL_RE = re.compile(r"labels\.[A-Za-z0-9_]*-")
ONLINE_RE = re.compile(r"^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/endpoints/openapi/chat/completions$")
#: Gemini chat models that run batch jobs on 2026-12-06 (pdbatch/_catalog.py: Google's model
#: versions page and Gemini batch page), served in `global` only (the catalog's reading of the
#: sources; no stored page gives their batch regions). gemini-2.5-* were retired on 2026-10-20:
#: not served, so they answer 404 as a retired model does.
GEMINI_CHAT_MODELS = {f"publishers/google/models/{m}": {"global"} for m in (
    "gemini-3.5-flash", "gemini-3.5-flash-lite", "gemini-3.1-flash-lite", "gemini-4-argon")}
#: The models Google lists live for batch on 2026-11-30 (open models batch page,
#: embeddings batch page, and the inventory quoted in SPEC.md).
DEFAULT_LIVE_MODELS = frozenset({
    "publishers/meta/models/llama-4-scout-17b-16e-instruct-maas",
    "publishers/meta/models/llama-4-maverick-17b-128e-instruct-maas",
    "publishers/openai/models/gpt-oss-120b-maas",
    "publishers/google/models/gemma-4-26b-a4b-it-maas",
    "publishers/zai-org/models/glm-5.2-maas",
    "publishers/deepseek-ai/models/deepseek-v4.1-flash-maas",
    "publishers/google/models/gemini-embedding-001",
    "publishers/google/models/gemini-embedding-2",
    *GEMINI_CHAT_MODELS,
})
GEMINI_EMBEDDING_MODELS = {
    "publishers/google/models/gemini-embedding-001": {"us-central1", "us-east1", "us-east4", "us-west1",
                                                      "us-west4", "europe-west1", "europe-west4"},
    "publishers/google/models/gemini-embedding-2": {"us", "eu", "global"},
}
#: Where each model's batch jobs run (SPEC.md "Models", from the model cards): gpt-oss-120b in
#: us-central1; Llama 4 Scout / Maverick in us-east5 only; the Gemini embedding models as
#: above. A model not listed here (a test's own) runs anywhere.
BATCH_LOCATIONS: dict[str, set[str]] = {
    "publishers/openai/models/gpt-oss-120b-maas": {"us-central1"},
    "publishers/meta/models/llama-4-scout-17b-16e-instruct-maas": {"us-east5"},
    "publishers/meta/models/llama-4-maverick-17b-128e-instruct-maas": {"us-east5"},
    **GEMINI_EMBEDDING_MODELS,
    **GEMINI_CHAT_MODELS,
}
#: Models whose batch lines are Gemini lines ({"key", "request"}), echoed with the answer.
GEMINI_MODELS = {*GEMINI_EMBEDDING_MODELS, *GEMINI_CHAT_MODELS}
#: Where they also answer online requests (SPEC.md "Models": gpt-oss-120b in `global`, online only;
#: GLM-5.2 and DeepSeek-V4.1-Flash in `global` only).
ONLINE_LOCATIONS: dict[str, set[str]] = {
    "publishers/openai/models/gpt-oss-120b-maas": {"global"},
    "publishers/zai-org/models/glm-5.2-maas": {"global"},
    "publishers/deepseek-ai/models/deepseek-v4.1-flash-maas": {"global"},
}
#: Models that run online only (SPEC.md "Models": their cards say "Batch inference: Not supported").
NO_BATCH = frozenset({
    "publishers/google/models/gemma-4-26b-a4b-it-maas",
    "publishers/zai-org/models/glm-5.2-maas",
    "publishers/deepseek-ai/models/deepseek-v4.1-flash-maas",
})
OPERATION_RE = re.compile(r"^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/operations/([^/]+)$")


def rfc3339(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DropConnection(Exception):
    """The server closes the connection without answering."""


def publisher_model(model: str) -> str:
    """``[projects/P/locations/L/]publishers/p/models/m`` -> ``publishers/p/models/m``."""
    return model[model.index("publishers/"):]


class ApiError(Exception):
    """Answered as a Google error body {"error": {code, message, status}}."""

    def __init__(self, code: int, message: str, status: str | None = None):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class Faults:
    """Failure injection; read by each job as it runs, so set it before (or,
    for ``hold``, during) the run.

    fail_job:    message -> the job ends JOB_STATE_FAILED with it, no output.
    row_errors:  set of custom_ids, or predicate(record) -> bool; those rows get
                 status "Bad Request: {...}" and no response.
    partial:     the job ends JOB_STATE_PARTIALLY_SUCCEEDED (rows in row_errors
                 fail, or the last input row if row_errors is empty).
    expire:      the job writes the first half of the rows, then ends
                 JOB_STATE_EXPIRED.
    http_errors: status codes answered, in order, to the next requests (any
                 route) with a Google error body; each one is used once.
    create_errors: the same, for job creation only, answered before a job
                 is made (a 429 or 503 that refused the call).
    create_then: what the next creations answer after the job was made and
                 started: a status code (the error body), "drop" (the
                 connection closes with no answer) or a number of seconds to
                 stall before answering (a client timeout); each used once.
    hold:        the job stays RUNNING after ``hold_after`` rows (default half)
                 until hold is cleared (emu.release()) or the job is cancelled.
    pause:       the same point, but the job shows JOB_STATE_PAUSED until
                 pause is cleared or the job is cancelled.
    """
    fail_job: str | None = None
    row_errors: set[str] | Callable[[dict], bool] = field(default_factory=set)
    partial: bool = False
    expire: bool = False
    http_errors: list[int] = field(default_factory=list)
    create_errors: list[int] = field(default_factory=list)
    create_then: list[int | str | float] = field(default_factory=list)
    hold: bool = False
    hold_after: int | None = None
    pause: bool = False

    def row_fails(self, record: dict) -> bool:
        if callable(self.row_errors):
            return bool(self.row_errors(record))
        return record.get("custom_id") in self.row_errors


@dataclass
class RecordedRequest:
    method: str
    path: str            # without the query string
    query: dict          # parsed query, e.g. {"$alt": ["json;enum-encoding=int"]}
    body: Any            # parsed JSON, or None
    headers: dict


@dataclass
class Job:
    id: str
    name: str
    location: str
    spec: dict                      # the create body as received (camelCase)
    create_time: dt.datetime
    state: str = "JOB_STATE_QUEUED"
    update_time: dt.datetime | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    error: dict | None = None
    partial_failures: list = field(default_factory=list)
    output_info: dict = field(default_factory=dict)
    stats: dict | None = None
    cancel_requested: bool = False
    held: threading.Event = field(default_factory=threading.Event)  # set while on hold
    output_files: list[str] = field(default_factory=list)  # for tests

    def resource(self) -> dict:
        out = {k: v for k, v in self.spec.items() if k not in {"name", "state"}}
        out.update(name=self.name, state=self.state, createTime=rfc3339(self.create_time),
                   updateTime=rfc3339(self.update_time or self.create_time))
        if self.start_time:
            out["startTime"] = rfc3339(self.start_time)
        if self.end_time:
            out["endTime"] = rfc3339(self.end_time)
        if self.error:
            out["error"] = self.error
        if self.partial_failures:
            out["partialFailures"] = self.partial_failures
        if self.output_info:
            out["outputInfo"] = dict(self.output_info)
        if self.stats is not None:
            # int64 fields travel as JSON strings in proto3 JSON.
            out["completionStats"] = {k: str(v) for k, v in self.stats.items()}
        return out


class VertexEmulator:
    def __init__(self, gcs_url: str | None = None, bq_url: str | None = None,
                 project: str = "test-project", step: float = 0.3,
                 rows_per_file: int = 1000, project_number: str | None = None):
        """gcs_url / bq_url: the storage emulators that jobs read and write.
        step: seconds between state transitions. rows_per_file: above this,
        GCS output is split into predictions_00001.jsonl, ... project_number:
        if set, job names use it instead of the project id, as the real
        service does."""
        self.gcs_url, self.bq_url, self.project = gcs_url, bq_url, project
        self.step, self.rows_per_file, self.project_number = step, rows_per_file, project_number
        self.faults = Faults()
        self.live_models: set[str] = set(DEFAULT_LIVE_MODELS)
        # Models the project has not enabled in Model Garden ("publishers/p/models/m"): a test adds to it.
        self.not_enabled: set[str] = set()
        # Models that run online only; a test may add one whose card says batch but the service does not.
        self.no_batch: set[str] = set(NO_BATCH)
        self.output_shape = "gemini"  # or "model_garden"
        #: Requests one job may hold (SPEC.md "Limits": up to 200,000 requests per job); a
        #: job over it fails as a whole. Tests lower it to check that work is split.
        self.max_requests = 200_000
        self.requests: list[RecordedRequest] = []
        self.jobs: dict[str, Job] = {}
        self.job_errors: list[BaseException] = []  # unexpected exceptions in job threads
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._ids = iter(range(1, 10**9))
        self._operations: dict[str, dict] = {}
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # ------------------------------------------------------------ lifecycle
    def start(self) -> VertexEmulator:
        handler = type("Handler", (_Handler,), {"emu": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll interval keeps stop() (shutdown) fast between tests.
        threading.Thread(target=self._server.serve_forever, args=(0.05,),
                         name="vertex-emulator", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> VertexEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget jobs, requests and faults (running job threads are orphaned)."""
        with self._lock:
            for job in self.jobs.values():
                job.cancel_requested = True
            self.jobs.clear()
            self.requests.clear()
            self.job_errors.clear()
            self._operations.clear()
            self.faults = Faults()
            self.live_models = set(DEFAULT_LIVE_MODELS)
            self.not_enabled = set()
            self.no_batch = set(NO_BATCH)
            self.output_shape = "gemini"
            self.max_requests = 200_000

    # ------------------------------------------------------------ test helpers
    def release(self) -> None:
        """Let held jobs (faults.hold) finish."""
        self.faults.hold = False

    def job(self, name_or_id: str) -> dict:
        """The job resource as the API would return it."""
        with self._lock:
            return self.jobs[name_or_id.rsplit("/", 1)[-1]].resource()

    def wait_for_state(self, name_or_id: str, *states: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            res = self.job(name_or_id)
            if res["state"] in states:
                return res
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {name_or_id} still {res['state']}, wanted {states}")
            time.sleep(0.02)

    def wait_held(self, name_or_id: str, timeout: float = 30.0) -> None:
        """Block until the job sits on faults.hold (RUNNING, some rows done)."""
        if not self.jobs[name_or_id.rsplit("/", 1)[-1]].held.wait(timeout):
            raise TimeoutError(f"job {name_or_id} did not reach the hold point")

    def requests_to(self, method: str, path_suffix: str = "") -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    # ------------------------------------------------------------ HTTP routes
    def handle(self, method: str, path: str, query: dict, body: Any) -> tuple[int, Any]:
        with self._lock:
            if self.faults.http_errors:
                code = self.faults.http_errors.pop(0)
                raise ApiError(code, f"Injected error {code}.")
        m = PUBLISHER_MODEL_RE.match(path)
        if m and method == "GET":
            return 200, self._publisher_model(m.group(2))
        m = ONLINE_RE.match(path)
        if m and method == "POST":
            return 200, self._online(m.group(2), m.group(3), body)
        m = JOBS_RE.match(path)
        if m:
            _, project, location, job_id, cancel = m.groups()
            if job_id is None and method == "POST":
                with self._lock:
                    if self.faults.create_errors:
                        code = self.faults.create_errors.pop(0)
                        raise ApiError(code, f"Injected error {code}.")
                resource = self._create(project, location, body)
                with self._lock:
                    after = self.faults.create_then.pop(0) if self.faults.create_then else None
                if after == "drop":
                    raise DropConnection
                if isinstance(after, int):
                    raise ApiError(after, f"Injected error {after} (after the job was created).")
                if isinstance(after, float):
                    time.sleep(after)
                return 200, resource
            if job_id is None and method == "GET":
                return 200, self._list(location, query)
            if job_id and cancel and method == "POST":
                return 200, self._cancel(location, job_id)
            if job_id and not cancel and method == "GET":
                return 200, self._get(location, job_id).resource()
            if job_id and not cancel and method == "DELETE":
                return 200, self._delete(project, location, job_id)
        m = OPERATION_RE.match(path)
        if m and method == "GET":
            op = self._operations.get(path.split("/", 2)[2])
            if op is None:
                raise ApiError(404, f"Operation {path} not found.")
            return 200, op
        raise ApiError(404, f"Method {method} {path} not found.")

    def _publisher_model(self, name: str) -> dict:
        if name not in self.live_models:
            raise ApiError(404, f"Publisher Model `{name}` not found.")
        return {"name": name, "versionId": "001", "openSourceCategory": "THIRD_PARTY_OWNED_OSS",
                "launchStage": "GA", "versionState": "VERSION_STATE_STABLE"}

    def _get(self, location: str, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.location != location:
            raise ApiError(404, f"The BatchPredictionJob does not exist: {job_id}")
        return job

    def _serving(self, project: str, location: str, model: str, places: set[str] | None) -> None:
        """404 for a model not served at all, 400 outside its locations, 400 FAILED_PRECONDITION when
        the project has not enabled it (the service's words, SPEC.md "What a real project meets")."""
        full = f"projects/{project}/locations/{location}/{model}"
        if model not in self.live_models:
            raise ApiError(404, f"Publisher Model `{full}` not found.")
        if places is not None and location not in places:
            raise ApiError(400, f"Publisher Model `{full}` is not supported in location {location}.")
        if model in self.not_enabled:
            raise ApiError(400, f"Project `{project}` is not allowed to use Publisher Model `{full}`",
                           status="FAILED_PRECONDITION")

    def _online(self, project: str, location: str, body: Any) -> dict:
        """One chat completion on the region's OpenAI-compatible endpoint (body.model: "publisher/id")."""
        name = body.get("model") if isinstance(body, dict) else None
        if not isinstance(name, str) or name.count("/") != 1:
            raise ApiError(400, "model must be given as 'publisher/model-id'.")
        publisher, model_id = name.split("/")
        model = f"publishers/{publisher}/models/{model_id}"
        places = None
        if model in BATCH_LOCATIONS or model in ONLINE_LOCATIONS:
            places = BATCH_LOCATIONS.get(model, set()) | ONLINE_LOCATIONS.get(model, set())
        self._serving(project, location, model, places)
        try:
            return fake_model.respond("/v1/chat/completions", body, name)
        except fake_model.RowError as exc:
            raise ApiError(400, str(exc)) from None

    def _create(self, project: str, location: str, body: Any) -> dict:
        spec = validate_create(location, body)
        model = publisher_model(spec["model"])
        places = GEMINI_EMBEDDING_MODELS.get(model)
        if model in self.live_models and model in self.no_batch:
            raise ApiError(400, f"Do not support publisher model {model.rsplit('/', 1)[-1]}")
        self._serving(project, location, model, BATCH_LOCATIONS.get(model))
        if places is not None and ("bigquerySource" in spec["inputConfig"]
                                   or "bigqueryDestination" in spec["outputConfig"]):
            raise ApiError(400, "BigQuery input and output are not supported for Gemini embedding models; "
                                "use JSONL files in Cloud Storage.")
        self._check_regions(location, spec)
        with self._lock:
            job_id = str(8_000_000_000_000_000_000 + next(self._ids))
            owner = self.project_number or project
            job = Job(id=job_id, name=f"projects/{owner}/locations/{location}/batchPredictionJobs/{job_id}",
                      location=location, spec=spec, create_time=now())
            self.jobs[job_id] = job
            resource = job.resource()
        threading.Thread(target=self._run, args=(job,), name=f"job-{job_id}", daemon=True).start()
        return resource

    def _check_regions(self, location: str, spec: dict) -> None:
        """The job and its BigQuery datasets must be in the same region (doc); compared as written."""
        uris = [spec["inputConfig"].get("bigquerySource", {}).get("inputUri"),
                spec["outputConfig"].get("bigqueryDestination", {}).get("outputUri")]
        for uri in filter(None, uris):
            parts = vertex_io.split_bq(uri)
            if len(parts) < 2:
                continue
            from google.api_core.exceptions import NotFound
            try:
                dataset = self._bq().get_dataset(f"{parts[0]}.{parts[1]}")
            except NotFound:
                continue  # the job fails when it runs, as on the service
            if (dataset.location or "").lower() != location.lower():
                raise ApiError(400, f"The BigQuery dataset {parts[0]}.{parts[1]} is in {dataset.location}, but the "
                                    f"batch prediction job is in {location}: they must be in the same region.")

    def _list(self, location: str, query: dict) -> dict:
        filt = (query.get("filter") or [""])[0]
        if HYPHEN_LABEL_RE.search(filt):
            raise ApiError(400, f"Invalid filter: {filt!r}: '-' is not allowed in a label key here "
                                f"(use labels.KEY=VALUE with letters, digits and underscores).")
        check_filter(filt)
        size = int((query.get("pageSize") or ["100"])[0] or 100)
        start = int((query.get("pageToken") or ["0"])[0] or 0)
        with self._lock:
            jobs = [j.resource() for j in self.jobs.values()
                    if j.location == location and matches_filter(j, filt)]
        page = jobs[start:start + size]
        out: dict = {"batchPredictionJobs": page} if page else {}
        if start + size < len(jobs):
            out["nextPageToken"] = str(start + size)
        return out

    def _cancel(self, location: str, job_id: str) -> dict:
        with self._lock:
            job = self._get(location, job_id)
            if job.state in TERMINAL_STATES:
                raise ApiError(400, f"The BatchPredictionJob {job.name} is in state "
                                    f"{job.state} and cannot be cancelled.")
            job.cancel_requested = True
            self._set(job, "JOB_STATE_CANCELLING")
        return {}

    def _delete(self, project: str, location: str, job_id: str) -> dict:
        with self._lock:
            job = self._get(location, job_id)
            if job.state not in TERMINAL_STATES:
                raise ApiError(400, f"The BatchPredictionJob {job.name} is in state "
                                    f"{job.state} and cannot be deleted.")
            del self.jobs[job_id]
            name = f"projects/{project}/locations/{location}/operations/{next(self._ids)}"
            op = {"name": name, "done": True,
                  # Without a response (or error) api_core's Operation.result()
                  # raises "neither response nor error set".
                  "response": {"@type": "type.googleapis.com/google.protobuf.Empty"}}
            self._operations[name] = op
        return op

    # ------------------------------------------------------------ the job
    def _set(self, job: Job, state: str) -> None:
        with self._lock:
            job.state, job.update_time = state, now()
            if state in TERMINAL_STATES:
                job.end_time = job.update_time

    def _pause(self, job: Job, seconds: float) -> bool:
        """Sleep; True if the job was cancelled (or the emulator stopped)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not job.cancel_requested:
            if self._stopping.wait(0.01):
                return True
        return job.cancel_requested or self._stopping.is_set()

    def _run(self, job: Job) -> None:
        try:
            self._run_job(job)
        except Exception as exc:  # a bug or an emulator outage: fail visibly
            self.job_errors.append(exc)
            with self._lock:
                job.error = {"code": 13, "message": f"Internal error: {exc!r}"}
            self._set(job, "JOB_STATE_FAILED")

    def _run_job(self, job: Job) -> None:
        if self._pause(job, self.step):
            return self._finish_cancelled(job, [], 0)
        self._set(job, "JOB_STATE_PENDING")
        if self._pause(job, self.step):
            return self._finish_cancelled(job, [], 0)
        with self._lock:
            job.start_time = now()
            job.output_info = self._output_info(job)
        self._set(job, "JOB_STATE_RUNNING")

        faults = self.faults
        try:
            records, schema = self._read_input(job)
            self._check_destination(job)
            if faults.fail_job:
                raise JobFailure(faults.fail_job, code=13)
        except JobFailure as failure:
            self._pause(job, self.step)
            with self._lock:
                job.error = {"code": failure.code, "message": str(failure)}
            return self._set(job, "JOB_STATE_FAILED")

        failing = set()
        if faults.partial and not faults.row_errors and records:
            failing.add(id(records[-1]))
        # Output order is not input order on the real service.
        order = list(records)
        random.Random(job.id).shuffle(order)
        if len(order) > 1 and order == records:
            order = order[1:] + order[:1]
        limit = len(order) // 2 if faults.expire else len(order)
        hold_at = faults.hold_after if faults.hold_after is not None else len(order) // 2

        done: list[dict] = []
        for i, record in enumerate([*order[:limit], None]):
            if i == hold_at and self.faults.hold:
                job.held.set()
                while self.faults.hold and not job.cancel_requested and not self._stopping.is_set():
                    time.sleep(0.01)
                job.held.clear()
            if i == hold_at and self.faults.pause:
                self._set(job, "JOB_STATE_PAUSED")
                while self.faults.pause and not job.cancel_requested and not self._stopping.is_set():
                    time.sleep(0.01)
                if not job.cancel_requested:
                    self._set(job, "JOB_STATE_RUNNING")
            if job.cancel_requested or record is None:
                break
            done.append(self._predict(job, record, id(record) in failing))
        if self._pause(job, self.step):
            return self._finish_cancelled(job, done, len(records), schema)

        self._write(job, done, schema)
        failed = sum(1 for r in done if r["status"])
        with self._lock:
            job.stats = {"successfulCount": len(done) - failed, "failedCount": failed,
                         "incompleteCount": len(records) - len(done)}
            if faults.expire:
                job.error = {"code": 4, "message": "The batch prediction job expired "
                                                   "before all instances were processed."}
                state = "JOB_STATE_EXPIRED"
            elif faults.partial:
                job.partial_failures = [{"code": 3, "message": f"{failed} instance(s) failed."}]
                state = "JOB_STATE_PARTIALLY_SUCCEEDED"
            else:
                state = "JOB_STATE_SUCCEEDED"
        self._set(job, state)

    def _finish_cancelled(self, job: Job, done: list[dict], total: int, schema=None) -> None:
        if self._stopping.is_set() or job.id not in self.jobs:
            return  # emulator stopped or reset: nobody is watching
        self._set(job, "JOB_STATE_CANCELLING")
        if done:
            self._write(job, done, schema)  # rows written so far are kept
        self._pause(job, self.step)
        failed = sum(1 for r in done if r["status"])
        with self._lock:
            job.stats = {"successfulCount": len(done) - failed, "failedCount": failed,
                         "incompleteCount": total - len(done)}
            job.error = {"code": 1, "message": "CANCELED"}
        self._set(job, "JOB_STATE_CANCELLED")

    # ------------------------------------------------------------ I/O
    def _gcs(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        if not self.gcs_url:
            raise JobFailure("this emulator was started without a Cloud Storage emulator")
        return storage.Client(project=self.project, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.gcs_url})

    def _bq(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        if not self.bq_url:
            raise JobFailure("this emulator was started without a BigQuery emulator")
        return bigquery.Client(project=self.project, credentials=AnonymousCredentials(),
                               client_options={"api_endpoint": self.bq_url})

    def _output_info(self, job: Job) -> dict:
        out = job.spec["outputConfig"]
        stamp = rfc3339(job.create_time)
        if "gcsDestination" in out:
            prefix = out["gcsDestination"]["outputUriPrefix"].rstrip("/")
            return {"gcsOutputDirectory": f"{prefix}/prediction-model-{stamp}"}
        parts = vertex_io.split_bq(out["bigqueryDestination"]["outputUri"])
        if len(parts) == 1:  # project only: the service creates a dataset
            parts.append("prediction_model_" + re.sub(r"[-:.]", "_", stamp))
        table = parts[2] if len(parts) == 3 else "predictions_" + re.sub(r"[-:.]", "_", stamp)
        # As on the service: dataset as a bq:// URI, table as a bare name.
        return {"bigqueryOutputDataset": f"bq://{parts[0]}.{parts[1]}",
                "bigqueryOutputTable": table}

    def _read_input(self, job: Job) -> tuple[list[dict], Any]:
        """Input records: dicts with custom_id/method/url/body (+ pass-through);
        an unparsable GCS line becomes {"_raw": line}."""
        src = job.spec["inputConfig"]
        if "gcsSource" in src:
            records = []
            for line in vertex_io.read_gcs_lines(self._gcs(), src["gcsSource"]["uris"]):
                try:
                    rec = json.loads(line)
                except ValueError:
                    rec = None
                records.append(rec if isinstance(rec, dict) else {"_raw": line})
            schema = None
        else:
            schema, records = vertex_io.read_bq_rows(self._bq(), src["bigquerySource"]["inputUri"])
        if not records:
            raise JobFailure("The input contains no instances.")
        if len(records) > self.max_requests:
            raise JobFailure(f"The input contains {len(records)} instances, over the limit of "
                             f"{self.max_requests} per batch prediction job.")
        for i, record in enumerate(records):
            # Seen for Gemini batch: the importer fails the whole job on these keys.
            bad = schema_keywords(record.get("body", record.get("request")))
            if bad:
                raise JobFailure(f'Invalid JSON payload received. Unknown name "{bad}" at '
                                 f"'requests[{i}].response_format.json_schema.schema': Cannot find field.")
        return records, schema

    def _check_destination(self, job: Job) -> None:
        out = job.spec["outputConfig"]
        if "gcsDestination" in out:
            vertex_io.check_gcs_bucket(self._gcs(), out["gcsDestination"]["outputUriPrefix"])
            return
        info = job.output_info
        dataset = info["bigqueryOutputDataset"][len("bq://"):]
        client = self._bq()
        if len(vertex_io.split_bq(out["bigqueryDestination"]["outputUri"])) == 1:
            client.create_dataset(dataset, exists_ok=True)
        vertex_io.check_bq_destination(client, f"{dataset}.{info['bigqueryOutputTable']}")

    def _predict(self, job: Job, record: dict, force_fail: bool) -> dict:
        """One output row: the input minus method/url/body, plus request,
        response (or none), status ("" when fine) and processed_time. A
        Gemini embedding row keeps its input ({"key", "request"}) as it is."""
        resource = publisher_model(job.spec["model"])
        gemini = resource in GEMINI_MODELS
        drop = {"_raw"} if gemini else {"method", "url", "body", "_raw"}
        out = {k: v for k, v in record.items() if k not in drop}
        if not gemini:
            out["request"] = record.get("body", record.get("_raw"))
        try:
            if "_raw" in record:
                raise fake_model.RowError("the line is not a JSON object")
            if force_fail or self.faults.row_fails(record):
                raise fake_model.RowError("Injected row error.")
            model = resource.split("publishers/", 1)[1].replace("/models/", "/")
            if resource in GEMINI_CHAT_MODELS:
                out["response"] = fake_model.gemini_chat(record)
            elif gemini:
                out["response"] = fake_model.gemini_embedding(record)
            else:
                out["response"] = fake_model.respond(record.get("url"), record.get("body"), model)
            out["status"] = ""
        except fake_model.RowError as exc:
            err = {"error": {"code": 400, "message": str(exc), "status": "INVALID_ARGUMENT"}}
            out["status"] = "Bad Request: " + json.dumps(err)
        out["processed_time"] = rfc3339(now())
        return out

    def _shape(self, job: Job, row: dict) -> dict:
        """A chat row in the Model Garden output shape when asked for; Gemini's otherwise."""
        if self.output_shape != "model_garden" or publisher_model(job.spec["model"]) in GEMINI_MODELS:
            return row
        out = {"custom_id": row.get("custom_id"), "error": row["status"]}
        if "response" in row:
            out["response"] = row["response"]
        out["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{job.id}/{row.get('custom_id')}"))
        return out

    def _write(self, job: Job, rows: list[dict], schema) -> None:
        info = job.output_info
        if "gcsOutputDirectory" in info:
            lines = [json.dumps(self._shape(job, r)) for r in rows]
            job.output_files = vertex_io.write_gcs_output(
                self._gcs(), info["gcsOutputDirectory"], lines, self.rows_per_file)
            return
        table_id = info["bigqueryOutputDataset"][len("bq://"):] + "." + info["bigqueryOutputTable"]
        if schema is None:  # GCS input, BigQuery output: build the table's columns
            from google.cloud.bigquery import SchemaField
            schema = [SchemaField("custom_id", "STRING"), SchemaField("body", "JSON")]
        bq_rows = []
        for r in rows:
            row = {k: v for k, v in r.items() if k != "request"}
            if "request" in r:
                row["body"] = r["request"]
            row["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{job.id}/{r.get('custom_id')}"))
            if self.output_shape == "model_garden":
                row["error"] = r["status"]
            bq_rows.append(row)
        out_schema = vertex_io.output_schema(schema, self.output_shape)
        names = {f.name for f in out_schema}
        bq_rows = [{k: v for k, v in row.items() if k in names} for row in bq_rows]
        vertex_io.write_bq_output(self._bq(), table_id, out_schema, bq_rows)
        job.output_files = [f"bq://{table_id}"]


# ---------------------------------------------------------------- validation
def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def validate_create(location: str, body: Any) -> dict:
    """The create body, checked the way the service checks it up front."""
    if not isinstance(body, dict):
        raise _bad("Invalid JSON payload received: the body must be a JSON object.")
    if not body.get("displayName"):
        raise _bad("BatchPredictionJob.display_name must be set.")
    model = body.get("model") or ""
    if not MODEL_RE.match(model):
        raise _bad(f"Invalid Model resource name {model!r}: expected "
                   "publishers/<publisher>/models/<model>.")
    # SPEC.md "Models": the global endpoint runs no open-model batch jobs; gemini-embedding-2 lists it.
    if location == "global" and "global" not in BATCH_LOCATIONS.get(publisher_model(model), set()):
        raise _bad("Batch prediction is not supported in location global.")
    inp, out = body.get("inputConfig"), body.get("outputConfig")
    if not isinstance(inp, dict):
        raise _bad("BatchPredictionJob.input_config must be set.")
    if not isinstance(out, dict):
        raise _bad("BatchPredictionJob.output_config must be set.")

    sources = [k for k in ("gcsSource", "bigquerySource") if inp.get(k)]
    if len(sources) != 1:
        raise _bad("Exactly one of input_config.gcs_source and input_config.bigquery_source "
                   f"must be set, got {len(sources)}.")
    fmt = inp.get("instancesFormat")
    if sources == ["gcsSource"]:
        uris = inp["gcsSource"].get("uris")
        if not isinstance(uris, list) or not uris:
            raise _bad("input_config.gcs_source.uris must list at least one URI.")
        for uri in uris:
            _check(vertex_io.split_gcs, uri, "input_config.gcs_source.uris")
        if fmt != "jsonl":
            raise _bad(f"instances_format {fmt!r} is not supported with gcs_source for this "
                       "model: use 'jsonl'.")
    else:
        uri = inp["bigquerySource"].get("inputUri") or ""
        if len(_check(vertex_io.split_bq, uri, "input_config.bigquery_source.input_uri")) != 3:
            raise _bad(f"input_config.bigquery_source.input_uri must be bq://project.dataset.table: {uri!r}")
        if fmt != "bigquery":
            raise _bad(f"instances_format must be 'bigquery' with bigquery_source, got {fmt!r}.")

    dests = [k for k in ("gcsDestination", "bigqueryDestination") if out.get(k)]
    if len(dests) != 1:
        raise _bad("Exactly one of output_config.gcs_destination and "
                   f"output_config.bigquery_destination must be set, got {len(dests)}.")
    pfmt = out.get("predictionsFormat")
    if dests == ["gcsDestination"]:
        prefix = out["gcsDestination"].get("outputUriPrefix") or ""
        _check(vertex_io.split_gcs, prefix, "output_config.gcs_destination.output_uri_prefix")
        if pfmt != "jsonl":
            raise _bad(f"predictions_format {pfmt!r} is not supported with gcs_destination for "
                       "this model: use 'jsonl'.")
    else:
        uri = out["bigqueryDestination"].get("outputUri") or ""
        _check(vertex_io.split_bq, uri, "output_config.bigquery_destination.output_uri")
        if pfmt != "bigquery":
            raise _bad(f"predictions_format must be 'bigquery' with bigquery_destination, got {pfmt!r}.")
    return body


def _check(split: Callable, uri: Any, what: str):
    try:
        return split(uri if isinstance(uri, str) else "")
    except ValueError:
        raise _bad(f"{what}: invalid URI {uri!r}.") from None


def _terms(filt: str) -> list[str]:
    return re.split(r"\s+AND\s+", filt.strip()) if filt.strip() else []


def check_filter(filt: str) -> None:
    """The subset of AIP-160 filters emulated: state, display_name and labels.KEY
    compared with = or !=, joined by AND. Anything else is refused with 400
    rather than ignored: a filter silently not applied lists jobs it should not."""
    for term in _terms(filt):
        if not FILTER_TERM_RE.match(term):
            raise ApiError(400, f"Invalid filter: unsupported expression {term!r} in {filt!r}.")


def matches_filter(job: Job, filt: str) -> bool:
    for term in _terms(filt):
        key, op, quoted, bare = FILTER_TERM_RE.match(term).groups()
        value = bare if quoted is None else quoted
        if key == "state":
            actual = job.state
        elif key.startswith("labels."):
            actual = (job.spec.get("labels") or {}).get(key[len("labels."):])
        else:
            actual = job.spec.get("displayName", "")
        if (actual == value) != (op == "="):
            return False
    return True


def schema_keywords(body: Any) -> str | None:
    """The first of $defs / $ref / $schema inside a request's response_format, if any."""
    def walk(node: Any) -> str | None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("$defs", "$ref", "$schema", "definitions"):
                    return k
                found = walk(v)
                if found:
                    return found
        elif isinstance(node, list):
            for v in node:
                found = walk(v)
                if found:
                    return found
        return None
    return walk(body.get("response_format")) if isinstance(body, dict) else None


# ---------------------------------------------------------------- HTTP layer
class _Handler(BaseHTTPRequestHandler):
    emu: VertexEmulator
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's session expects

    def _serve(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        # The REST transport adds "$alt=json;enum-encoding=int"; keep_blank so
        # that and any other flag survives into the record.
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = None
        status, payload = 200, {}
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise ApiError(400, "Invalid JSON payload received.") from None
            with self.emu._lock:
                self.emu.requests.append(RecordedRequest(
                    self.command, parsed.path, query, body, dict(self.headers.items())))
            status, payload = self.emu.handle(self.command, parsed.path, query, body)
        except ApiError as err:
            status = err.code
            payload = {"error": {"code": err.code, "message": err.message,
                                 "status": err.status or HTTP_STATUS.get(err.code, "UNKNOWN")}}
        except DropConnection:
            self.close_connection = True
            return
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a stalled create): nothing to answer

    do_GET = do_POST = do_DELETE = do_PATCH = _serve

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


if __name__ == "__main__":  # python -m tests.emulators.vertex --gcs URL --bq URL
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gcs"), ap.add_argument("--bq")
    ap.add_argument("--project", default="test-project")
    ap.add_argument("--step", type=float, default=0.3)
    a = ap.parse_args()
    with VertexEmulator(gcs_url=a.gcs, bq_url=a.bq, project=a.project, step=a.step) as emu:
        print(f"Vertex AI batch prediction emulator on {emu.url}", flush=True)
        threading.Event().wait()
