"""Renewal day: N subscriptions renew at once while K people buy.

One gunicorn and one qcluster (``Q_WORKERS`` 2, the ORM broker) on a throwaway PostgreSQL
database; the fake Stripe (in this process) answering every API call after ``--latency-ms``
(150 ms by default, a realistic round trip to Stripe, with ``--jitter-ms`` of jitter) and the
fake Discord. N seeded subscriptions, each held by a member, renew at the same moment: their
five events each (the subscription updated; the invoice created, finalized, paid, payment
succeeded) are posted to ``POST /stripe/webhook/`` in shuffled order, 5 % of them twice, over
16 connections, as Stripe's deliveries arrive. Once half of them are posted, K buyers (linked
to Discord, in the guild) pay on Checkout one after another; their events are posted the
moment the fake emits them.

Reported: time to acknowledge every delivery, time until every event is processed, events/s,
Stripe API calls per renewing subscription (and per distinct Stripe object: a subscription and
its invoice), CPU seconds per event (web and worker process groups), and for the buyers the
time from payment to "active" (linked to their subscription and paid) and to the Squire role
in the fake guild, p50/p95. Before the burst, on the idle system with no latency, single
events are timed from POST to processed.

``--checkout DIR`` runs the web and worker processes of another checkout (with its own
``.venv``), e.g. the release before the event drain read by Stripe object, under ``--label``;
every label's latest result is kept in ``docs/renewal_day.json`` and the "Renewal day" section
of ``docs/PERFORMANCE.md`` shows them side by side.

    .venv/bin/python -m bench.renewal_day [--subscriptions 2000] [--purchases 20]
        [--latency-ms 150] [--checkout DIR --label NAME] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.docs import DOCS, ROOT, replace_section
from bench.processes import free_port, manage, sync_tables, wait_for_port
from bench.webhook_ack import SERVER_URL, gateway_env, request_bytes, send
from fakes.discord.server import FakeDiscordServer
from fakes.stripe.server import FakeStripeServer

PERFORMANCE = DOCS / "PERFORMANCE.md"
RESULTS = DOCS / "renewal_day.json"
HEADING = "Renewal day"
CONNECTIONS = 16
DUPLICATES = 0.05
SINGLE_EVENTS = 30

SEED = r"""
import json, os
import stripe
from django.conf import settings
from django.utils import timezone
from djstripe.models import Subscription
from members.models import Member, User

plan = json.load(open(os.environ["BENCH_PLAN"]))
now = timezone.now()
for i, sub_id in enumerate(plan["subscriptions"]):
    remote = stripe.Subscription.retrieve(sub_id)
    Subscription.sync_from_stripe_data(remote, api_key=settings.STRIPE_SECRET_KEY)
    user = User.objects.create_user(f"renewal{i}@bench.invalid", None)
    Member.objects.create(
        user=user, stripe_customer_id=remote["customer"], subscription_id=sub_id, paid_at=now
    )
buyers = []
for i, discord_id in enumerate(plan["buyers"]):
    email = f"buyer{i}@bench.invalid"
    user = User.objects.create_user(email, None)
    member = Member.objects.create(
        user=user,
        stripe_customer_id=stripe.Customer.create(email=email).id,
        discord_id=discord_id,
        discord_username=f"buyer{i}",
        linked_at=now,
    )
    metadata = {"plan_type": "individual", "member_id": str(member.pk)}
    session = stripe.checkout.Session.create(
        mode="subscription",
        customer=member.stripe_customer_id,
        client_reference_id=str(member.pk),
        line_items=[{"price": settings.STRIPE_INDIVIDUAL_PRICE_ID, "quantity": 1}],
        metadata=metadata,
        subscription_data={"metadata": metadata},
        success_url=f"{settings.APP_URL}/dashboard/?checkout=success",
        cancel_url=f"{settings.APP_URL}/dashboard/",
    )
    buyers.append({"member": member.pk, "session": session.id, "discord_id": discord_id})
json.dump(buyers, open(plan["out"], "w"))
"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def _group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) of every live process in a process group."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5, pgrp, after the name
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


