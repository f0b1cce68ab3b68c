"""A thread-safe token bucket: the one pacing primitive for calls to rate-limited APIs.

Discord counts a global limit per bot token (``discordsync.client``); Stripe counts requests
per second per account (``billing.drain``). The burst is a tenth of the rate, so any one-second
window holds at most 1.1 × ``rate`` requests, under the provider's limit even against a fixed
window.
"""

from __future__ import annotations

import threading
import time


class TokenBucket:
    def __init__(self, rate: float, *, name: str = "rate") -> None:
        if rate <= 0:
            raise ValueError(f"{name} must be positive")
        self.rate = float(rate)
        self.capacity = max(1.0, self.rate / 10)
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        """Take one token and return 0, or return the seconds until one is available."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate

    def acquire(self) -> None:
        """Wait (sleeping, never spinning) until a token is taken."""
        while (wait := self.try_acquire()) > 0:
            time.sleep(wait)
