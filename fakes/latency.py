"""A round trip the fakes add to every API call, so benches and drills can run against the
latency of the real services (about 150 ms to Stripe) instead of a loopback's microseconds.

Each API request waits ``ms`` ± ``jitter_ms`` (uniform) before it is answered. The wait is
asynchronous, so concurrent calls overlap as they would over a network, and the control API,
hosted pages and webhook deliveries are never delayed. Zero (the default) adds nothing.
Set it when starting a fake (``--latency-ms``, ``--latency-jitter-ms``) or at run time through
``GET``/``POST /_control/latency`` with ``{"ms": 150, "jitter_ms": 30}``.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any


class Latency:
    def __init__(self, ms: float = 0.0, jitter_ms: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._random = random.Random()
        self.ms = 0.0
        self.jitter_ms = 0.0
        self.configure(ms=ms, jitter_ms=jitter_ms)

    def configure(self, *, ms: Any = None, jitter_ms: Any = None) -> dict[str, float]:
        """Change the delay; a value left out keeps its setting. Raises ValueError for a
        negative delay or a jitter larger than the delay (the wait would go below zero)."""
        with self._lock:
            new_ms = self.ms if ms is None else float(ms)
            new_jitter = self.jitter_ms if jitter_ms is None else float(jitter_ms)
            if not (new_ms >= 0 and new_jitter >= 0):  # also refuses NaN
                raise ValueError("latency ms and jitter_ms must be zero or more")
            if new_jitter > new_ms:
                raise ValueError("latency jitter_ms cannot be larger than ms")
            self.ms, self.jitter_ms = new_ms, new_jitter
            return self.as_dict()

    def as_dict(self) -> dict[str, float]:
        return {"ms": self.ms, "jitter_ms": self.jitter_ms}

    def sample(self) -> float:
        """One call's delay, in seconds."""
        with self._lock:
            low, high = self.ms - self.jitter_ms, self.ms + self.jitter_ms
            return self._random.uniform(low, high) / 1000 if high > 0 else 0.0

    async def wait(self) -> None:
        delay = self.sample()
        if delay > 0:
            await asyncio.sleep(delay)


def add_arguments(parser: Any) -> None:
    """The ``--latency-ms`` / ``--latency-jitter-ms`` options both fakes' CLIs take."""
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay every API call by this much"
    )
    parser.add_argument(
        "--latency-jitter-ms", type=float, default=0.0, help="± this much, uniformly"
    )
