"""The one Discord REST client every process uses (web, worker, bot side tasks).

Why hand-written rather than discord.py's HTTP client: web and worker must not run an event
loop or a gateway connection, and we need behaviour discord.py does not offer — typed errors
that say whether a retry makes sense, and a circuit breaker shared across processes that stops
us long before Discord's invalid-request ban (10,000 401/403/429 responses per 10 minutes per
IP bans the whole host at Cloudflare).

Behaviour, per call:
- timeout ``DISCORD_TIMEOUT_SECONDS`` on connect and read;
- a process-wide token bucket caps every client for the same bot at ``DISCORD_GLOBAL_RATE``
  requests/s (default 45, under Discord's 50/s global limit per bot);
- per-bucket rate-limit state from ``X-RateLimit-*`` headers, keyed by ``X-RateLimit-Bucket``
  and the major parameter, so routes that share a bucket (PUT and DELETE of a member role)
  share one budget; every request reserves a slot before it is sent, and when a bucket has no
  slot left we sleep until its reset instead of collecting a 429;
- a 429 is honoured (``retry_after`` from the body, ``global`` blocks every route) and retried
  a bounded number of times;
- 5xx, timeouts and connection errors are retried with bounded exponential backoff, then raise
  ``DiscordTransientError`` so the task queue can try again later;
- any other 4xx raises ``DiscordPermanentError`` at once (never retried: a 403 from a bad role
  hierarchy repeats forever);
- every write carries ``X-Audit-Log-Reason``.

``requests`` is used because it is already installed (stripe-python and django-anymail depend
on it) and gives connection pooling with per-call timeouts; one ``Session`` per thread keeps
the client thread-safe.
"""

from __future__ import annotations

import base64
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
import structlog
from django.conf import settings
from django.core.cache import cache

from ops.ratelimit import TokenBucket

log = structlog.get_logger(__name__)

# Discord JSON error codes we branch on.
UNKNOWN_MEMBER = 10007
UNKNOWN_USER = 10013
CANNOT_DM_USER = 50007

# Responses Discord counts towards its invalid-request ban (429 with scope "shared" excepted).
INVALID_STATUSES = frozenset({401, 403, 429})


class DiscordError(Exception):
    """Base class; ``retryable`` says whether trying again later can succeed."""

    retryable = True


class DiscordTransientError(DiscordError):
    """Discord was unreachable, slow or failing (5xx) after our bounded retries."""


class DiscordRateLimited(DiscordTransientError):
    """Discord asked us to wait longer than we are willing to block a worker for."""

    def __init__(self, retry_after: float, *, is_global: bool) -> None:
        super().__init__(f"rate limited for {retry_after:.1f}s (global={is_global})")
        self.retry_after = retry_after
        self.is_global = is_global


class DiscordCircuitOpen(DiscordTransientError):
    """Too many invalid requests recently: calls are refused without touching Discord."""


class DiscordPermanentError(DiscordError):
    """A 4xx that repeating will not fix (missing permission, unknown member, bad request)."""

    retryable = False

    def __init__(self, status: int, code: int | None = None, message: str = "") -> None:
        super().__init__(f"Discord answered {status} (code {code}): {message}".strip())
        self.status = status
        self.code = code
        self.message = message


@dataclass
class _BucketState:
    limit: int
    remaining: int  # what the server said, minus requests we sent since (reservations)
    reset_at: float  # time.monotonic()
    window: float  # longest Reset-After seen: our estimate of the bucket's window length


_global_limiters: dict[tuple[str, str, float], TokenBucket] = {}
_global_limiters_lock = threading.Lock()


def global_limiter(api_base: str, bot_token: str, rate: float) -> TokenBucket:
    """The process-wide limiter for one bot: Discord counts its global limit per bot token."""
    key = (api_base, bot_token, float(rate))
    with _global_limiters_lock:
        limiter = _global_limiters.get(key)
        if limiter is None:
            limiter = _global_limiters[key] = TokenBucket(rate, name="DISCORD_GLOBAL_RATE")
        return limiter


