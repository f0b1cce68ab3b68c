"""Webhook acknowledgement benchmark: what it costs to answer Stripe, endpoint by endpoint.

One gunicorn (sync workers, ``gunicorn.conf.py``) on a throwaway PostgreSQL database on the
machine's server (created and dropped here), the fake Stripe in this process, and unique
pre-signed ``customer.subscription.updated`` events (about 3 KB, real subscription objects from
the fake) posted over 16 concurrent connections for N seconds to each of:

  (a) a trivial Django view (the ceiling),
  (b) a minimal durable acknowledgement: verify_header + json.loads + one INSERT,
  (c) dj-stripe's stock webhook view, processing inline against the fake Stripe,
  (d) our ``POST /stripe/webhook/``.

Every endpoint runs ``--runs`` times in rotation; the median run by throughput is reported.
The figures go into the "Webhook acknowledgement" section of ``docs/PERFORMANCE.md``, with the
targets: (d) ≥ 90 % of (b)'s requests/s and ≥ 8× (c)'s, p99 ≤ 75 ms, no errors, and no
outbound Stripe call on (d)'s path (counted in the fake's request log).

    .venv/bin/python -m bench.webhook_ack [--seconds 10] [--runs 3] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import psycopg

from bench.docs import DOCS, ROOT, replace_section
from bench.processes import child_env, free_port, sync_tables, wait_for_port
from bench.schema import CREATE_TABLE
from fakes.stripe.server import FakeStripeServer
from fakes.stripe.webhooks import sign_payload

GUNICORN = str(Path(sys.executable).parent / "gunicorn")
SECRET = "whsec_bench_0123456789abcdef0123456789"
SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PERFORMANCE = DOCS / "PERFORMANCE.md"
HEADING = "Webhook acknowledgement"
SUBSCRIPTIONS = 16
THREADS_PER_PROCESS = 4
EVENTS_PER_THREAD = 2500


@dataclass(frozen=True)
class Endpoint:
    key: str
    label: str
    path: str


@dataclass
class Result:
    endpoint: Endpoint
    seconds: float
    latencies_ms: list[float]
    errors: int
    stripe_calls: int

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# -- load generation (child processes) ----------------------------------------------------


def _event(template: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": f"evt_bench_{uuid.uuid4().hex}",
            "object": "event",
            "api_version": "2026-08-26.dahlia",
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": "customer.subscription.updated",
            "data": {"object": template, "previous_attributes": {"status": "past_due"}},
        }
    ).encode()


def request_bytes(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Stripe-Signature: {sign_payload(body, SECRET)}\r\n"
        "User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n\r\n"
    )
    return head.encode() + body


def send(port: int, raw: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return int(response.split(b" ", 2)[1])


def _load_process(
    port: int, path: str, templates: list[dict[str, Any]], start_at: float, seconds: float
) -> tuple[list[float], int, int]:
    """Pre-sign unique events, then post them from a few threads until the time is up."""
    batches = [
        [request_bytes(path, _event(templates[(t * 7 + n) % len(templates)])) for n in range(count)]
        for t, count in enumerate([EVENTS_PER_THREAD] * THREADS_PER_PROCESS)
    ]
    latencies: list[float] = []
    errors = [0]
    exhausted = [0]
    lock = threading.Lock()

    def run(batch: list[bytes]) -> None:
        mine: list[float] = []
        failed = 0
        time.sleep(max(0.0, start_at - time.monotonic()))
        end = start_at + seconds
        for raw in batch:
            if time.monotonic() >= end:
                break
            started = time.monotonic()
            try:
                ok = send(port, raw) == 200
            except OSError:
                ok = False
            if time.monotonic() > end:
                break  # finished after the window: counted in neither figure
            if ok:
                mine.append((time.monotonic() - started) * 1000)
            else:
                failed += 1
        else:
            with lock:
                exhausted[0] += 1
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=run, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0], exhausted[0]


def measure(
    pool: ProcessPoolExecutor,
    port: int,
    endpoint: Endpoint,
    templates: list[dict[str, Any]],
    *,
    connections: int,
    seconds: float,
    stripe: FakeStripeServer,
) -> Result:
    processes = connections // THREADS_PER_PROCESS
    stripe.clear_requests()
    # Building and signing the events happens before start_at, outside the window.
    start_at = time.monotonic() + 3.0
    futures = [
        pool.submit(_load_process, port, endpoint.path, templates, start_at, seconds)
        for _ in range(processes)
    ]
    latencies: list[float] = []
    errors = exhausted = 0
    for future in futures:
        lat, err, ran_out = future.result()
        latencies.extend(lat)
        errors += err
        exhausted += ran_out
    if exhausted:
        raise RuntimeError(f"{endpoint.key}: pre-signed events ran out; raise EVENTS_PER_THREAD")
    return Result(endpoint, seconds, latencies, errors, len(stripe.requests("/v1/")))


# -- set-up ----------------------------------------------------------------------------------


BENCH_DISCORD_IDS = (
    "DISCORD_CLIENT_ID",
    "DISCORD_GUILD_ID",
    "DISCORD_ROLE_SQUIRE_ID",
    "DISCORD_ROLE_KNIGHT_ID",
    "DISCORD_ROLE_LORD_ID",
    "DISCORD_ROLE_DEBTOR_ID",
    "DISCORD_INTRODUCTIONS_CHANNEL_ID",
    "DISCORD_BILLING_SUPPORT_CHANNEL_ID",
)


def gateway_env(database_url: str, port: int, stripe_url: str) -> dict[str, str]:
    return child_env(
        drop=("SENTRY", "STRIPE_"),
        **{
            # Staging: DEBUG off and JSON logs, as deployed; sandbox Stripe at the fake.
            "DJANGO_ENV": "staging",
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "SECRET_KEY": uuid.uuid4().hex * 2,
            "ALLOWED_HOSTS": "127.0.0.1",
            "APP_URL": "https://127.0.0.1",  # deployed profiles require https links
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": database_url,
            "STRIPE_API_BASE": stripe_url,
            "STRIPE_SECRET_KEY": "sk_test_bench00000000000000000000000",
            "STRIPE_WEBHOOK_SECRET": SECRET,
            # Staging never runs the sandbox; nothing here calls Discord.
            "DISCORD_BOT_TOKEN": "bench-bot-token",
            "DISCORD_CLIENT_SECRET": "bench-client-secret",
            **{name: "1" for name in BENCH_DISCORD_IDS},
            "DISCORD_INVITE_URL": "https://discord.invalid/bench",
            "PORT": str(port),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        },
    )


def _templates(stripe: FakeStripeServer) -> list[dict[str, Any]]:
    ids = stripe.state.seed(SUBSCRIPTIONS)
    out = []
    for sub_id in ids:
        request = urllib.request.Request(
            f"{stripe.url}/v1/subscriptions/{sub_id}",
            headers={"Authorization": "Bearer sk_test_sandbox0000000000000000000000"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            out.append(json.loads(response.read()))
    return out


def _warm_up(port: int, endpoints: list[Endpoint], templates: list[dict[str, Any]]) -> None:
    """One event per subscription, one at a time: every worker loads Django and dj-stripe
    mirrors each customer once, so the runs measure the steady state, not first syncs."""
    for endpoint in endpoints:
        for template in templates:
            status = send(port, request_bytes(endpoint.path, _event(template)))
            if status != 200:
                raise RuntimeError(f"warm-up of {endpoint.path} answered {status}")


# -- report ----------------------------------------------------------------------------------


def _verdict(results: dict[str, Result]) -> list[tuple[str, bool, str]]:
    b, c, d = results["b"], results["c"], results["d"]
    return [
        ("(d) ≥ 90 % of (b)'s requests/s", d.rps >= 0.9 * b.rps, f"{d.rps / b.rps:.0%}"),
        ("(d) ≥ 8× (c)'s requests/s", d.rps >= 8 * c.rps, f"{d.rps / c.rps:.1f}×"),
        ("(d) p99 ≤ 75 ms", d.pct(99) <= 75, f"{d.pct(99):.0f} ms"),
        ("(d) no errors", d.errors == 0, str(d.errors)),
        ("(d) no outbound Stripe call", d.stripe_calls == 0, str(d.stripe_calls)),
    ]


def render(
    results: dict[str, Result], *, runs: int, seconds: float, workers: int, load: str
) -> str:
    rows = [
        "Measured by `.venv/bin/python -m bench.webhook_ack` (rewrites this section): gunicorn "
        f"with {workers} sync workers and `gunicorn.conf.py`, `DJANGO_ENV=staging` (DEBUG off, "
        "JSON logs), PostgreSQL "
        "on loopback (a throwaway database), unique pre-signed `customer.subscription.updated` "
        f"events of about {len(_event(TEMPLATE_FOR_SIZE)) // 100 / 10:g} KB, 16 concurrent "
        f"connections, {seconds:g} s per run, median of {runs} runs by throughput; the load "
        f"generator runs on the same {os.cpu_count()}-core machine "
        f"({platform.python_implementation()} {platform.python_version()}). Latency is the "
        "client's, from connect to the end of the response. Load average (1/5/15 min) at the "
        f"end: {load} — anything above the core count means other work shared the CPUs and "
        "the absolute figures are low; the ratios between endpoints, measured in rotation, "
        "hold better.",
        "",
        "| Endpoint | req/s | p50 ms | p95 ms | p99 ms | errors | Stripe API calls |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in "abcd":
        r = results[key]
        rows.append(
            f"| ({key}) {r.endpoint.label} | {r.rps:.0f} | {r.pct(50):.0f} | {r.pct(95):.0f} "
            f"| {r.pct(99):.0f} | {r.errors} | {r.stripe_calls} |"
        )
    rows += ["", "| Target | Met | Measured |", "|---|---|---|"]
    for name, met, value in _verdict(results):
        rows.append(f"| {name} | {'yes' if met else 'NO'} | {value} |")
    rows += ["", f"Run on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}."]
    return "\n".join(rows)


TEMPLATE_FOR_SIZE: dict[str, Any] = {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per run (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="runs per endpoint (default 3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-write", action="store_true", help="print, do not touch the docs")
    parser.add_argument(
        "--endpoints",
        default="abcd",
        help="which endpoints to run, e.g. bd (the docs are only written for all four)",
    )
    args = parser.parse_args(argv)
    if args.connections % THREADS_PER_PROCESS:
        parser.error(f"--connections must be a multiple of {THREADS_PER_PROCESS}")

    port = free_port()
    database = f"gateway_bench_{uuid.uuid4().hex[:12]}"
    database_url = SERVER_URL.rsplit("/", 1)[0] + f"/{database}"
    with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    stripe = FakeStripeServer().start()
    web: subprocess.Popen[bytes] | None = None
    try:
        env = gateway_env(database_url, port, stripe.url)
        sync_tables(env)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(CREATE_TABLE)
        stock = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                "from bench.urls import stock_webhook_endpoint; print(stock_webhook_endpoint())",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        stock_uuid = stock.stdout.strip().splitlines()[-1]
        endpoints = [
            Endpoint("a", "trivial Django view, no database (the ceiling)", "/bench/trivial/"),
            Endpoint("b", "`verify_header` + `json.loads` + one INSERT", "/bench/minimal/"),
            Endpoint(
                "c",
                "dj-stripe stock view, inline processing against the fake Stripe",
                f"/stripe/webhook/{stock_uuid}/",
            ),
            Endpoint("d", "our `POST /stripe/webhook/`", "/stripe/webhook/"),
        ]
        templates = _templates(stripe)
        TEMPLATE_FOR_SIZE.update(templates[0])
        log = Path(tempfile.mkdtemp(prefix="bench-")) / "gunicorn.log"
        with log.open("wb") as out:
            web = subprocess.Popen(
                [GUNICORN, "gateway.wsgi"], cwd=ROOT, env=env, stdout=out, stderr=out
            )
        wait_for_port(port, timeout=60)
        _warm_up(port, endpoints, templates)
        workers = int(env.get("WEB_CONCURRENCY") or 2 * (os.cpu_count() or 1) + 1)

        runs: dict[str, list[Result]] = {e.key: [] for e in endpoints}
        with ProcessPoolExecutor(
            args.connections // THREADS_PER_PROCESS, mp_context=get_context("fork")
        ) as pool:
            for run in range(args.runs):
                for endpoint in [e for e in endpoints if e.key in args.endpoints]:
                    result = measure(
                        pool,
                        port,
                        endpoint,
                        templates,
                        connections=args.connections,
                        seconds=args.seconds,
                        stripe=stripe,
                    )
                    runs[endpoint.key].append(result)
                    print(
                        f"run {run + 1} ({endpoint.key}) {result.rps:7.1f} req/s  "
                        f"p50 {result.pct(50):5.1f}  p95 {result.pct(95):5.1f}  "
                        f"p99 {result.pct(99):5.1f} ms  errors {result.errors}  "
                        f"stripe calls {result.stripe_calls}",
                        flush=True,
                    )
        median = {
            key: sorted(results, key=lambda r: r.rps)[len(results) // 2]
            for key, results in runs.items()
            if results
        }
        if set(median) != set("abcd"):
            return 0
        load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
        text = render(median, runs=args.runs, seconds=args.seconds, workers=workers, load=load)
        print(text)
        if not args.no_write:
            replace_section(PERFORMANCE, HEADING, text, title="Performance")
        return 0 if all(met for _, met, _ in _verdict(median)) else 1
    finally:
        if web is not None:
            web.send_signal(signal.SIGTERM)
            web.wait(timeout=40)
        stripe.stop()
        with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
