"""Run the fake Stripe server in a background thread (tests) or in the foreground (CLI).

with FakeStripeServer(webhook_url="http://127.0.0.1:8000/stripe/webhook/",
                      webhook_secret="whsec_test") as srv:
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": srv.url})
    ...
    srv.state.renew(sub_id)             # same operations as POST /_control/...
    srv.wait_for_deliveries(5)          # webhook deliveries are asynchronous
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .app import build_app
from .catalogue import Catalogue
from .state import Obj, StripeState
from .webhooks import DeliveryOptions, WebhookDispatcher, WebhookEndpoint


class FakeStripeServer:
    def __init__(
        self,
        webhook_url: str | None = None,
        webhook_secret: str = "whsec_test",  # noqa: S107 - a test signing secret
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        catalogue: Catalogue | None = None,
        api_keys: frozenset[str] | set[str] = frozenset(),
        options: DeliveryOptions | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._public_url = public_url
        self.state = StripeState(catalogue=catalogue)
        endpoints = [WebhookEndpoint(webhook_url, webhook_secret)] if webhook_url else []
        self.webhooks = WebhookDispatcher(self.state, endpoints, options)
        self.webhook_secret = webhook_secret
        self.app = build_app(self.state, self.webhooks, api_keys=frozenset(api_keys))
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeStripeServer:
        # Bind before the thread starts so the port (0 = any free one) is known at once.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self.state.public_url = (self._public_url or self.url).rstrip("/")
        self._thread = threading.Thread(
            target=self._serve, args=(sock,), name="fake-stripe", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake Stripe server did not start within 10 s")
        if self._error is not None:
            raise RuntimeError("fake Stripe server failed to start") from self._error
        return self

    def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
            loop.run_until_complete(self._runner.setup())
            site = web.SockSite(self._runner, sock)
            loop.run_until_complete(site.start())
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> FakeStripeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- webhooks ----------------------------------------------------------------------------

    def set_webhook(self, url: str | None, secret: str | None = None) -> None:
        """Point deliveries at ``url`` (None stops delivering)."""
        if secret is not None:
            self.webhook_secret = secret
        self.webhooks.set_endpoints([WebhookEndpoint(url, self.webhook_secret)] if url else [])

    def configure_webhooks(self, **options: Any) -> DeliveryOptions:
        """duplicate / reverse / hold / attempts / backoff / timeout."""
        return self.webhooks.configure(**options)

    def deliveries(self) -> list[Obj]:
        return self.webhooks.deliveries()

    def flush(self, *, reverse: bool = False) -> int:
        return self.webhooks.flush(reverse=reverse)

    def wait_for_deliveries(
        self,
        count: int,
        *,
        timeout: float = 10.0,
        where: Callable[[Obj], bool] | None = None,
        status: tuple[str, ...] = ("succeeded", "failed"),
    ) -> list[Obj]:
        """Poll until ``count`` deliveries (matching ``where``) have finished; return them."""
        deadline = time.monotonic() + timeout
        while True:
            done = [
                d
                for d in self.deliveries()
                if d["status"] in status and (where is None or where(d))
            ]
            if len(done) >= count:
                return done
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(done)} of {count} webhook deliveries finished within {timeout} s: "
                    f"{[(d['event_type'], d['status']) for d in self.deliveries()]}"
                )
            time.sleep(0.02)

    # -- request log and faults ----------------------------------------------------------------

    def requests(self, path_prefix: str = "") -> list[Obj]:
        return [r for r in self.state.request_log() if r["path"].startswith(path_prefix)]

    def clear_requests(self) -> None:
        self.state.clear_requests()

    def add_fault(
        self, path_prefix: str, *, status: int = 500, count: int = 1, method: str | None = None
    ) -> Obj:
        return self.state.add_fault(path_prefix, status=status, count=count, method=method)

    def reset(self) -> None:
        self.state.reset()
        self.webhooks.clear()
