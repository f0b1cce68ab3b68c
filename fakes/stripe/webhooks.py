"""Signed webhook delivery, with the misbehaviours Stripe documents switched on demand.

Stripe signs ``f"{t}.{raw_body}"`` with HMAC-SHA256 under the endpoint secret and sends
``Stripe-Signature: t=<t>,v1=<hex>``; every retry is signed afresh. It retries any non-2xx,
may deliver an event twice, and does not keep order. The options here reproduce those
(``duplicate``, ``reverse``) and let a test hold deliveries back until it flushes them.

Deliveries run on the server's event loop; :meth:`WebhookDispatcher.publish` may be called
from any thread (it is the state's event listener).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import ssl
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import aiohttp

from .state import Obj, StripeState

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def sign_payload(body: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``body``, as Stripe computes it."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    payload = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


@dataclass
class WebhookEndpoint:
    url: str
    secret: str


@dataclass
class DeliveryOptions:
    attempts: int = 3  # first try included
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    timeout: float = 10.0
    duplicate: bool = False  # deliver every event twice
    reverse: bool = False  # deliver each batch (one operation's events) newest first
    hold: bool = False  # queue deliveries until flush()
    # Parallel senders, fixed when the server starts; 1 keeps first attempts in order.
    concurrency: int = 1
    # A CA bundle to verify an https endpoint with (a drill's self-signed proxy certificate);
    # empty = the system's CAs, as Stripe verifies real endpoints.
    ca_file: str = ""

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown webhook option {key!r}; known: {', '.join(known)}")
            current = getattr(self, key)
            if isinstance(current, bool):
                value = value if isinstance(value, bool) else str(value).lower() in ("1", "true")
            setattr(self, key, type(current)(value))


@dataclass
class Delivery:
    id: str
    event_id: str
    event_type: str
    url: str
    secret: str = field(repr=False)
    status: str = "pending"  # pending | held | retrying | succeeded | failed
    attempts: list[dict[str, Any]] = field(default_factory=list)
    created: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        del data["secret"]
        data["attempt_count"] = len(self.attempts)
        data["last_status_code"] = self.attempts[-1]["status_code"] if self.attempts else None
        return data


class WebhookDispatcher:
    def __init__(
        self,
        state: StripeState,
        endpoints: list[WebhookEndpoint] | None = None,
        options: DeliveryOptions | None = None,
    ) -> None:
        self.state = state
        self.options = options or DeliveryOptions()
        self._lock = threading.Lock()
        self._endpoints: list[WebhookEndpoint] = []
        self._deliveries: dict[str, Delivery] = {}
        self._held: list[str] = []
        self._backlog: list[str] = []  # published before the loop started
        self._counter = itertools.count(1)
        self._delivered_once: set[tuple[str, str]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[str] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._workers: list[asyncio.Task[None]] = []
        self.set_endpoints(endpoints or [])
        state.add_listener(self.publish)

    # -- configuration ---------------------------------------------------------------------

    def set_endpoints(self, endpoints: list[WebhookEndpoint]) -> None:
        with self._lock:
            self._endpoints = list(endpoints)
            self.state.webhook_endpoint_count = len(self._endpoints)

    @property
    def endpoints(self) -> list[WebhookEndpoint]:
        with self._lock:
            return list(self._endpoints)

    def configure(self, **options: Any) -> DeliveryOptions:
        with self._lock:
            self.options.update(options)
        return self.options

    # -- publishing (any thread) ---------------------------------------------------------

    def publish(self, events: list[Obj]) -> None:
        to_send: list[str] = []
        with self._lock:
            if not self._endpoints:
                return
            ordered = list(reversed(events)) if self.options.reverse else list(events)
            copies = 2 if self.options.duplicate else 1
            for event in ordered:
                for endpoint in self._endpoints:
                    for _ in range(copies):
                        delivery = Delivery(
                            id=f"whdel_{next(self._counter):06d}",
                            event_id=event["id"],
                            event_type=event["type"],
                            url=endpoint.url,
                            secret=endpoint.secret,
                        )
                        self._deliveries[delivery.id] = delivery
                        if self.options.hold:
                            delivery.status = "held"
                            self._held.append(delivery.id)
                        else:
                            to_send.append(delivery.id)
        for delivery_id in to_send:
            self._enqueue(delivery_id)

    def flush(self, *, reverse: bool = False) -> int:
        """Release held deliveries (optionally newest first); returns how many."""
        with self._lock:
            held, self._held = self._held, []
            for delivery_id in held:
                self._deliveries[delivery_id].status = "pending"
        for delivery_id in reversed(held) if reverse else held:
            self._enqueue(delivery_id)
        return len(held)

    def _enqueue(self, delivery_id: str) -> None:
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or loop.is_closed():
            with self._lock:
                self._backlog.append(delivery_id)
            return
        loop.call_soon_threadsafe(queue.put_nowait, delivery_id)

    # -- reading -------------------------------------------------------------------------------

    def deliveries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [d.public() for d in self._deliveries.values()]

    def clear(self) -> None:
        with self._lock:
            self._deliveries.clear()
            self._held.clear()
            self._delivered_once.clear()

    # -- the sending side (event loop) -----------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._session = aiohttp.ClientSession()
        self._workers = [
            asyncio.create_task(self._worker()) for _ in range(max(1, self.options.concurrency))
        ]
        with self._lock:
            backlog, self._backlog = self._backlog, []
        for delivery_id in backlog:
            self._queue.put_nowait(delivery_id)

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        if self._session is not None:
            await self._session.close()
        self._loop = self._queue = self._session = None

    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            delivery_id = await self._queue.get()
            try:
                await self._attempt(delivery_id)
            finally:
                self._queue.task_done()

    async def _attempt(self, delivery_id: str) -> None:
        with self._lock:
            delivery = self._deliveries.get(delivery_id)
            options = self.options
        if delivery is None or self._session is None:
            return  # cleared meanwhile
        with self.state.lock:
            event = self.state.events.get(delivery.event_id)
            if event is None:
                return  # state was reset
            # Stripe pretty-prints webhook bodies; receivers must verify the exact bytes.
            body = json.dumps(event, indent=2).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": sign_payload(body, delivery.secret),
            "Cache-Control": "no-cache",
            "Accept": "*/*; q=0.5, application/xml",
        }
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                delivery.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=options.timeout),
                allow_redirects=False,
                ssl=ssl.create_default_context(cafile=options.ca_file) if options.ca_file else True,
            ) as response:
                status_code = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = status_code is not None and 200 <= status_code < 300
        first_success = False
        with self._lock:
            delivery.attempts.append(
                {
                    "at": time.time(),
                    "status_code": status_code,
                    "error": error,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                }
            )
            retry_in: float | None = None
            if ok:
                delivery.status = "succeeded"
                first_success = (delivery.event_id, delivery.url) not in self._delivered_once
                self._delivered_once.add((delivery.event_id, delivery.url))
            elif len(delivery.attempts) < options.attempts:
                delivery.status = "retrying"
                retry_in = options.backoff * 2 ** (len(delivery.attempts) - 1)
            else:
                delivery.status = "failed"
        if ok and first_success:
            self.state.mark_event_delivered(delivery.event_id)
        if retry_in is not None and self._loop is not None and self._queue is not None:
            # Retries wait on a timer, not in the queue, so they never hold up other events.
            self._loop.call_later(retry_in, self._queue.put_nowait, delivery_id)
