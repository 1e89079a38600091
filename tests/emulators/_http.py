"""What the in-process batch API emulators (OpenAI, Anthropic) share: the HTTP server, the clock, the state.

A subclass answers ``handle(method, url, headers, raw) -> (status, body, content type)`` (a body that
is not bytes is sent as JSON) and ``_tick(job)``, one step of one batch's state machine, run every
``step`` seconds under the lock. Both services' batches are ``self.batches[id]["object"]`` as the
API shows it. Only 127.0.0.1, on a free port.
"""
from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


class BatchHttpEmulator:
    """A batch API on 127.0.0.1 with a background clock; use as a context manager."""

    #: The HTTP methods the service answers; any other is the server's 501.
    methods: ClassVar[tuple[str, ...]] = ("GET", "POST")
    #: Appended to the server's address to make the client's ``base_url``.
    url_suffix: ClassVar[str] = ""

    def __init__(self, api_key: str, step: float, seed: int) -> None:
        self.api_key = api_key
        self.step = step
        self.pace: int | None = None  # rows answered per step (None: all at once)
        self.hold_after: int | None = None  # answer at most this many rows per batch until released
        self.fail_when: Any = None
        self.faults: dict[str, str] = {}
        self.hang_seconds = 3.0
        self.batches: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def handle(self, method: str, url: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, str]:
        raise NotImplementedError

    def _tick(self, job: dict[str, Any]) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.url_suffix}"

    def __enter__(self) -> Self:
        emu = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body, ctype = emu.handle(method, self.path, dict(self.headers.items()), raw)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (the "hang" fault): nobody to answer

        for method in self.methods:
            setattr(Handler, f"do_{method}", lambda handler, m=method: handler._serve(m))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        threading.Thread(target=self._tick_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _tick_forever(self) -> None:
        while not self._stop.wait(self.step):
            with self._lock:
                for job in list(self.batches.values()):
                    self._tick(job)

    # ------------------------------------------------------------ controls
    def batch(self, batch_id: str) -> dict[str, Any]:
        """The batch object as the API shows it (a copy)."""
        with self._lock:
            return json.loads(json.dumps(self.batches[batch_id]["object"]))
