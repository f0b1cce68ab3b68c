"""A tiny round-robin TCP proxy: one address in front of several web servers, as a load
balancer would put it, so a drill can show that scale-out changes nothing for Stripe."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading


class RoundRobinProxy:
    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.counts = dict.fromkeys(backends, 0)
        self._next = itertools.cycle(backends)
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                backend = next(self._next)
                self.counts[backend] += 1
            threading.Thread(target=self._bridge, args=(client, backend), daemon=True).start()

    def _bridge(self, client: socket.socket, backend: int) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", backend), timeout=30)
        except OSError:
            client.close()
            return
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()