@dataclass
class Result:
    label: str
    subscriptions: int
    deliveries: int
    events: int
    latency_ms: float
    ack_seconds: float
    drain_seconds: float
    stripe_calls_renewals: int
    cpu_seconds: float
    single_p50_ms: float
    single_p95_ms: float
    active_p50_s: float
    active_p95_s: float
    squire_p50_s: float
    squire_p95_s: float
    purchases: int
    measured_at: str
    load: str

    @property
    def events_per_second(self) -> float:
        return self.events / self.drain_seconds

    @property
    def calls_per_subscription(self) -> float:
        return self.stripe_calls_renewals / self.subscriptions

    @property
    def cpu_per_event_ms(self) -> float:
        return 1000 * self.cpu_seconds / self.events


class Stack:
    """The gateway's web and worker processes on a throwaway database, with both fakes."""

    def __init__(self, checkout: Path, latency_ms: float, jitter_ms: float) -> None:
        self.checkout = checkout
        self.latency = (latency_ms, jitter_ms)
        self.stripe = FakeStripeServer().start()
        self.discord = FakeDiscordServer().start()
        self.port = free_port()
        self.database = f"gateway_bench_{uuid.uuid4().hex[:12]}"
        self.url = SERVER_URL.rsplit("/", 1)[0] + f"/{self.database}"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = Path(tempfile.mkdtemp(prefix="bench-renewal-"))
        with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{self.database}"')
        self.env = {
            **gateway_env(self.url, self.port, self.stripe.url),
            **self.discord.settings(),
            "Q_WORKERS": "2",
        }

    def seed(self, subscriptions: int, purchases: int) -> tuple[list[str], list[dict[str, Any]]]:
        sync_tables(self.env, checkout=self.checkout)
        sub_ids = self.stripe.state.seed(subscriptions, price="price_individual")
        discord_ids = [
            self.discord.state.add_user(username=f"buyer{i}", in_guild=True)["id"]
            for i in range(purchases)
        ]
        out = self.logs / "buyers.json"
        plan = self.logs / "plan.json"
        plan.write_text(
            json.dumps({"subscriptions": sub_ids, "buyers": discord_ids, "out": str(out)})
        )
        done = manage(
            {**self.env, "BENCH_PLAN": str(plan)},
            "shell",
            "-c",
            SEED,
            checkout=self.checkout,
            timeout=3600,
        )
        if done.returncode:
            raise RuntimeError(f"seeding failed:\n{done.stderr[-3000:]}")
        return sub_ids, json.loads(out.read_text())

    def start(self) -> None:
        python = str(self.checkout / ".venv" / "bin" / "python")
        for name, command in (
            ("web", [str(self.checkout / ".venv" / "bin" / "gunicorn"), "gateway.wsgi"]),
            ("worker", [python, "manage.py", "qcluster"]),
        ):
            log = (self.logs / f"{name}.log").open("wb")
            self.processes.append(
                subprocess.Popen(
                    command,
                    cwd=self.checkout,
                    env=self.env,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )
        wait_for_port(self.port, timeout=60)

    def cpu(self) -> float:
        return sum(_group_cpu(p.pid) for p in self.processes)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.stripe.stop()
        self.discord.stop()
        with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def _post(port: int, event: dict[str, Any]) -> None:
    body = json.dumps(event, indent=2).encode()
    for _ in range(3):
        try:
            if send(port, request_bytes("/stripe/webhook/", body)) == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"delivery of {event['id']} failed three times")


def _processed(stack: Stack) -> int:
    return stack.query("SELECT count(*) FROM billing_stripeeventinbox WHERE status = 'processed'")[
        0
    ][0]


