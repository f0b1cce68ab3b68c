"""Rate-limit buckets and fault injection for the fake REST API.

Discord's limits are per route ("bucket") and per top-level resource (the "major parameter":
guild id, channel id), plus a global per-bot limit. We use fixed windows: simple to reason
about in tests and close enough to what clients observe through the headers.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Bucket:
    limit: int
    per: float
    remaining: int
    reset_at: float  # time.monotonic()

    def refresh(self, now: float) -> None:
        if now >= self.reset_at:
            self.remaining = self.limit
            self.reset_at = now + self.per


@dataclass(frozen=True)
class BucketView:
    """What the X-RateLimit-* headers say about one bucket after a request."""

    limit: int
    remaining: int
    reset_after: float
    bucket_hash: str

    def headers(self) -> dict[str, str]:
        reset_after = max(self.reset_after, 0.0)
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            # Reset is an epoch timestamp in seconds; Reset-After the seconds left.
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": self.bucket_hash,
        }


def bucket_hash(route_key: str) -> str:
    """An opaque, stable hash per route, shaped like Discord's (32 hex characters)."""
    return hashlib.sha256(route_key.encode()).hexdigest()[:32]


class RateLimiter:
    """Per-(route, major parameter) buckets plus a global window for bot requests."""

    def __init__(self, limits: dict[str, tuple[int, float]], global_limit: tuple[int, float]):
        self.limits = dict(limits)
        self.global_limit = global_limit
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._global: Bucket | None = None

    def set_limit(self, route_key: str, limit: int, per: float) -> None:
        self.limits[route_key] = (limit, per)
        for key in [k for k in self._buckets if k[0] == route_key]:
            del self._buckets[key]

    def set_global_limit(self, limit: int, per: float) -> None:
        self.global_limit = (limit, per)
        self._global = None

    def _limit_for(self, route_key: str) -> tuple[int, float]:
        return self.limits.get(route_key) or self.limits.get("default") or (50, 1.0)

    def _bucket(self, route_key: str, major: str, now: float) -> Bucket:
        bucket = self._buckets.get((route_key, major))
        if bucket is None:
            limit, per = self._limit_for(route_key)
            bucket = Bucket(limit=limit, per=per, remaining=limit, reset_at=now + per)
            self._buckets[(route_key, major)] = bucket
        bucket.refresh(now)
        return bucket

    def take_global(self, now: float) -> float | None:
        """Count one bot request against the global window; seconds to wait if over."""
        limit, per = self.global_limit
        if self._global is None:
            self._global = Bucket(limit=limit, per=per, remaining=limit, reset_at=now + per)
        self._global.refresh(now)
        if self._global.remaining <= 0:
            return self._global.reset_at - now
        self._global.remaining -= 1
        return None

    def take(self, route_key: str, major: str, now: float) -> tuple[bool, BucketView]:
        bucket = self._bucket(route_key, major, now)
        ok = bucket.remaining > 0
        if ok:
            bucket.remaining -= 1
        return ok, self._view(route_key, bucket, now)

    def peek(self, route_key: str, major: str, now: float) -> BucketView:
        return self._view(route_key, self._bucket(route_key, major, now), now)

    @staticmethod
    def _view(route_key: str, bucket: Bucket, now: float) -> BucketView:
        return BucketView(
            limit=bucket.limit,
            remaining=bucket.remaining,
            reset_after=bucket.reset_at - now,
            bucket_hash=bucket_hash(route_key),
        )


def rate_limited_body(retry_after: float, *, is_global: bool) -> dict[str, Any]:
    return {
        "message": "You are being rate limited.",
        "retry_after": round(retry_after, 3),
        "global": is_global,
    }


def rate_limited_headers(retry_after: float, *, scope: str) -> dict[str, str]:
    headers = {
        # The header is whole seconds; the body carries the precise float.
        "Retry-After": str(max(1, math.ceil(retry_after))),
        "X-RateLimit-Scope": scope,
        # discord.py only sleeps and retries a 429 that carries Via (Discord's responses come
        # through Google's load balancer); without it it assumes a Cloudflare ban and raises.
        "Via": "1.1 google",
    }
    if scope == "global":
        headers["X-RateLimit-Global"] = "true"
    return headers


_fault_ids = itertools.count(1)

# The default body for each forced status, as Discord sends it.
_FAULT_BODIES: dict[int, tuple[str, int]] = {
    400: ("400: Bad Request", 0),
    401: ("401: Unauthorized", 0),
    403: ("Missing Permissions", 50013),
    404: ("404: Not Found", 0),
    500: ("500: Internal Server Error", 0),
    502: ("502: Bad Gateway", 0),
    503: ("503: Service Unavailable", 0),
    504: ("504: Gateway Timeout", 0),
}


@dataclass
class Fault:
    """Answer matching requests with `status` instead of serving them.

    Matches by method (None = any) and path prefix relative to the API base (e.g.
    "/guilds/1/members"); lives for `remaining` matches or until `until` (monotonic), or
    both, whichever ends first.
    """

    path_prefix: str
    status: int
    method: str | None = None
    remaining: int | None = 1
    until: float | None = None
    retry_after: float = 0.5
    is_global: bool = False
    scope: str = "user"
    code: int | None = None
    message: str | None = None
    hits: int = 0
    id: int = field(default_factory=lambda: next(_fault_ids))

    def active(self, now: float) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        return self.until is None or now < self.until

    def matches(self, method: str, api_path: str, now: float) -> bool:
        if not self.active(now):
            return False
        if self.method is not None and self.method != method:
            return False
        return api_path.startswith(self.path_prefix)

    def body(self) -> dict[str, Any]:
        if self.status == 429:
            return rate_limited_body(self.retry_after, is_global=self.is_global)
        message, code = _FAULT_BODIES.get(self.status, (f"{self.status}: Error", 0))
        return {
            "message": self.message if self.message is not None else message,
            "code": self.code if self.code is not None else code,
        }

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "path_prefix": self.path_prefix,
            "status": self.status,
            "remaining": self.remaining,
            "seconds_left": None if self.until is None else max(0.0, self.until - now),
            "retry_after": self.retry_after,
            "global": self.is_global,
            "hits": self.hits,
            "active": self.active(now),
        }


def normalise_api_path(path: str) -> str:
    """ "/api/v10/guilds/1" and "/guilds/1" both become "/guilds/1"."""
    if path.startswith("/api/"):
        rest = path[len("/api") :]
        parts = rest.split("/", 2)
        if len(parts) > 1 and parts[1][:1] == "v" and parts[1][1:].isdigit():
            rest = "/" + (parts[2] if len(parts) > 2 else "")
        return rest
    return path
