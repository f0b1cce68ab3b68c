"""The systemd units stop each process gracefully, and the documented timeouts are the real ones."""

from __future__ import annotations

import pytest

from bench import timeouts
from bench.docs import ROOT

SERVICES = ("gateway-web.service", "gateway-worker.service", "gateway-bot.service")


@pytest.mark.parametrize("name", SERVICES)
def test_unit_signals_only_the_main_process_and_restarts_on_failure(name):
    unit = timeouts.read_unit(name)
    # mixed: SIGTERM to the main process, which drains its children; control-group would
    # SIGTERM qcluster's workers mid-task and leave the main process hanging.
    assert unit["KillMode"] == "mixed"
    assert unit["KillSignal"] == "SIGTERM"
    assert unit["Restart"] == "on-failure"
    assert unit["EnvironmentFile"] == "/etc/gateway/env"
    assert unit["User"] == "gateway" and unit["Group"] == "gateway"
    for option in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert unit[option] == "yes"
    assert unit["ProtectSystem"] == "strict"


def test_units_run_the_procfile_commands():
    procfile = dict(
        line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    for process, name in zip(("web", "worker", "bot"), SERVICES, strict=True):
        exec_start = timeouts.read_unit(name)["ExecStart"]
        command = procfile[process].split()
        assert exec_start.split()[1 : len(command)] == command[1:], (process, exec_start)
        assert exec_start.split()[0].endswith("/" + command[0].split("/")[-1])


def test_every_stop_timeout_exceeds_the_graceful_window_which_exceeds_the_work():
    chain = timeouts.chain()
    assert [link.unit for link in chain] == list(SERVICES)
    for link in chain:
        assert link.holds, (
            f"{link.unit}: TimeoutStopSec {link.stop_timeout} > graceful {link.graceful} "
            f"> work {link.work} does not hold"
        )


def test_timeouts_table_in_deployment_doc_matches_the_files():
    expected = timeouts.table(timeouts.chain())
    text = timeouts.DEPLOYMENT.read_text()
    assert f"## {timeouts.HEADING}\n\n{expected}\n" in text, (
        "docs/DEPLOYMENT.md is stale: run `python -m bench.timeouts`"
    )


def test_reverse_proxy_limits_agree_with_gunicorn_and_django():
    limits = timeouts.proxy_limits()
    assert len(limits) == 4
    for limit in limits:
        assert limit.holds, f"Caddyfile {limit.name} {limit.proxy:g} {limit.rule} {limit.other:g}"


def test_reverse_proxy_replaces_the_forwarded_headers_and_terminates_tls():
    text = timeouts.CADDYFILE.read_text()
    # Overwritten, not appended: the application trusts exactly one proxy's word.
    for header, value in (
        ("X-Forwarded-For", "{remote_host}"),
        ("X-Forwarded-Proto", "{scheme}"),
        ("X-Forwarded-Host", "{hostport}"),
    ):
        assert f"header_up {header} {value}" in text
    assert timeouts.caddy_directive("tls") == "{$GATEWAY_TLS}"