def _single_events(stack: Stack, sub_ids: list[str]) -> list[float]:
    """POST → processed for lone events on the idle system, latency off."""
    timings = []
    for sub_id in random.Random(3).sample(sub_ids, min(SINGLE_EVENTS, len(sub_ids))):
        with stack.stripe.state.lock:
            before = len(stack.stripe.state.events.order)
        stack.stripe.state.set_cancel_at_period_end(sub_id, True)
        stack.stripe.state.set_cancel_at_period_end(sub_id, False)
        with stack.stripe.state.lock:
            events = [
                stack.stripe.state.events.get(i) for i in stack.stripe.state.events.order[before:]
            ]
        for event in events:
            started = time.monotonic()
            _post(stack.port, event)
            while True:
                rows = stack.query(
                    "SELECT status FROM billing_stripeeventinbox WHERE event_id = %s", event["id"]
                )
                if rows and rows[0][0] == "processed":
                    break
                if time.monotonic() - started > 30:
                    raise RuntimeError(f"{event['id']} not processed after 30 s")
                time.sleep(0.005)
            timings.append((time.monotonic() - started) * 1000)
            time.sleep(0.3)
    return timings


def run(args: argparse.Namespace) -> Result:
    checkout = Path(args.checkout).resolve() if args.checkout else ROOT
    stack = Stack(checkout, args.latency_ms, args.jitter_ms)
    try:
        print(f"seeding {args.subscriptions} subscriptions and {args.purchases} buyers", flush=True)
        sub_ids, buyers = stack.seed(args.subscriptions, args.purchases)
        stack.start()
        time.sleep(3)
        single = _single_events(stack, sub_ids)
        print(f"single events: p50 {_pct(single, 50):.0f} ms, p95 {_pct(single, 95):.0f} ms")
        time.sleep(2)

        state = stack.stripe.state
        with state.lock:
            before = len(state.events.order)
        for sub_id in sub_ids:
            state.renew(sub_id)
        with state.lock:
            renewal = [state.events.get(i) for i in state.events.order[before:]]
        invoice_ids = {
            e["data"]["object"]["id"] for e in renewal if e["type"].startswith("invoice.")
        }
        rng = random.Random(11)
        deliveries = renewal + rng.sample(renewal, int(len(renewal) * DUPLICATES))
        rng.shuffle(deliveries)
        stack.stripe.latency.configure(ms=args.latency_ms, jitter_ms=args.jitter_ms)
        stack.stripe.clear_requests()
        processed_before = _processed(stack)
        cpu_before = stack.cpu()

        queue = list(reversed(deliveries))
        lock = threading.Lock()
        posted = [0]
        half = threading.Event()

        def sender() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    event = queue.pop()
                _post(stack.port, event)
                with lock:
                    posted[0] += 1
                    if posted[0] >= len(deliveries) // 2:
                        half.set()

        paid_at: dict[int, float] = {}
        purchase_events: list[str] = []

        def buy() -> None:
            half.wait()
            for buyer in buyers:
                with state.lock:
                    mark = len(state.events.order)
                paid_at[buyer["member"]] = time.monotonic()
                state.complete_checkout(buyer["session"], email=f"buyer{buyer['member']}@x.test")
                with state.lock:
                    new = [state.events.get(i) for i in state.events.order[mark:]]
                for event in new:
                    purchase_events.append(event["id"])
                    _post(stack.port, event)
                time.sleep(args.purchase_gap)

        started = time.monotonic()
        threads = [threading.Thread(target=sender) for _ in range(CONNECTIONS)]
        threads.append(threading.Thread(target=buy))
        for thread in threads:
            thread.start()

        active: dict[int, float] = {}
        squire: dict[int, float] = {}
        squire_role = stack.discord.settings()["DISCORD_ROLE_SQUIRE_ID"]
        acked_at: float | None = None
        drained_at: float | None = None
        total = len(renewal)
        while drained_at is None or len(squire) < len(buyers):
            now = time.monotonic()
            if acked_at is None and all(not t.is_alive() for t in threads):
                acked_at = now
            if (
                drained_at is None
                and _processed(stack) - processed_before >= total + len(purchase_events)
                and acked_at is not None
            ):
                drained_at = now
            if paid_at:
                rows = stack.query(
                    "SELECT id FROM members_member WHERE id = ANY(%s) "
                    "AND subscription_id <> '' AND paid_at IS NOT NULL",
                    list(paid_at),
                )
                for (member_id,) in rows:
                    active.setdefault(member_id, now)
            for buyer in buyers:
                roles = stack.discord.state.member_roles(buyer["discord_id"]) or []
                if squire_role in roles:
                    squire.setdefault(buyer["member"], now)
            if now - started > args.timeout:
                raise RuntimeError(
                    f"not drained after {args.timeout:.0f} s: "
                    f"{_processed(stack) - processed_before} of {total} processed"
                )
            time.sleep(0.1)
        cpu = stack.cpu() - cpu_before
        renewing = set(sub_ids) | invoice_ids
        renewal_calls = sum(
            1 for r in stack.stripe.requests("/v1/") if renewing.intersection(r["path"].split("/"))
        )
        load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
        return Result(
            label=args.label,
            subscriptions=len(sub_ids),
            deliveries=len(deliveries),
            events=total + len(purchase_events),
            latency_ms=args.latency_ms,
            ack_seconds=round((acked_at or time.monotonic()) - started, 1),
            drain_seconds=round(drained_at - started, 1),
            stripe_calls_renewals=renewal_calls,
            cpu_seconds=round(cpu, 1),
            single_p50_ms=round(_pct(single, 50)),
            single_p95_ms=round(_pct(single, 95)),
            active_p50_s=round(_pct([active[m] - paid_at[m] for m in active], 50), 2),
            active_p95_s=round(_pct([active[m] - paid_at[m] for m in active], 95), 2),
            squire_p50_s=round(_pct([squire[m] - paid_at[m] for m in squire], 50), 2),
            squire_p95_s=round(_pct([squire[m] - paid_at[m] for m in squire], 95), 2),
            purchases=len(buyers),
            measured_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            load=load,
        )
    finally:
        stack.stop()


