"""Run the fake Stripe server in a background thread (tests) or in the foreground (CLI).

with FakeStripeServer(webhook_url="http://127.0.0.1:8000/stripe/webhook/",
                      webhook_secret="whsec_test") as srv:
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": srv.url})
    ...
    srv.state.renew(sub_id)             # same operations as POST /_control/...
    srv.wait_for_deliveries(5)          # webhook deliveries are asynchronous
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..latency import Latency
from ..threaded import BackgroundServer
from .app import build_app
from .catalogue import Catalogue
from .state import Obj, StripeState
from .webhooks import DeliveryOptions, WebhookDispatcher, WebhookEndpoint


class FakeStripeServer(BackgroundServer):
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
        latency_ms: float = 0.0,
        latency_jitter_ms: float = 0.0,
    ) -> None:
        self.state = StripeState(catalogue=catalogue)
        endpoints = [WebhookEndpoint(webhook_url, webhook_secret)] if webhook_url else []
        self.webhooks = WebhookDispatcher(self.state, endpoints, options)
        self.webhook_secret = webhook_secret
        self.latency = Latency(latency_ms, latency_jitter_ms)
        app = build_app(
            self.state, self.webhooks, api_keys=frozenset(api_keys), latency=self.latency
        )
        super().__init__(app, name="fake-stripe", host=host, port=port)
        self.state.public_url = (public_url or self.url).rstrip("/")

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
