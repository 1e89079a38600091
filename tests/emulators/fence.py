"""A small HTTP proxy on 127.0.0.1 that makes an emulator refuse what the real service refuses.

The storage emulators accept whatever the clients send. Put a Fence in front
of one and point the client at the fence: each request is forwarded as it is,
unless a rule answers it first with a Google error body. Two rules are here:

* ``deny_gcs(*permissions)``: Cloud Storage as seen by a user whose role lacks
  those permissions (by default ``storage.buckets.get``: Storage Object
  Admin / Object User grant object rights only, so reading the bucket's
  metadata answers 403 while uploads, listings and downloads work).
* ``bigquery_json_loads``: BigQuery fills a JSON column only from CSV, Avro or
  newline-delimited JSON files ("Working with JSON data"); a Parquet load into
  a table with a JSON column is refused.
* ``gcs_iam(...)``: the bucket IAM calls fake-gcs-server lacks, answered as
  Cloud Storage does: ``testIamPermissions`` needs no permission of its own
  and lists those of the asked the caller has (SPEC.md "What a real project
  meets on its first job"); ``getIamPolicy`` needs
  ``storage.buckets.getIamPolicy`` (which Object User / Admin lack) and returns
  the bucket's policy (``policies``, else the legacy bindings of a bucket in
  the caller's own project).

A rule answers by returning ``(status, message)`` (a Google error body) or
``(200, dict)`` (that JSON).

    with Fence(gcs.url, deny_gcs()) as fence:
        os.environ["STORAGE_EMULATOR_HOST"] = fence.url
"""
from __future__ import annotations

import http.client
import json
import re
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: rule(method, path, query, headers, body, upstream) -> (status, error message) to refuse, or None to forward.
Rule = Callable[[str, str, dict, dict, bytes, str], "tuple[int, str] | None"]
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}


