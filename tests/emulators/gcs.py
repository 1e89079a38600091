"""Cloud Storage emulator: the Go fake-gcs-server, in-memory, on 127.0.0.1.

    with start_gcs() as gcs:
        client = gcs.client()            # or set STORAGE_EMULATOR_HOST=gcs.url
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from ._proc import EMULATORS_DIR, Process, free_port, require

BINARY = EMULATORS_DIR / "bin" / "fake-gcs-server"


@dataclass
class GcsEmulator:
    url: str
    port: int
    project: str
    process: Process = field(repr=False)

    def client(self):
        """A google-cloud-storage client bound to this emulator."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project=self.project, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url})


@contextlib.contextmanager
def start_gcs(project: str = "test-project", timeout: float = 30.0) -> Iterator[GcsEmulator]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [str(require(BINARY)), "-scheme", "http", "-host", "127.0.0.1",
            "-port", str(port), "-backend", "memory", "-external-url", url,
            # Used for XML-API and signed URLs (e.g. DuckDB httpfs); without it
            # the server advertises storage.googleapis.com.
            "-public-host", f"127.0.0.1:{port}", "-log-level", "warn"]
    proc = Process(argv, "fake-gcs-server")
    try:
        proc.wait_http(f"{url}/storage/v1/b", timeout)
        yield GcsEmulator(url=url, port=port, project=project, process=proc)
    finally:
        proc.stop()
