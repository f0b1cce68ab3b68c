"""Drill: a backup restores (docs/BACKUP.md).

A production-configured gateway (processes from the systemd units, behind the Caddy site file,
against the fake Stripe and fake Discord) gets real data through its own pages and webhooks:
two individual members who paid and linked Discord, one of whose renewal then fails (a
payment-failure episode and its messages), and a company owner with a team. The database is
dumped with ``pg_dump -Fc``, dropped, restored with ``pg_restore`` into a new database, and the
gateway started on the restored one: ``/health/ready`` answers 200, ``reconcile`` finds no
drift against Stripe and Discord, and no message is sent a second time — not by the worker's
outbox delivery, and not when Stripe delivers every event again (the restored inbox and outbox
remember). Rows, dump size and restore time go to docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from bench.reliability import record
from fakes.discord.seed import ARTHUR_ID
from tests.drills.production import (
    SERVER,
    Browser,
    counts,
    drop_database,
    messages_sent,
    pending_notifications,
    populate,
    production,
    unapplied_events,
    wait_ready,
)
from tests.processes import ROOT, manage, wait_until

pytestmark = pytest.mark.slow


def test_dump_drop_restore_and_nothing_sent_twice(tmp_path):
    dump = tmp_path / "gateway.dump"
    restored_url = None
    with production(tmp_path, "gw_backup") as deployment:
        database_url, mail = deployment.database_url, deployment.mail
        stripe, discord = deployment.stripe, deployment.discord
        try:
            env = {
                **deployment.env,
                # Tables straight from the models: what is drilled is the dump, not migrations
                # (test_deployment_docs.py runs those).
                "DJANGO_SETTINGS_MODULE": "tests.gateway.process_settings",
            }
            done = manage(env, "migrate", "--run-syncdb", "--noinput")
            assert done.returncode == 0, done.stderr[-3000:]
            # What the data migration sells on a fresh deployment: the imported catalogue.
            done = manage(
                env, "shell", "-c", "from tests.personas import plan_catalogue; plan_catalogue()"
            )
            assert done.returncode == 0, done.stderr[-3000:]
            # Production serves hashed static files: the release step a host runs once.
            done = manage(env, "collectstatic", "--noinput")
            assert done.returncode == 0, done.stderr[-3000:]
            deployment.start(env, ROOT, "before")
            browser = Browser(deployment.proxy.url, deployment.proxy.cert)
            wait_ready(browser)

            populate(browser, discord, stripe, mail, database_url)
            deployment.stop()
            before_rows = counts(database_url)
            before_messages = messages_sent(mail, discord)

            # docs/BACKUP.md: dump, then restore into a new database.
            subprocess.run(
                ["pg_dump", "-Fc", "--no-owner", "--no-privileges", "-f", str(dump), database_url],
                check=True,
                capture_output=True,
                timeout=120,
            )
            drop_database(database_url)
            restored_url = f"{database_url}_restored"
            started = time.monotonic()
            subprocess.run(
                ["createdb", "-h", "127.0.0.1", "-U", "postgres", restored_url.rsplit("/", 1)[1]],
                check=True,
                capture_output=True,
                timeout=60,
            )
            subprocess.run(
                ["pg_restore", "--no-owner", "-j", "2", "-d", restored_url, str(dump)],
                check=True,
                capture_output=True,
                timeout=300,
            )
            restore_seconds = time.monotonic() - started
            after_rows = counts(restored_url)

            restored_env = {**env, "DATABASE_URL": restored_url}
            done = manage(restored_env, "migrate", "--run-syncdb", "--noinput")
            assert done.returncode == 0, done.stderr[-3000:]
            deployment.start(restored_env, ROOT, "after")
            ready = wait_ready(browser)
            reconcile = manage(restored_env, "reconcile", "--json")
            report = json.loads(reconcile.stdout.strip().splitlines()[-1])
            # Stripe sends everything again (as after a restore from an older point).
            with stripe.state.lock:
                events = list(stripe.state.events.values())
            stripe.webhooks.publish(events)
            replayed = len(events)
            wait_until(
                lambda: all(d["status"] == "succeeded" for d in stripe.webhooks.deliveries()),
                60,
                "the replayed events to be acknowledged",
            )
            # Every stored event applied and every message it asked for sent: a duplicate
            # would have gone out by then.
            wait_until(
                lambda: (
                    unapplied_events(restored_url) == 0 and pending_notifications(restored_url) == 0
                ),
                60,
                "the worker to apply the replayed events and empty the outbox",
            )
            after_messages = messages_sent(mail, discord)
            still_squire = [
                user
                for user in (ARTHUR_ID,)
                if discord.seed.role_id("squire") in discord.state.members[user].roles
            ]
        finally:
            deployment.stop()
            if restored_url is not None:
                drop_database(restored_url)

    rows = sum(before_rows.values())
    per_table = ", ".join(f"{table} {count}" for table, count in before_rows.items())
    passed = (
        after_rows == before_rows
        and reconcile.returncode == 0
        and report["status"] == "clean"
        and after_messages == before_messages
    )
    record(
        "backup_restore",
        title="Backup and restore: pg_dump -Fc, drop, pg_restore, start on the restored database",
        passed=passed,
        in_flight=rows,
        lost=rows - sum(after_rows.values()),
        unit="rows",
        details=(
            f"{rows} rows in the state tables ({per_table}); "
            f"dump {dump.stat().st_size / 1024:.0f} KiB, restore {restore_seconds:.1f} s "
            f"(createdb + pg_restore -j 2); /health/ready {ready and 200}; reconcile "
            f"{report['status']}; {replayed} events delivered again; messages sent "
            f"{before_messages} before, {after_messages - before_messages} more after the restore"
        ),
    )
    assert after_rows == before_rows
    assert report["status"] == "clean", reconcile.stdout[-3000:]
    assert reconcile.returncode == 0
    assert after_messages == before_messages, "a message was sent twice after the restore"
    assert still_squire == [ARTHUR_ID]
    assert SERVER in restored_url
