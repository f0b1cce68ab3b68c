"""Reconciliation benchmark: wall time, API calls against the minimum, and peak memory.

    .venv/bin/python -m bench.reconcile                      # 10,000 and 100,000 members
    .venv/bin/python -m bench.reconcile --sizes 2000 --no-write

For each size N the driver starts the fake Stripe and the fake Discord as their own processes
(so their memory and CPU are not counted as ours), then runs two child processes against a
fresh SQLite file database (tables from the models, as in ``bench/settings.py``):

- ``seed``: N active subscriptions in the fake Stripe and a guild of 2N members in the fake
  Discord (bulk control endpoints), N members in the database (``bulk_create``) with 1% drift
  (members entitled to Lord who hold no role in Discord);
- ``measure``: one report-only ``reconcile()`` over real HTTP, timed per phase from the progress
  callback, with the process's peak RSS before and after.

Report-only is what is timed: fixes are paced by Discord's role-write limits (the fake
enforces 10/s), which measures the fake's pacing, not our code. Results go to the
"Reconciliation" section of ``docs/PERFORMANCE.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.docs import DOCS, cpu_model, replace_section
from bench.processes import free_port, peak_rss_mb

ROOT = Path(__file__).resolve().parent.parent
DISCORD_START_ID = 800000000000000001
DRIFT_SHARE = 0.01
TARGET_10K_SECONDS = 20.0
TARGET_SCALING = 12.0
TARGET_PEAK_MB = 300.0


# --- driver ----------------------------------------------------------------------------------


def _wait_for(url: str, timeout: float = 20.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


def _child(mode: str, size: int, env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.reconcile", "--child", mode, "--sizes", str(size)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_size(size: int) -> dict[str, Any]:
    stripe_port, discord_port = free_port(), free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    fakes = [
        subprocess.Popen(
            [sys.executable, "-m", "fakes.stripe", "--port", str(stripe_port)], cwd=ROOT, **quiet
        ),
        subprocess.Popen(
            [sys.executable, "-m", "fakes.discord", "--port", str(discord_port)], cwd=ROOT, **quiet
        ),
    ]
    database = Path(f"/tmp/bench-reconcile-{size}.sqlite3")
    database.unlink(missing_ok=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DJANGO_ENV": "development",
        "DATABASE_URL": f"sqlite:///{database}",
        "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        "DISCORD_API_BASE": f"http://127.0.0.1:{discord_port}/api/v10",
        "ADMIN_EMAIL": "ops@example.com",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    try:
        _wait_for(f"http://127.0.0.1:{stripe_port}/_control/health")
        _wait_for(f"http://127.0.0.1:{discord_port}/_control/state?member_limit=0")
        seeded = _child("seed", size, env)
        measured = _child("measure", size, env)
    finally:
        for process in fakes:
            process.terminate()
        for process in fakes:
            process.wait(timeout=10)
        database.unlink(missing_ok=True)
    return {"size": size, **seeded, **measured}


# --- children (Django) -----------------------------------------------------------------------


def _django() -> None:
    import django

    django.setup()


def child_seed(size: int) -> dict[str, Any]:
    import requests

    _django()
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone
    from djstripe.models import Customer, Subscription

    from members.models import Member, User

    started = time.monotonic()
    call_command("migrate", run_syncdb=True, verbosity=0)

    seeded = requests.post(
        f"{settings.STRIPE_API_BASE}/_control/seed",
        json={"count": size, "price": settings.STRIPE_INDIVIDUAL_PRICE_ID, "return_ids": True},
        timeout=600,
    ).json()
    sub_ids: list[str] = seeded["subscription_ids"]

    discord_control = settings.DISCORD_API_BASE.rsplit("/api/", 1)[0] + "/_control"
    drifted = math.ceil(size * DRIFT_SHARE)
    lord = settings.DISCORD_ROLE_IDS["lord"]
    for count, roles, start in (
        (size - drifted, [lord], DISCORD_START_ID),  # members holding their role
        (drifted, [], DISCORD_START_ID + size - drifted),  # members missing it (drift)
        (size, [], DISCORD_START_ID + size),  # people in the guild who never paid
    ):
        response = requests.post(
            f"{discord_control}/seed_members",
            json={"count": count, "role_ids": roles, "start_id": start},
            timeout=600,
        )
        response.raise_for_status()

    now = timezone.now()
    batch = 5000
    for offset in range(0, size, batch):
        ids = sub_ids[offset : offset + batch]
        customers = Customer.objects.bulk_create(
            Customer(id=f"cus_bench_{offset + n}", stripe_data={}) for n in range(len(ids))
        )
        Subscription.objects.bulk_create(
            Subscription(id=sid, customer=c, stripe_data={"id": sid, "status": "active"})
            for sid, c in zip(ids, customers, strict=True)
        )
        users = User.objects.bulk_create(
            User(email=f"member{offset + n}@bench.test", password="!") for n in range(len(ids))
        )
        Member.objects.bulk_create(
            Member(
                user=user,
                subscription_id=sid,
                discord_id=str(DISCORD_START_ID + offset + n),
                discord_username=f"member{offset + n}",
                linked_at=now,
                in_guild=True,
                introduced_at=now,
                paid_at=now,
            )
            for n, (user, sid) in enumerate(zip(users, ids, strict=True))
        )
    return {"seed_seconds": round(time.monotonic() - started, 1), "drifted": drifted}


def child_measure(size: int) -> dict[str, Any]:
    _django()
    # Warm the imports and connections a worker would already have.
    from django.db import connection

    from gateway.reconciliation import reconcile

    connection.ensure_connection()
    baseline = peak_rss_mb()
    marks: list[tuple[str, float]] = []

    def progress(phase: str, done: int) -> None:
        marks.append((phase, time.monotonic()))

    started = time.monotonic()
    run = reconcile(fix=False, dry_run=False, trigger="benchmark", progress=progress)
    wall = time.monotonic() - started
    phases: dict[str, float] = {}
    last = started
    for phase, _ in marks:
        at = max(t for p, t in marks if p == phase)
        if phase not in phases:
            phases[phase] = round(at - last, 2)
            last = at
    phases["diff and store"] = round(started + wall - last, 2)
    counts = run.counts
    minimum = math.ceil(counts["subscriptions"] / 100) + math.ceil(counts["guild_members"] / 1000)
    return {
        "status": run.status,
        "wall_seconds": round(wall, 2),
        "phases": phases,
        "subscriptions": counts["subscriptions"],
        "guild_members": counts["guild_members"],
        "members": counts["members"],
        "findings": counts["findings"],
        "api_calls": counts["api_calls"],
        "api_minimum": minimum,
        "rss_baseline_mb": round(baseline, 1),
        "rss_peak_mb": round(peak_rss_mb(), 1),
    }


# --- report ----------------------------------------------------------------------------------


def render(results: list[dict[str, Any]], command: str, measured: datetime | None = None) -> str:
    rows = [
        "| members | guild members | subscriptions | drift found | wall time | "
        "Stripe + Discord phases | API calls (minimum) | peak RSS (baseline) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        phases = r["phases"]
        rows.append(
            f"| {r['members']:,} | {r['guild_members']:,} | {r['subscriptions']:,} | "
            f"{r['findings']:,} | {r['wall_seconds']:.1f} s | "
            f"{phases.get('stripe', 0):.1f} s + {phases.get('discord', 0):.1f} s | "
            f"{r['api_calls']:,} ({r['api_minimum']:,}) | "
            f"{r['rss_peak_mb']:.0f} MB ({r['rss_baseline_mb']:.0f} MB) |"
        )
    verdicts = []
    by_size = {r["size"]: r for r in results}
    calls_ok = all(r["api_calls"] == r["api_minimum"] for r in results)
    verdicts.append(f"- API calls equal the minimum: {'yes' if calls_ok else 'NO'}.")
    if 10000 in by_size:
        ten = by_size[10000]["wall_seconds"]
        verdict = "met" if ten < TARGET_10K_SECONDS else "MISSED"
        verdicts.append(
            f"- 10,000 members under {TARGET_10K_SECONDS:.0f} s: {verdict} ({ten:.1f} s)."
        )
        if 100000 in by_size:
            ratio = by_size[100000]["wall_seconds"] / ten
            verdict = "met" if ratio <= TARGET_SCALING else "MISSED"
            verdicts.append(
                f"- 100,000 within {TARGET_SCALING:.0f}× the 10,000 time: {verdict} ({ratio:.1f}×)."
            )
    if 100000 in by_size:
        peak = by_size[100000]["rss_peak_mb"]
        verdict = "met" if peak < TARGET_PEAK_MB else "MISSED"
        verdicts.append(
            f"- Peak memory under {TARGET_PEAK_MB:.0f} MB at 100,000: {verdict} ({peak:.0f} MB)."
        )
    phase_lines = [
        f"- {r['members']:,} members: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in r["phases"].items())
        for r in results
    ]
    when = (measured or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"Measured {when} on {platform.node()} ({cpu_model()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}), with `{command}`.",
            "",
            "Report-only run of `gateway.reconciliation.reconcile()` against the fake Stripe and "
            "the fake Discord, each in its own process on loopback, over real HTTP; SQLite file "
            "database (tables from the models). The guild has twice as many members as there "
            "are paying members; 1% of the members lack their role (the drift found). Peak RSS "
            "is the reconciling process's high-water mark (`getrusage`), baseline is the same "
            "process after Django start-up.",
            "",
            *rows,
            "",
            *verdicts,
            "",
            "Where the time goes (from the run's progress callback):",
            "",
            *phase_lines,
            "",
            "The Stripe phase is one sequential page after another, so it is bound by the "
            "round trip per page (about 40 ms against the fake); Stripe's own pages answer "
            "slower, so expect several minutes at 100,000 there — still one call per 100 "
            "subscriptions, well inside the 25 requests/s test-mode limit. Turning pages into "
            "stripe-python objects cost 330 ms per page here (ten times the round trip), which "
            "is why the pages are read with `StripeClient.raw_request` as plain JSON.",
            "",
            "API calls: ⌈subscriptions / 100⌉ Stripe list pages plus ⌈guild members / 1000⌉ "
            "Discord member pages, nothing per member. A fixing run adds, per drifted member, the "
            "sync path's one re-read of that member and one write per role change; those writes "
            "are paced by Discord's role-write limit (the fake enforces 10/s), so fixing 1% drift "
            "of 100,000 members takes about 100 s more of waiting on Discord, not of our work.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--no-write", action="store_true", help="print only; leave the docs")
    parser.add_argument("--child", choices=["seed", "measure"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--render", metavar="LOG", help="rewrite the docs from the JSON lines of an earlier run"
    )
    args = parser.parse_args()
    if args.child:
        run = child_seed if args.child == "seed" else child_measure
        print(json.dumps(run(args.sizes[0])))
        return
    results = []
    measured = None
    if args.render:
        measured = datetime.fromtimestamp(Path(args.render).stat().st_mtime, UTC)
        lines = Path(args.render).read_text().splitlines()
        results = [json.loads(line) for line in lines if line.startswith('{"size"')]
    for size in [] if args.render else args.sizes:
        result = run_size(size)
        print(json.dumps(result), flush=True)
        results.append(result)
    command = "python -m bench.reconcile" + (
        "" if args.sizes == [10000, 100000] else " --sizes " + " ".join(map(str, args.sizes))
    )
    text = render(results, command, measured)
    print(text)
    if not args.no_write:
        replace_section(DOCS / "PERFORMANCE.md", "Reconciliation", text, title="Performance")


if __name__ == "__main__":
    main()
