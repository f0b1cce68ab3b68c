"""What the gateway tells its operators, captured in tests: Sentry envelopes and JSON logs."""

from __future__ import annotations

import gzip
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SentryIngest:
    """Receives what sentry-sdk POSTs to ``/api/<project>/envelope/`` and keeps the bytes."""

    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        self._lock = threading.Lock()
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with ingest._lock:
                    ingest.envelopes.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.dsn = f"http://public@127.0.0.1:{self.port}/1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        """Every event item (errors; not sessions or transactions) received so far."""
        found = []
        with self._lock:
            envelopes = list(self.envelopes)
        for envelope in envelopes:
            lines = envelope.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if header.strip() and json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found

    def wait_for_events(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if len(events) >= count:
                return events
            time.sleep(0.1)
        raise AssertionError(f"expected {count} Sentry events, got {len(self.events())}")

    def raw(self) -> bytes:
        with self._lock:
            return b"\n".join(self.envelopes)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
