"""The shutdown timeout chain, read from the files that set it, and its table in the docs.

For each process the service manager's stop timeout must exceed the process's own graceful
window, which must exceed the longest unit of work it lets finish; otherwise systemd
SIGKILLs work in flight. The values come from ``deploy/systemd/*.service``,
``gunicorn.conf.py`` and Django's settings (``Q_CLUSTER``, ``DISCORD_TIMEOUT_SECONDS``,
``STRIPE_TIMEOUT_SECONDS``); the reverse proxy's limits come from ``deploy/caddy/Caddyfile``
and must agree with gunicorn's and Django's. So the tables in ``docs/DEPLOYMENT.md`` cannot
drift from them:
``python -m bench.timeouts`` rewrites them, ``tests/drills/test_deploy_units.py`` checks them.
"""

from __future__ import annotations

import configparser
import runpy
import shlex
from dataclasses import dataclass

from bench.docs import DOCS, ROOT, replace_section

UNITS = ROOT / "deploy" / "systemd"
CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"
DEPLOYMENT = DOCS / "DEPLOYMENT.md"
HEADING = "Timeouts"


@dataclass(frozen=True)
class Link:
    process: str
    unit: str
    stop_timeout: float  # systemd TimeoutStopSec
    graceful: float  # the process's own window after SIGTERM
    graceful_source: str
    work: float  # the longest unit of work allowed to finish
    work_source: str

    @property
    def holds(self) -> bool:
        return self.stop_timeout > self.graceful > self.work


def read_unit(name: str) -> dict[str, str]:
    """The [Service] section of a unit (systemd syntax is close enough to INI for this)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read(UNITS / name)
    return dict(parser["Service"])


def _seconds(value: str) -> float:
    value = value.strip()
    if value.endswith("min"):
        return float(value[:-3]) * 60
    if value.endswith("s"):
        return float(value[:-1])
    return float(value)


def _option(command: str, flag: str, default: float) -> float:
    words = shlex.split(command)
    for index, word in enumerate(words):
        if word == flag:
            return float(words[index + 1])
        if word.startswith(flag + "="):
            return float(word.split("=", 1)[1])
    return default


@dataclass(frozen=True)
class ProxyLimit:
    name: str
    proxy: float  # the value in deploy/caddy/Caddyfile
    other: float  # what it must agree with
    rule: str  # "=", ">=" or "<"
    why: str

    @property
    def holds(self) -> bool:
        return {
            "=": self.proxy == self.other,
            ">=": self.proxy >= self.other,
            "<": self.proxy < self.other,
            "<=": self.proxy <= self.other,
        }[self.rule]


def caddy_directive(name: str) -> str:
    """The argument of the one ``name`` directive in the Caddyfile (comments ignored)."""
    found = [
        line.split("#", 1)[0].split()[1:]
        for line in CADDYFILE.read_text().splitlines()
        if line.split("#", 1)[0].split()[:1] == [name]
    ]
    if len(found) != 1 or len(found[0]) != 1:
        raise ValueError(f"{CADDYFILE.name}: expected one `{name} <value>`, found {found}")
    return found[0][0]


def proxy_limits() -> list[ProxyLimit]:
    """The reverse proxy's limits against gunicorn's and Django's (needs Django settings)."""
    from django.conf import settings

    gunicorn = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    return [
        ProxyLimit(
            "`response_header_timeout` (s)",
            _seconds(caddy_directive("response_header_timeout")),
            float(gunicorn["timeout"]),
            ">=",
            "gunicorn's worker `timeout`: the proxy waits for every request gunicorn lets run",
        ),
        ProxyLimit(
            "`read_body` (s)",
            _seconds(caddy_directive("read_body")),
            float(gunicorn["timeout"]),
            "<=",
            "gunicorn's worker `timeout`: a slow sender is cut before it can tie up a worker",
        ),
        ProxyLimit(
            "upstream `keepalive` (s)",
            _seconds(caddy_directive("keepalive")),
            float(gunicorn["keepalive"]),
            "<",
            "gunicorn's `keepalive`: the proxy closes an idle connection first, never sends "
            "on one gunicorn is closing",
        ),
        ProxyLimit(
            "`request_body max_size` (bytes)",
            float(caddy_directive("max_size")),
            float(settings.DATA_UPLOAD_MAX_MEMORY_SIZE),
            "=",
            "Django's `DATA_UPLOAD_MAX_MEMORY_SIZE`: larger bodies stop at the proxy",
        ),
    ]


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def chain() -> list[Link]:
    """Needs Django settings configured (pytest-django, or :func:`main`)."""
    from django.conf import settings

    from discordsync.management.commands.runbot import Command as Runbot

    gunicorn = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    web, worker, bot = (read_unit(f"gateway-{name}.service") for name in ("web", "worker", "bot"))
    parser = Runbot().create_parser("manage.py", "runbot")
    bot_default = parser.get_default("shutdown_timeout")
    return [
        Link(
            "web (gunicorn)",
            "gateway-web.service",
            _seconds(web["TimeoutStopSec"]),
            float(gunicorn["graceful_timeout"]),
            "`graceful_timeout` in gunicorn.conf.py",
            *_longest_page_call(),
        ),
        Link(
            "worker (qcluster)",
            "gateway-worker.service",
            _seconds(worker["TimeoutStopSec"]),
            float(settings.Q_CLUSTER["timeout"]),
            "`Q_TIMEOUT`: a task still running is killed after it",
            *_longest_task(),
        ),
        Link(
            "bot (runbot)",
            "gateway-bot.service",
            _seconds(bot["TimeoutStopSec"]),
            _option(bot["ExecStart"], "--shutdown-timeout", bot_default),
            "`runbot --shutdown-timeout` in the unit",
            float(settings.DISCORD_TIMEOUT_SECONDS),
            "one Discord call in a handler (`DISCORD_TIMEOUT_SECONDS`)",
        ),
    ]