class Fence:
    def __init__(self, upstream: str, *rules: Rule):
        self.upstream = upstream.rstrip("/")
        self.rules = list(rules)
        self.refused: list[tuple[str, str, str]] = []  # (method, path, message), for tests
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    def start(self) -> Fence:
        handler = type("Handler", (_Handler,), {"fence": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fence", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Fence:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    fence: Fence
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        fence = self.fence
        parsed = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items()}
        for rule in fence.rules:
            refused = rule(self.command, parsed.path, query, headers, body, fence.upstream)
            if refused and isinstance(refused[1], dict):
                self._send(refused[0], {"Content-Type": "application/json; charset=UTF-8"},
                           json.dumps(refused[1]).encode())
                return
            if refused:
                code, message = refused
                fence.refused.append((self.command, parsed.path, message))
                status = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED"}.get(code, "FAILED_PRECONDITION")
                reason = {400: "invalid", 403: "forbidden"}.get(code, "failedPrecondition")
                self._send(code, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(
                    {"error": {"code": code, "message": message, "status": status,
                               "errors": [{"message": message, "domain": "global", "reason": reason}]}}).encode())
                return
        up = urllib.parse.urlsplit(fence.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=120)
        try:
            out = {k: v for k, v in headers.items() if k.lower() not in _HOP | {"host", "content-length"}}
            out["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=out)
            resp = conn.getresponse()
            data = resp.read()
            reply = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP | {"content-length"}}
            # Resumable upload sessions name the upstream: keep the client on the fence.
            for k, v in reply.items():
                if k.lower() == "location":
                    reply[k] = v.replace(fence.upstream, fence.url)
            self._send(resp.status, reply, data)
        finally:
            conn.close()

    def _send(self, status: int, headers: dict, data: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, *args) -> None:
        pass


# ------------------------------------------------------------------ Cloud Storage
_BUCKET = re.compile(r"^/storage/v1/b/([^/]+)$")
_OBJECTS = re.compile(r"^/storage/v1/b/([^/]+)/o$")
_OBJECT = re.compile(r"^/(?:download/)?storage/v1/b/([^/]+)/o/(.+)$")
_UPLOAD = re.compile(r"^/upload/storage/v1/b/([^/]+)/o$")


def gcs_permission(method: str, path: str) -> tuple[str, str] | None:
    """(permission, bucket) a JSON-API Cloud Storage request needs."""
    for pattern, needs in ((_BUCKET, {"GET": "storage.buckets.get", "PATCH": "storage.buckets.update",
                                      "DELETE": "storage.buckets.delete"}),
                           (_OBJECTS, {"GET": "storage.objects.list"}),
                           (_UPLOAD, {"POST": "storage.objects.create", "PUT": "storage.objects.create"}),
                           (_OBJECT, {"GET": "storage.objects.get", "DELETE": "storage.objects.delete",
                                      "PATCH": "storage.objects.update"})):
        m = pattern.match(path)
        if m and method in needs:
            return needs[method], urllib.parse.unquote(m.group(1))
    return None


#: What Storage Object Admin / Object User lack: bucket metadata and its IAM policy.
OBJECT_ROLE_LACKS = ("storage.buckets.get", "storage.buckets.getIamPolicy")


def deny_gcs(*permissions: str, principal: str = "pdbatch-user@test-project.iam.gserviceaccount.com") -> Rule:
    """Answer 403, in Cloud Storage's words, to requests that need one of ``permissions``."""
    denied = set(permissions or OBJECT_ROLE_LACKS)

    def rule(method, path, query, headers, body, upstream):
        need = gcs_permission(method, path)
        if need and need[0] in denied:
            permission = need[0]
            return 403, (f"{principal} does not have {permission} access to the Google Cloud Storage "
                         f"bucket. Permission '{permission}' denied on resource (or it may not exist).")
        return None

    return rule


_IAM = re.compile(r"^/storage/v1/b/([^/]+)/iam(/testPermissions)?$")


def gcs_iam(denied: set[str] | None = None, policies: dict[str, dict] | None = None,
            project: str = "test-project") -> Rule:
    """Answer bucket ``testIamPermissions`` / ``getIamPolicy`` for a caller lacking ``denied``.

    ``policies`` (bucket -> policy JSON) may be changed by a test while the fence runs.
    """
    denied = set(denied or ())
    policies = policies if policies is not None else {}

    def rule(method, path, query, headers, body, upstream):
        m = _IAM.match(path)
        if not m or method != "GET":
            return None
        bucket = urllib.parse.unquote(m.group(1))
        up = urllib.parse.urlsplit(upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
        try:
            conn.request("GET", f"/storage/v1/b/{urllib.parse.quote(bucket)}")
            exists = conn.getresponse().status == 200
        finally:
            conn.close()
        if not exists:
            return 404, f"The specified bucket does not exist: {bucket}"
        if m.group(2):
            asked = query.get("permissions", [])
            return 200, {"kind": "storage#testIamPermissionsResponse",
                         "permissions": [p for p in asked if p not in denied]}
        if "storage.buckets.getIamPolicy" in denied:
            return 403, (f"The caller does not have storage.buckets.getIamPolicy access to the Google Cloud "
                         f"Storage bucket {bucket}.")
        policy = policies.get(bucket) or {"bindings": [
            {"role": "roles/storage.legacyBucketOwner", "members": [f"projectEditor:{project}",
                                                                     f"projectOwner:{project}"]},
            {"role": "roles/storage.legacyBucketReader", "members": [f"projectViewer:{project}"]}]}
        return 200, {"kind": "storage#policy", "resourceId": f"projects/_/buckets/{bucket}", "version": 1,
                     "etag": "CAE=", **policy}

    return rule


# ------------------------------------------------------------------ BigQuery
_JOBS = re.compile(r"^/(?:upload/)?bigquery/v2/projects/([^/]+)/jobs$")


def _load_config(headers: dict, body: bytes) -> dict | None:
    """The job resource of a jobs.insert (plain JSON, or the first part of a multipart upload)."""
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    text = body.decode("utf-8", "replace")
    if ctype.startswith("multipart/"):
        m = re.search(r"boundary=\"?([^\";]+)", ctype)
        if not m:
            return None
        for part in text.split("--" + m.group(1)):
            head, _, payload = part.partition("\r\n\r\n")
            if "json" in head.lower():
                text = payload.strip()
                break
    try:
        job = json.loads(text)
    except ValueError:
        return None
    return ((job or {}).get("configuration") or {}).get("load") if isinstance(job, dict) else None


def _json_fields(fields: list) -> list[str]:
    out = []
    for f in fields or []:
        if str(f.get("type", "")).upper() == "JSON":
            out.append(f["name"])
        out += [f"{f['name']}.{n}" for n in _json_fields(f.get("fields"))]
    return out


def _table_fields(upstream: str, table: dict) -> list:
    up = urllib.parse.urlsplit(upstream)
    conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
    try:
        conn.request("GET", f"/bigquery/v2/projects/{table['projectId']}/datasets/{table['datasetId']}"
                            f"/tables/{table['tableId']}")
        resp = conn.getresponse()
        data = resp.read()
        return (json.loads(data).get("schema") or {}).get("fields", []) if resp.status == 200 else []
    finally:
        conn.close()


def bigquery_json_loads(method, path, query, headers, body, upstream):
    """Refuse a load job that would fill a JSON column from anything but CSV, Avro or NDJSON."""
    if method != "POST" or not _JOBS.match(path):
        return None
    load = _load_config(headers, body)
    if not load or str(load.get("sourceFormat", "CSV")).upper() in ("CSV", "AVRO", "NEWLINE_DELIMITED_JSON"):
        return None
    fields = (load.get("schema") or {}).get("fields") or _table_fields(upstream, load["destinationTable"])
    json_columns = _json_fields(fields)
    if json_columns:
        return 400, (f"Unsupported field type JSON for source format {load['sourceFormat']} (column(s) "
                     f"{', '.join(json_columns)}): JSON columns can be loaded from CSV, Avro or "
                     f"NEWLINE_DELIMITED_JSON files only.")
    return None
