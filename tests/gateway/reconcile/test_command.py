"""``manage.py reconcile``: exit codes, the JSON report, --member, and SIGTERM."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from gateway.reconciliation import LEASE_NAME
from ops.leases import lease_acquire
from ops.models import ReconciliationRun
from tests.gateway.reconcile.world import World


def _reconcile(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("reconcile", *args, stdout=out, stderr=err)
    return int(exit_info.value.code), out.getvalue(), err.getvalue()


@pytest.mark.django_db(transaction=True)
def test_exit_0_when_clean_with_a_readable_report(world: World):
    world.member("lancelot", holds=("lord",))

    code, out, _ = _reconcile()

    assert code == 0
    assert ": clean" in out and "no drift" in out
    assert "API calls 2" in out


@pytest.mark.django_db(transaction=True)
def test_exit_1_on_drift_and_json_lists_findings_and_fixes(world: World):
    member = world.member("gawain", holds=("squire",))

    code, out, _ = _reconcile("--fix", "--json")

    assert code == 1
    report = json.loads(out)
    assert report["status"] == "drift" and report["fix"] is True and report["dry_run"] is False
    assert [(f["kind"], f["member_id"]) for f in report["findings"]] == [("wrong_role", member.pk)]
    assert [(f["action"], f["ok"]) for f in report["fixes"]] == [("sync_member_roles", True)]
    assert report["counts"]["api_discord_writes"] == 2
    assert world.roles_of(member) == {"lord"}
    assert ReconciliationRun.objects.filter(pk=report["id"], status="drift").exists()


@pytest.mark.django_db(transaction=True)
def test_dry_run_prints_what_it_would_fix_and_stores_nothing(world: World):
    member = world.member("gaheris", holds=())

    code, out, _ = _reconcile("--fix", "--dry-run")

    assert code == 1
    assert "(dry run)" in out and "Would fix:" in out and "planned" in out
    assert world.roles_of(member) == set()
    assert not ReconciliationRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_member_option_checks_one_member(world: World):
    member = world.member("dinadan", holds=())
    world.member("lucan", holds=())

    code, out, _ = _reconcile("--member", str(member.pk), "--json")

    assert code == 1
    assert [f["member_id"] for f in json.loads(out)["findings"]] == [member.pk]


@pytest.mark.django_db(transaction=True)
def test_unknown_member_is_a_failure_with_a_clear_message(world: World):
    code, out, err = _reconcile("--member", "999999", "--json")

    assert code == 2
    assert "no member with id 999999" in err
    assert json.loads(out) == {"status": "failed", "error": "no member with id 999999"}


@pytest.mark.django_db(transaction=True)
def test_exit_2_while_another_run_holds_the_lease(world: World):
    lease_acquire(
        name=LEASE_NAME, holder="other-host", ttl=timedelta(minutes=5), now=timezone.now()
    )

    code, _, err = _reconcile("--fix")

    assert code == 2
    assert "another reconciliation is running" in err


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_after_the_page_in_hand_and_marks_the_run_interrupted(world: World):
    member = world.member("brunor", holds=())
    world.discord.seed_members(3000)
    # One member page per second, so the run is still paging when the signal arrives.
    world.discord.set_rate_limit("guild_members_list", 1, 1.0)
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        code, _, err = _reconcile("--fix")
    finally:
        timer.cancel()

    assert code == 2
    assert "interrupted" in err
    run = ReconciliationRun.objects.get()
    assert run.status == ReconciliationRun.Status.FAILED
    assert run.error.startswith("interrupted")
    pages = world.discord.requests(path_prefix=f"/guilds/{world.discord.guild_id}/members")
    assert 1 <= len(pages) < 4  # stopped before the last page
    assert world.roles_of(member) == set()  # nothing fixed from a partial picture
    assert signal.getsignal(signal.SIGTERM) == before  # the command's handler is gone again
