"""Member export benchmark: how long the staff CSV export of N members takes, and its memory.

    .venv/bin/python -m bench.exports --members 100000 [--no-write]

A throwaway PostgreSQL database on the machine's server (created and dropped here; tables
from the models, ``bench/settings.py``) gets N members in a ``seed`` child process
(``bulk_create``): one in ten holds a seat of a company plan (teams of one owner and four team
seats), the rest are individual subscribers with their subscription mirrored in dj-stripe's
table; every member is linked to Discord, nine in ten are introduced, one subscription in
twenty is ``past_due`` with an open failure episode. Each export then runs in a fresh
``measure`` child: a superuser posts "Export selected as CSV" with "Select all" to the admin
changelist through Django's test client and reads the streamed body to the end. The child
reports rows, seconds to the first rows and to the last, bytes, and its peak RSS
(``getrusage``) against its baseline after start-up and login.

Four exports: the team seats only (a filter, about a tenth of the rows), every member, every
member again with PostgreSQL's JIT compilation off for the exporting connection (``PGOPTIONS``),
every team. Memory is flat when the peak for every member is no higher than for a tenth of
them.
Results go to the "Member export" section of ``docs/PERFORMANCE.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.docs import DOCS, ROOT, cpu_model, replace_section
from bench.processes import child_env, peak_rss_mb, sync_tables

SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
HEADING = "Member export"
BATCH = 5000
SEATS_PER_TEAM = 5  # one owner seat, four team seats
SEAT_SHARE = 10  # one member in ten holds a seat
PAST_DUE_EVERY = 20
TARGET_SECONDS = 30.0  # gunicorn's worker timeout (gunicorn.conf.py): a sync worker is killed
RSS_GROWTH_TOLERANCE_MB = 10.0

# (label, changelist, action, query string, PostgreSQL options of the exporting process)
EXPORTS = [
    ("members, team seats only", "members_member", "export_members", "?seat_tier__exact=team", ""),
    ("members, all", "members_member", "export_members", "", ""),
    ("members, all, JIT off", "members_member", "export_members", "", "-c jit=off"),
    ("teams, all", "members_team", "export_teams", "", ""),
]


# --- children (Django) -----------------------------------------------------------------------


def child_seed(members: int) -> dict[str, Any]:
    import django

    django.setup()
    from django.db import connection
    from django.utils import timezone
    from djstripe.models import Customer, Subscription

    from billing.models import FailureEpisode
    from members.models import Member, SeatTier, Team, User

    started = time.monotonic()
    now = timezone.now()
    seats = members // SEAT_SHARE // SEATS_PER_TEAM * SEATS_PER_TEAM
    teams = Team.objects.bulk_create(
        Team(name=f"Company {n}", subscription_id=f"sub_team_{n}", owner_seats=1, team_seats=4)
        for n in range(seats // SEATS_PER_TEAM)
    )
    sub_ids = [team.subscription_id for team in teams]
    sub_ids += [f"sub_member_{n}" for n in range(seats, members)]
    for offset in range(0, len(sub_ids), BATCH):
        ids = sub_ids[offset : offset + BATCH]
        customers = Customer.objects.bulk_create(
            Customer(id=f"cus_{sid}", stripe_data={}) for sid in ids
        )
        Subscription.objects.bulk_create(
            Subscription(id=sid, customer=customer, stripe_data={"id": sid, "status": status})
            for sid, customer, status in (
                (sid, c, "past_due" if (offset + i) % PAST_DUE_EVERY == 0 else "active")
                for i, (sid, c) in enumerate(zip(ids, customers, strict=True))
            )
        )
    for offset in range(0, members, BATCH):
        numbers = range(offset, min(offset + BATCH, members))
        users = User.objects.bulk_create(
            User(email=f"member{n}@bench.test", password="!", date_joined=now) for n in numbers
        )
        batch = []
        for n, user in zip(numbers, users, strict=True):
            seat: dict[str, Any] = {"subscription_id": f"sub_member_{n}"}
            if n < seats:
                tier = SeatTier.OWNER if n % SEATS_PER_TEAM == 0 else SeatTier.TEAM
                seat = {"team": teams[n // SEATS_PER_TEAM], "seat_tier": tier}
            batch.append(
                Member(
                    user=user,
                    discord_id=str(800000000000000000 + n),
                    discord_username=f"member{n}",
                    linked_at=now,
                    in_guild=True,
                    introduced_at=now if n % 10 else None,
                    paid_at=now,
                    **seat,
                )
            )
        Member.objects.bulk_create(batch)
    owners = Member.objects.filter(seat_tier=SeatTier.OWNER).values_list("team_id", "pk")
    Team.objects.bulk_update(
        [Team(pk=team_id, primary_owner_id=pk) for team_id, pk in owners],
        ["primary_owner"],
        batch_size=BATCH,
    )
    FailureEpisode.objects.bulk_create(
        FailureEpisode(
            subscription_id=sid,
            opened_at=now,
            grace_ends_at=now,
            debtor_at=now,
            removal_due_at=now,
        )
        for i, sid in enumerate(sub_ids)
        if i % PAST_DUE_EVERY == 0
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum would have by now: the planner needs the sizes
    return {"members": members, "teams": len(teams), "seed_seconds": time.monotonic() - started}


def child_measure(changelist: str, action: str, query: str) -> dict[str, Any]:
    import django

    django.setup()
    from django.test import Client
    from django.urls import reverse

    from members.models import Member, Team, User

    staff = User.objects.create(email=f"{uuid.uuid4().hex}@bench.test", is_staff=True)
    staff.is_superuser = True
    staff.save()
    client = Client()
    client.force_login(staff)
    model = Member if changelist == "members_member" else Team
    first = model.objects.order_by("pk").values_list("pk", flat=True).first()
    data = {"action": action, "index": "0", "_selected_action": [first], "select_across": "1"}
    baseline = peak_rss_mb()

    started = time.monotonic()
    response = client.post(reverse(f"admin:{changelist}_changelist") + query, data)
    if response.status_code != 200:
        raise RuntimeError(f"export answered {response.status_code}")
    first_rows = None  # the header comes before the query runs; the first rows after it
    lines = size = 0
    for piece in response.streaming_content:
        lines += piece.count(b"\n")
        size += len(piece)
        if first_rows is None and lines > 1:
            first_rows = time.monotonic() - started
    response.close()
    return {
        "rows": lines - 1,  # the header
        "seconds": time.monotonic() - started,
        "first_rows_seconds": first_rows,
        "megabytes": size / 1e6,
        "rss_baseline_mb": baseline,
        "rss_peak_mb": peak_rss_mb(),
    }


# --- driver ----------------------------------------------------------------------------------


def _child(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.exports", "--child", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode:
        raise RuntimeError(f"{args[0]} child failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(members: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    database = f"gateway_bench_{uuid.uuid4().hex[:12]}"
    database_url = SERVER_URL.rsplit("/", 1)[0] + f"/{database}"
    with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        env = child_env(
            drop=("SENTRY",),
            DJANGO_ENV="development",
            DJANGO_SETTINGS_MODULE="bench.settings",
            DEBUG="false",  # DEBUG keeps every query in memory
            ALLOWED_HOSTS="testserver",
            DATABASE_URL=database_url,
            LOG_LEVEL="WARNING",
            PYTHONPATH=str(ROOT),
        )
        sync_tables(env)
        seeded = _child(env, "seed", str(members))
        results = []
        for label, changelist, action, query, options in EXPORTS:
            measure_env = {**env, "PGOPTIONS": options} if options else env
            result = {"export": label, **_child(measure_env, "measure", changelist, action, query)}
            print(json.dumps(result), flush=True)
            results.append(result)
        return seeded, results
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# --- report ----------------------------------------------------------------------------------


def render(seeded: dict[str, Any], results: list[dict[str, Any]], command: str) -> str:
    rows = [
        "| export | rows | first rows | whole file | size | peak RSS (baseline) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r['export']} | {r['rows']:,} | {r['first_rows_seconds']:.2f} s | "
            f"{r['seconds']:.1f} s | {r['megabytes']:.1f} MB | "
            f"{r['rss_peak_mb']:.0f} MB ({r['rss_baseline_mb']:.0f} MB) |"
        )
    by_label = {r["export"]: r for r in results}
    part, everyone = by_label["members, team seats only"], by_label["members, all"]
    jit = everyone["seconds"] - by_label["members, all, JIT off"]["seconds"]
    fast = everyone["seconds"] < TARGET_SECONDS
    growth = (everyone["rss_peak_mb"] - everyone["rss_baseline_mb"]) - (
        part["rss_peak_mb"] - part["rss_baseline_mb"]
    )
    flat = growth <= RSS_GROWTH_TOLERANCE_MB
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"Measured {when} on {platform.node()} ({cpu_model()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}), with `{command}`.",
            "",
            f"{seeded['members']:,} members ({seeded['teams']:,} company plans of one owner and "
            "four team seats, the rest individual subscribers; one subscription in twenty "
            "`past_due` with an open failure episode) in a throwaway PostgreSQL database on "
            'loopback. Each export is the admin action "Export selected as CSV" with '
            '"Select all", posted by a superuser through Django\'s test client in a fresh '
            "process that reads the streamed body to the end; peak RSS is that process's "
            "high-water mark (`getrusage`), baseline the same process after start-up and login.",
            "",
            *rows,
            "",
            f"- Every member within gunicorn's {TARGET_SECONDS:.0f} s worker timeout: "
            f"{'met' if fast else 'MISSED'} ({everyone['seconds']:.1f} s).",
            f"- Memory flat (every member grows the process no more than a tenth of them, "
            f"within {RSS_GROWTH_TOLERANCE_MB:.0f} MB): {'met' if flat else 'MISSED'} "
            f"({growth:+.0f} MB).",
            "",
            "One query reads the rows (a server-side cursor, 2,000 rows a fetch) with the "
            "entitlement annotation; each 2,000 rows become one piece of the response. Outside "
            "a transaction Django declares that cursor `WITH HOLD`, so PostgreSQL runs the "
            "whole query before the first fetch (the first rows column) and keeps the result "
            "on the database server, not in the web process. The "
            "sync workers' timeout is the real bound: a worker still streaming after 30 s is "
            "killed, so the export must stay well inside it, including the time the client "
            "and the proxy take to read it.",
            "",
            "PostgreSQL compiles a query this large with JIT (on by default; its estimate "
            f"passes `jit_above_cost`): {jit:.1f} s of the {everyone['seconds']:.1f} s here "
            "(the JIT-off row is the same export with `PGOPTIONS='-c jit=off'`). `jit = off` in "
            "`postgresql.conf` is the knob if exports or the console's state filter feel slow.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=100000)
    parser.add_argument("--no-write", action="store_true", help="print, do not touch the docs")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, *rest = args.child
        result = child_seed(int(rest[0])) if mode == "seed" else child_measure(*rest)
        print(json.dumps(result))
        return 0
    seeded, results = run(args.members)
    command = "python -m bench.exports" + (
        "" if args.members == 100000 else f" --members {args.members}"
    )
    text = render(seeded, results, command)
    print(text)
    if not args.no_write:
        replace_section(DOCS / "PERFORMANCE.md", HEADING, text, title="Performance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