def render(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        "Measured by `.venv/bin/python -m bench.renewal_day` (rewrites this section; each "
        "label's latest run is kept in `docs/renewal_day.json`): one gunicorn (`gunicorn.conf.py`) "
        "and one qcluster with 2 workers (ORM broker) on a throwaway PostgreSQL database; the "
        "fake Stripe answering every API call after the latency shown (with 20 ms of jitter) "
        "and the fake Discord, both in the benchmark's process; every subscription held by a "
        "member; its renewal's five events posted shuffled, 5 % twice, over 16 connections; "
        "once half are posted, the buyers pay one after another and their events are posted "
        "as emitted. Stripe calls count the requests about the renewing subscriptions and "
        f"their invoices. All on the same {os.cpu_count()}-core machine "
        f"({platform.python_implementation()} {platform.python_version()}); the load average "
        "(1/5/15 min) at the end shows how busy it was.",
        "",
        "| Run | Subscriptions | Deliveries | Latency | Acknowledged in | Drained in | Events/s "
        "| Stripe calls per subscription | CPU ms per event | Single event p50 / p95 "
        "| Buyers | Paid → active p50 / p95 | Paid → Squire p50 / p95 | Measured | Load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for data in results.values():
        r = Result(**data)
        rows.append(
            f"| {r.label} | {r.subscriptions} | {r.deliveries} | {r.latency_ms:g} ms "
            f"| {r.ack_seconds:g} s | {r.drain_seconds:g} s | {r.events_per_second:.1f} "
            f"| {r.calls_per_subscription:.2f} | {r.cpu_per_event_ms:.0f} "
            f"| {r.single_p50_ms:g} / {r.single_p95_ms:g} ms | {r.purchases} "
            f"| {r.active_p50_s:g} / {r.active_p95_s:g} s "
            f"| {r.squire_p50_s:g} / {r.squire_p95_s:g} s | {r.measured_at} | {r.load} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=2000)
    parser.add_argument("--purchases", type=int, default=20)
    parser.add_argument("--purchase-gap", type=float, default=0.5, help="seconds between buyers")
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--jitter-ms", type=float, default=20.0)
    parser.add_argument("--checkout", help="run another checkout's processes (its own .venv)")
    parser.add_argument("--label", default="this release")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--no-write", action="store_true", help="print, do not touch the docs")
    args = parser.parse_args(argv)

    result = run(args)
    print(json.dumps(asdict(result), indent=2))
    if args.no_write:
        return 0
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[args.label] = asdict(result)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    text = render(results)
    print(text)
    replace_section(PERFORMANCE, HEADING, text, title="Performance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
