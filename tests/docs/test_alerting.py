"""Every readiness check and log event named in docs/ALERTING.md exists in the code."""

from __future__ import annotations

import re

import ops.health  # noqa: F401  (registers the checks)
from ops.health import CHECKS as REGISTRY
from tests.processes import ROOT

SOURCES = ["gateway", "members", "billing", "discordsync", "ops"]


def alerting() -> str:
    return (ROOT / "docs" / "ALERTING.md").read_text()


def source() -> str:
    return "\n".join(path.read_text() for app in SOURCES for path in (ROOT / app).rglob("*.py"))


def test_every_readiness_check_named_is_registered():
    named = set(re.findall(r"`check:([a-z_]+)`", alerting()))
    assert {"database", "worker", "bot", "webhook_backlog"} <= named
    assert sorted(named - set(REGISTRY)) == []


def test_every_registered_readiness_check_has_an_alert():
    named = set(re.findall(r"`check:([a-z_]+)`", alerting()))
    assert sorted(set(REGISTRY) - named) == []


def test_every_log_event_named_is_emitted_somewhere():
    code = source()
    named = set(re.findall(r"`event:([a-z_]+)`", alerting()))
    assert len(named) >= 15
    missing = [event for event in sorted(named) if f'"{event}"' not in code]
    assert missing == []
