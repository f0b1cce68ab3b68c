"""Every command, admin page and path the operations docs name exists in the code."""

from __future__ import annotations

import re

import pytest
from django.core.management import get_commands
from django.urls import NoReverseMatch, Resolver404, resolve, reverse

from billing.handlers import HANDLERS
from tests.processes import ROOT

DOCS = ["RUNBOOK.md", "ROLLBACK.md", "DEPLOYMENT.md", "ALERTING.md"]
# Commands the runbook must offer (SPEC §3 and the brief), whichever doc names them.
REQUIRED_COMMANDS = {
    "reconcile",
    "replay_stripe_events",
    "billing_tick",
    "discord_selfcheck",
    "setup_schedules",
    "runbot",
    "qcluster",
    "sandbox",
}


def text(name: str) -> str:
    return (ROOT / "docs" / name).read_text()


def commands_named(body: str) -> set[str]:
    return set(re.findall(r"manage\.py ([a-z_]+)", body))


def admin_pages_named(body: str) -> set[str]:
    return set(re.findall(r"`(admin:[a-z_]+)`", body)) | set(
        re.findall(r"`(admin_dashboard)`", body)
    )


def paths_named(body: str) -> set[str]:
    return {p for p in re.findall(r"`(/[a-z_/]*)`", body) if not p.startswith(("/srv", "/etc"))}


@pytest.mark.parametrize("doc", DOCS)
def test_every_management_command_named_exists(doc):
    named = commands_named(text(doc))
    assert named, f"{doc} names no command"
    assert sorted(named - set(get_commands())) == []


def test_the_runbook_covers_every_operator_command():
    named = set().union(*(commands_named(text(doc)) for doc in DOCS))
    assert sorted(REQUIRED_COMMANDS - named) == []


@pytest.mark.parametrize("doc", ["RUNBOOK.md", "ROLLBACK.md", "DEPLOYMENT.md"])
def test_every_admin_page_named_exists(doc):
    pages = admin_pages_named(text(doc))
    assert pages
    missing = []
    for name in sorted(pages):
        try:
            reverse(name)
        except NoReverseMatch:
            missing.append(name)
    assert missing == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_named_resolves(doc):
    unresolved = []
    for path in sorted(paths_named(text(doc))):
        try:
            resolve(path)
        except Resolver404:
            unresolved.append(path)
    assert unresolved == []


def test_runbook_has_every_scenario():
    headings = re.findall(r"^## \d+\. (.+)$", text("RUNBOOK.md"), flags=re.M)
    wanted = [
        "App won't start",
        "Bot offline",
        "Stripe webhooks failing",
        "Email failing",
        "Database down",
        "Reconciliation not running",
        "High memory",
        "Worker backlog",
    ]
    for scenario in wanted:
        assert any(h.startswith(scenario) for h in headings), scenario
    for section in re.split(r"^## ", text("RUNBOOK.md"), flags=re.M)[1:]:
        if section[0].isdigit():
            assert "**Confirm:**" in section and "**Recover" in section, section.splitlines()[0]


def test_deployment_subscribes_exactly_the_handled_stripe_events():
    setup = text("DEPLOYMENT.md").split("## First-time setup")[1].split("## ")[0]
    step = setup.split("**Stripe:**")[1].split("**Discord:**")[0]
    listed = set(re.findall(r"`([a-z_]+\.[a-z_.]+)`", step))
    assert listed == set(HANDLERS)


def test_rollback_replays_stripe_events_since_the_restore():
    body = text("ROLLBACK.md")
    assert "manage.py replay_stripe_events --since" in body
    assert "manage.py reconcile --fix" in body