def _longest_page_call() -> tuple[float, str]:
    """The longest outbound call a page may make, every attempt and backoff included: a Stripe
    call (checkout, portal, seat add) or a Discord call (adding the member at claim time)."""
    from django.conf import settings

    from discordsync.client import DiscordClient

    stripe_attempts = 1 + settings.STRIPE_MAX_NETWORK_RETRIES
    # stripe-python sleeps 0.5 s doubling up to 2 s between attempts.
    stripe_total = settings.STRIPE_TIMEOUT_SECONDS * stripe_attempts + sum(
        min(2.0, 0.5 * 2**n) for n in range(settings.STRIPE_MAX_NETWORK_RETRIES)
    )
    client = DiscordClient()
    discord_total = client.timeout * (1 + client.max_retries) + sum(
        client._backoff(n) for n in range(client.max_retries)
    )
    return max(
        (
            stripe_total,
            f"a Stripe call on a page, {stripe_attempts} attempts of "
            f"`STRIPE_TIMEOUT_SECONDS` plus backoff; the webhook ack makes none",
        ),
        (
            discord_total,
            f"a Discord call on a page, {1 + client.max_retries} attempts of "
            "`DISCORD_TIMEOUT_SECONDS` plus backoff",
        ),
    )


def _longest_task() -> tuple[float, str]:
    """The longest a task may run: the webhook drain's own budget, or a task enqueued with a
    longer per-task ``timeout`` (the reconciliation run)."""
    from billing.drain import DRAIN_BUDGET_SECONDS
    from gateway.reconciliation import RUN_TIMEOUT_SECONDS

    candidates = [
        (float(DRAIN_BUDGET_SECONDS), "`DRAIN_BUDGET_SECONDS` of the webhook drain task"),
        (float(RUN_TIMEOUT_SECONDS), "`RUN_TIMEOUT_SECONDS` of the reconciliation run task"),
    ]
    return max(candidates)


def _holds(holds: bool) -> str:
    return "yes" if holds else "NO"


def _markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """The lines of a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def table(links: list[Link]) -> str:
    from django.conf import settings

    rows = [
        "Generated by `python -m bench.timeouts` from the units in `deploy/systemd/`,",
        "`gunicorn.conf.py` and the settings; `tests/drills/test_deploy_units.py` fails when",
        "this table and those files disagree. Each row must read stop > graceful > work, or",
        "systemd SIGKILLs work that was allowed to run. All three units use `KillMode=mixed`:",
        "SIGTERM reaches only the main process (gunicorn's master, the qcluster Sentinel's",
        "parent, runbot), which stops its children itself; SIGKILL goes to the whole group only",
        "when `TimeoutStopSec` runs out.",
        "",
    ]
    rows += _markdown_table(
        ("Process", "Unit", "`TimeoutStopSec`", "Graceful window", "Longest work", "Holds"),
        [
            (
                link.process,
                f"`{link.unit}`",
                f"{link.stop_timeout:g} s",
                f"{link.graceful:g} s — {link.graceful_source}",
                f"{link.work:g} s — {link.work_source}",
                _holds(link.holds),
            )
            for link in links
        ],
    )
    q = settings.Q_CLUSTER
    rows += [
        "",
        f"django-q2 also needs `Q_TIMEOUT` ({q['timeout']} s) < `Q_RETRY` ({q['retry']} s): "
        "a task is presented again only after it can no longer be running (settings refuse to "
        "start otherwise). Outbound calls: Stripe "
        f"{settings.STRIPE_TIMEOUT_SECONDS:g} s per attempt with "
        f"{settings.STRIPE_MAX_NETWORK_RETRIES} retries, Discord "
        f"{settings.DISCORD_TIMEOUT_SECONDS:g} s per attempt, email "
        f"{settings.EMAIL_TIMEOUT} s.",
    ]
    rows += [
        "",
        "The reverse proxy (`deploy/caddy/Caddyfile`) against gunicorn and Django:",
        "",
    ]
    rows += _markdown_table(
        ("Proxy limit", "Value", "Rule", "Against", "Holds"),
        [
            (
                limit.name,
                _number(limit.proxy),
                limit.rule,
                f"{_number(limit.other)} — {limit.why}",
                _holds(limit.holds),
            )
            for limit in proxy_limits()
        ],
    )
    longest, source = _longest_task()
    if longest >= q["retry"]:
        rows.append(
            f"\n**Broken:** the longest task ({longest:g} s, {source}) outlives `Q_RETRY` "
            f"({q['retry']} s), so the ORM broker presents it again while it still runs, and "
            "no stop timeout lets it finish on SIGTERM."
        )
    return "\n".join(rows)


def write() -> None:
    replace_section(DEPLOYMENT, HEADING, table(chain()), title="Deployment")


def main() -> None:
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
    django.setup()
    write()


if __name__ == "__main__":
    main()