class CircuitBreaker:
    """Counts invalid responses in a sliding window kept in the shared cache.

    The window is split into one-minute slots so every process adds to the same counters
    (Redis or the database cache in production). When the sum reaches ``threshold`` the
    breaker opens for ``cooldown`` seconds; then one caller (across processes) may probe:
    a valid answer closes it and clears the window, an invalid one reopens it.
    """

    prefix = "discord:breaker"

    def __init__(self, *, threshold: int, window: int = 600, cooldown: int = 60) -> None:
        self.threshold = threshold
        self.window = window
        self.cooldown = cooldown
        self.slot_seconds = 60

    def _slot_keys(self, now: float) -> list[str]:
        current = int(now // self.slot_seconds)
        count = max(1, self.window // self.slot_seconds)
        return [f"{self.prefix}:n:{slot}" for slot in range(current - count + 1, current + 1)]

    def invalid_count(self, now: float | None = None) -> int:
        keys = self._slot_keys(time.time() if now is None else now)
        return sum(int(v) for v in cache.get_many(keys).values())

    def before_call(self) -> bool:
        """Raise while open; return True when this call is the half-open probe."""
        open_until = cache.get(f"{self.prefix}:open_until")
        if open_until is None:
            return False
        if time.time() < float(open_until):
            raise DiscordCircuitOpen("Discord circuit breaker is open")
        # Half-open: exactly one probe at a time, across processes.
        if cache.add(f"{self.prefix}:probe", 1, timeout=self.cooldown):
            return True
        raise DiscordCircuitOpen("Discord circuit breaker is half-open; a probe is in flight")

    def record(self, *, invalid: bool, probe: bool) -> None:
        now = time.time()
        if probe:
            cache.delete(f"{self.prefix}:probe")
            if invalid:
                self._open(now)
            else:
                self.reset()
                log.warning("discord_breaker_closed")
            return
        if not invalid:
            return
        key = self._slot_keys(now)[-1]
        cache.add(key, 0, timeout=self.window + self.slot_seconds)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=self.window + self.slot_seconds)
        if self.invalid_count(now) >= self.threshold:
            self._open(now)

    def _open(self, now: float) -> None:
        cache.set(f"{self.prefix}:open_until", now + self.cooldown, timeout=self.window)
        log.error("discord_breaker_opened", cooldown_s=self.cooldown, threshold=self.threshold)

    def release_probe(self) -> None:
        """The probe learned nothing (network error): let the next caller probe."""
        cache.delete(f"{self.prefix}:probe")

    def is_open(self) -> bool:
        open_until = cache.get(f"{self.prefix}:open_until")
        return open_until is not None and time.time() < float(open_until)

    def reset(self) -> None:
        now = time.time()
        cache.delete_many(
            [f"{self.prefix}:open_until", f"{self.prefix}:probe", *self._slot_keys(now)]
        )


# Seconds added to every bucket reset we learn (Reset-After is rounded to milliseconds).
RESET_MARGIN = 0.01


def _refresh(state: _BucketState, now: float) -> None:
    """A bucket whose window has passed is full again; its next reset is a guess until the
    next answer's headers say."""
    if now >= state.reset_at:
        state.remaining = state.limit
        state.reset_at = now + state.window + RESET_MARGIN


_SNOWFLAKE = re.compile(r"/\d{5,}")
_MAJOR = re.compile(r"^/(guilds|channels|webhooks)/(\d+)")


def _route(method: str, path: str) -> tuple[str, str]:
    """(route key, major parameter): Discord's buckets are per route and top-level resource."""
    match = _MAJOR.match(path)
    major = match.group(2) if match else ""
    template = _SNOWFLAKE.sub("/{id}", path.split("?", 1)[0])
    return f"{method} {template}", major


class DiscordClient:
    """Synchronous, thread-safe; use :func:`get_client` for the per-process instance."""

    def __init__(
        self,
        *,
        api_base: str | None = None,
        bot_token: str | None = None,
        guild_id: str | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
        max_rate_limit_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_wait: float = 30.0,
        breaker: CircuitBreaker | None = None,
        global_rate: float | None = None,
    ) -> None:
        # Unset arguments come from settings, so DiscordClient() works anywhere.
        self.api_base = (api_base or settings.DISCORD_API_BASE).rstrip("/")
        self.guild_id = guild_id or settings.DISCORD_GUILD_ID
        self._token = bot_token or settings.DISCORD_BOT_TOKEN
        self.timeout = float(timeout or settings.DISCORD_TIMEOUT_SECONDS)
        self.max_retries = max_retries
        self.max_rate_limit_retries = max_rate_limit_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_wait = max_wait
        self.breaker = breaker or CircuitBreaker(threshold=1000)
        rate = float(global_rate or settings.DISCORD_GLOBAL_RATE)
        self.global_limiter = global_limiter(self.api_base, self._token, rate)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._local = threading.local()
        # route key -> bucket hash; "" once a route answered without bucket headers.
        self._route_buckets: dict[str, str] = {}
        self._buckets: dict[tuple[str, str], _BucketState] = {}
        # Routes whose first request is in flight: until its headers name the bucket, one
        # request at a time, so a burst cannot overrun a bucket we have not met yet.
        self._discovering: set[str] = set()
        self._global_until = 0.0

    def __repr__(self) -> str:  # never show the token
        return f"<DiscordClient {self.api_base} guild={self.guild_id}>"

    # --- transport ---------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = "DiscordBot (membership-gateway, 1.0)"
            self._local.session = session
        return session

    def _acquire(self, route_key: str, major: str, *, bot: bool) -> bool:
        """Wait for room in the route's bucket and the global cap, then reserve one request.

        Returns True when this request is the one discovering an unknown route's bucket; the
        caller must then :meth:`_release` it once the answer (or an error) is in.
        """
        while True:
            with self._cond:
                now = time.monotonic()
                wait = self._global_until - now
                bucket_hash = self._route_buckets.get(route_key)
                state: _BucketState | None = None
                discovering = False
                if bucket_hash is None and route_key in self._discovering:
                    # Another thread is learning this route's bucket; its answer wakes us.
                    self._cond.wait(timeout=min(1.0, self.max_wait))
                    continue
                if bucket_hash is None:
                    # It may share a bucket we already know (Discord shares them across
                    # routes): respect every exhausted bucket of the same major parameter.
                    for (_, bucket_major), other in self._buckets.items():
                        if bucket_major == major:
                            _refresh(other, now)
                            if other.remaining <= 0:
                                wait = max(wait, other.reset_at - now)
                    discovering = True
                elif bucket_hash:
                    state = self._buckets.get((bucket_hash, major))
                    if state is not None:
                        _refresh(state, now)
                        if state.remaining <= 0:
                            wait = max(wait, state.reset_at - now)
                if wait <= 0 and bot:
                    wait = self.global_limiter.try_acquire()
                if wait <= 0:
                    if state is not None:
                        state.remaining -= 1
                    if discovering:
                        self._discovering.add(route_key)
                    return discovering
            if wait > self.max_wait:
                raise DiscordRateLimited(wait, is_global=False)
            log.debug("discord_rate_wait", route=route_key, wait_s=round(wait, 3))
            time.sleep(wait)

    def _release(self, route_key: str) -> None:
        with self._cond:
            self._discovering.discard(route_key)
            self._cond.notify_all()

    def _remember_headers(self, route_key: str, major: str, response: requests.Response) -> None:
        headers = response.headers
        bucket_hash = headers.get("X-RateLimit-Bucket")
        remaining = headers.get("X-RateLimit-Remaining")
        reset_after = headers.get("X-RateLimit-Reset-After")
        limit = headers.get("X-RateLimit-Limit")
        try:
            parsed = (int(remaining or ""), float(reset_after or ""), int(limit or remaining or ""))
        except ValueError:
            parsed = None
        with self._cond:
            if not bucket_hash or parsed is None:
                if response.status_code != 429:  # a global 429 carries no bucket headers
                    self._route_buckets.setdefault(route_key, "")
                return
            left, after, cap = parsed
            self._route_buckets[route_key] = bucket_hash
            # The margin covers rounding of Reset-After, so we never think a window is over
            # before Discord does.
            reset_at = time.monotonic() + after + RESET_MARGIN
            state = self._buckets.get((bucket_hash, major))
            if state is None:
                self._buckets[(bucket_hash, major)] = _BucketState(
                    limit=cap, remaining=left, reset_at=reset_at, window=after
                )
                return
            state.limit = cap
            state.window = max(state.window, after)
            if reset_at < state.reset_at - state.window / 2:
                return  # a late answer from a window that is already over
            # Same (or a newer) window: our count includes requests still in flight, the
            # server's does not, so the smaller is the truth.
            state.remaining = min(state.remaining, left)
            state.reset_at = max(state.reset_at, reset_at)

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff_base * (2**attempt))
        return delay * (0.5 + random.random() / 2)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        reason: str | None = None,
        auth: str | None = None,
    ) -> Any:
        """One logical call: waits, retries and raises as described in the module docstring.

        Returns the decoded JSON body, or None for an empty (204) answer.
        """
        route_key, major = _route(method, path)
        headers = {"Authorization": auth if auth is not None else f"Bot {self._token}"}
        if auth == "":
            del headers["Authorization"]
        # Discord's global limit counts bot requests; OAuth calls are limited per user.
        is_bot = auth is None
        if reason is not None:
            headers["X-Audit-Log-Reason"] = quote(reason[:512], safe=" ")
        server_failures = 0
        rate_limits = 0
        while True:
            probe = self.breaker.before_call()
            discovering = self._acquire(route_key, major, bot=is_bot)
            try:
                response = self._session().request(
                    method,
                    self.api_base + path,
                    json=json,
                    data=data,
                    params=params,
                    headers=headers,
                    timeout=self.timeout,
                )
                self._remember_headers(route_key, major, response)
            except requests.RequestException as exc:
                if probe:
                    self.breaker.release_probe()
                server_failures += 1
                log.warning("discord_request_error", route=route_key, error=type(exc).__name__)
                if server_failures > self.max_retries:
                    raise DiscordTransientError(
                        f"{route_key}: {type(exc).__name__} after {server_failures} attempts"
                    ) from None
                time.sleep(self._backoff(server_failures - 1))
                continue
            finally:
                if discovering:
                    self._release(route_key)

            status = response.status_code
            body = _decode(response)
            shared_429 = status == 429 and response.headers.get("X-RateLimit-Scope") == "shared"
            self.breaker.record(invalid=status in INVALID_STATUSES and not shared_429, probe=probe)
            log.info("discord_request", method=method, route=route_key, status=status)

            if status < 300:
                return body
            if status == 429:
                rate_limits += 1
                retry_after = _retry_after(response, body)
                is_global = bool(isinstance(body, dict) and body.get("global"))
                if is_global:
                    with self._lock:
                        self._global_until = time.monotonic() + retry_after
                if rate_limits > self.max_rate_limit_retries or retry_after > self.max_wait:
                    raise DiscordRateLimited(retry_after, is_global=is_global)
                log.warning(
                    "discord_rate_limited",
                    route=route_key,
                    retry_after=retry_after,
                    is_global=is_global,
                )
                time.sleep(retry_after)
                continue
            if status >= 500:
                server_failures += 1
                if server_failures > self.max_retries:
                    raise DiscordTransientError(
                        f"{route_key}: Discord answered {status} after {server_failures} attempts"
                    )
                time.sleep(self._backoff(server_failures - 1))
                continue
            code = body.get("code") if isinstance(body, dict) else None
            message = str(body.get("message", "")) if isinstance(body, dict) else ""
            raise DiscordPermanentError(status, code, message)

    # --- guild members ----------------------------------------------------------------

    def get_member(self, user_id: str) -> dict[str, Any] | None:
        """The guild member, or None when the user is not in the guild."""
        try:
            return self.request("GET", f"/guilds/{self.guild_id}/members/{user_id}")
        except DiscordPermanentError as exc:
            if exc.status == 404:
                return None
            raise

    def add_member(self, user_id: str, *, access_token: str, roles: list[str], reason: str) -> bool:
        """Add a user to the guild with their OAuth token (``guilds.join``).

        Returns True when the user was added, False when they were already a member (Discord
        then ignores ``roles``; role sync applies them).
        """
        body = self.request(
            "PUT",
            f"/guilds/{self.guild_id}/members/{user_id}",
            json={"access_token": access_token, "roles": roles},
            reason=reason,
        )
        return body is not None

    def add_role(self, user_id: str, role_id: str, *, reason: str) -> None:
        self.request(
            "PUT", f"/guilds/{self.guild_id}/members/{user_id}/roles/{role_id}", reason=reason
        )

    def remove_role(self, user_id: str, role_id: str, *, reason: str) -> None:
        self.request(
            "DELETE", f"/guilds/{self.guild_id}/members/{user_id}/roles/{role_id}", reason=reason
        )

    def kick(self, user_id: str, *, reason: str) -> bool:
        """Remove the member from the guild; False when they were not in it."""
        try:
            self.request("DELETE", f"/guilds/{self.guild_id}/members/{user_id}", reason=reason)
        except DiscordPermanentError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # --- guild, bot --------------------------------------------------------------------

    def get_guild(self) -> dict[str, Any]:
        return self.request("GET", f"/guilds/{self.guild_id}")

    def get_bot_user(self) -> dict[str, Any]:
        return self.request("GET", "/users/@me")

    # --- messages ----------------------------------------------------------------------

    def create_dm(self, user_id: str) -> str:
        """The DM channel id with this user (Discord returns the existing one if any)."""
        channel = self.request("POST", "/users/@me/channels", json={"recipient_id": user_id})
        return str(channel["id"])

    def send_dm(self, user_id: str, content: str) -> dict[str, Any]:
        """Raises DiscordPermanentError(code=50007) when the user does not accept DMs."""
        return self.post_channel_message(self.create_dm(user_id), content)

    def post_channel_message(self, channel_id: str, content: str) -> dict[str, Any]:
        return self.request(
            "POST",
            f"/channels/{channel_id}/messages",
            json={"content": content[:2000], "allowed_mentions": {"parse": []}},
        )

    def channel_messages_after(
        self, channel_id: str, *, after: str, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The ``limit`` (1–100) messages of a channel right after ``after``, oldest first.

        Discord answers every page newest first; callers page on by passing the last id.
        """
        page = self.request(
            "GET",
            f"/channels/{channel_id}/messages",
            params={"after": after, "limit": max(1, min(limit, 100))},
        )
        return sorted(page, key=lambda message: int(message["id"]))

    def add_reaction(self, channel_id: str, message_id: str, emoji: str) -> None:
        self.request(
            "PUT",
            f"/channels/{channel_id}/messages/{message_id}/reactions/{quote(emoji)}/@me",
        )

    # --- OAuth (same host, other credentials) -------------------------------------------

    def oauth_exchange_code(
        self, *, code: str, redirect_uri: str, client_id: str, client_secret: str
    ) -> dict[str, Any]:
        pair = f"{client_id}:{client_secret}".encode()
        basic = "Basic " + base64.b64encode(pair).decode()
        return self.request(
            "POST",
            "/oauth2/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
            auth=basic,
        )

    def oauth_current_user(self, access_token: str) -> dict[str, Any]:
        return self.request("GET", "/users/@me", auth=f"Bearer {access_token}")


def _decode(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return {"message": response.text[:200]}


def _retry_after(response: requests.Response, body: Any) -> float:
    if isinstance(body, dict) and body.get("retry_after") is not None:
        try:
            return max(0.0, float(body["retry_after"]))
        except (TypeError, ValueError):
            pass
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


_instances: dict[tuple[str, str, str, float, int, int, float], DiscordClient] = {}
_instances_lock = threading.Lock()


def get_client() -> DiscordClient:
    """The per-process client for the current settings (tests repoint it via settings)."""
    # Discord bans at 10,000 invalid requests per 10 minutes; we stop at a tenth of that.
    threshold = settings.DISCORD_BREAKER_THRESHOLD
    cooldown = settings.DISCORD_BREAKER_COOLDOWN_SECONDS
    key = (
        settings.DISCORD_API_BASE,
        settings.DISCORD_BOT_TOKEN,
        settings.DISCORD_GUILD_ID,
        float(settings.DISCORD_TIMEOUT_SECONDS),
        threshold,
        cooldown,
        float(settings.DISCORD_GLOBAL_RATE),
    )
    with _instances_lock:
        client = _instances.get(key)
        if client is None:
            client = DiscordClient(
                api_base=settings.DISCORD_API_BASE,
                bot_token=settings.DISCORD_BOT_TOKEN,
                guild_id=settings.DISCORD_GUILD_ID,
                timeout=float(settings.DISCORD_TIMEOUT_SECONDS),
                breaker=CircuitBreaker(threshold=threshold, cooldown=cooldown),
                global_rate=float(settings.DISCORD_GLOBAL_RATE),
            )
            _instances[key] = client
        return client
