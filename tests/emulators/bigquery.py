"""BigQuery emulator on 127.0.0.1: local-bigquery (DuckDB-backed, Python 3.13
venv) or, where setup.sh had to fall back, a patched bqemulator.

    with start_bigquery() as bq:
        client = bq.client()             # or set BIGQUERY_EMULATOR_HOST=bq.url
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from ._proc import EMULATORS_DIR, SETUP_HINT, EmulatorNotInstalled, Process, free_port, require

KIND_FILE = EMULATORS_DIR / "bq.kind"


@dataclass
class BigQueryEmulator:
    url: str
    port: int
    project: str
    kind: str  # "local-bigquery" or "bqemulator"
    grpc_port: int | None  # Storage Read/Write API (insecure gRPC), if served
    process: Process = field(repr=False)

    def client(self):
        """A google-cloud-bigquery client bound to this emulator."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(project=self.project, credentials=AnonymousCredentials(),
                               client_options={"api_endpoint": self.url})


def installed_kind() -> str:
    if not KIND_FILE.exists():
        raise EmulatorNotInstalled(f"{KIND_FILE} not found: {SETUP_HINT}")
    return KIND_FILE.read_text().strip()


@contextlib.contextmanager
def start_bigquery(project: str = "test-project", timeout: float = 90.0) -> Iterator[BigQueryEmulator]:
    kind = installed_kind()
    port, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = tempfile.mkdtemp(prefix="bq-emulator-")
    if kind == "local-bigquery":
        argv = [str(require(EMULATORS_DIR / "bin" / "local-bigquery")), "serve",
                "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port),
                "--project", project, "--data-dir", data_dir]
    elif kind == "bqemulator":
        argv = [str(require(EMULATORS_DIR / "bin" / "bqemulator")), "start",
                "--rest-host", "127.0.0.1", "--rest-port", str(port),
                "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc_port),
                "--project", project, "--ephemeral", "--log-level", "warning"]
    else:
        raise EmulatorNotInstalled(f"unknown BigQuery emulator kind {kind!r}: {SETUP_HINT}")
    proc = Process(argv, kind)
    try:
        proc.wait_http(f"{url}/bigquery/v2/projects/{project}/datasets", timeout)
        yield BigQueryEmulator(url=url, port=port, project=project, kind=kind,
                               grpc_port=grpc_port, process=proc)
    finally:
        proc.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
