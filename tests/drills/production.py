"""The gateway as an operator runs it: production settings with secrets generated here, a
fresh PostgreSQL database, the processes started by the systemd units' own ``ExecStart``
lines, behind the project's Caddy site file, talking to the fake Stripe and fake Discord.
A member's journey is driven over HTTPS as a browser would: sign-up, Checkout on the fake's
hosted page, Discord linking through the fake's consent page, Squire in the fake guild.
"""

from __future__ import annotations

import configparser
import os
import re
import secrets
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlencode, urlsplit, urlunsplit

import psycopg
import requests

from fakes.discord.seed import ARTHUR_ID, GUINEVERE_ID
from fakes.discord.server import FakeDiscordServer
from fakes.stripe.server import FakeStripeServer
from tests.drills.caddy import CaddyProxy
from tests.drills.stack import Process
from tests.processes import ROOT, free_port, wait_for_port, wait_until

SERVER = "postgres://postgres@127.0.0.1:5432"
PASSWORD = "a long and unguessable passphrase 7"  # noqa: S105 - a test member's password


@contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the machine's PostgreSQL; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        drop_database(f"{SERVER}/{name}")


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def production_env(
    *,
    database_url: str,
    app_url: str,
    port: int,
    stripe: FakeStripeServer,
    discord: FakeDiscordServer,
    webhook_secret: str,
    mail: Path,
) -> dict[str, str]:
    """What /etc/gateway/env holds on a production host (docs/CONFIGURATION.md), with fresh
    secrets; only the Stripe and Discord addresses point at the fakes."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    }
    host = urlsplit(app_url).hostname or "127.0.0.1"
    return {
        **inherited,
        "DJANGO_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": host,
        "APP_URL": app_url,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "Q_WORKERS": "1",
        "TRUSTED_PROXY_COUNT": "1",
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        "STRIPE_SECRET_KEY": f"sk_test_{secrets.token_hex(16)}",
        "STRIPE_WEBHOOK_SECRET": webhook_secret,
        "STRIPE_API_BASE": stripe.url,
        **discord.settings(),
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(mail),
        "SENTRY_DSN": "",
        "PYTHONUNBUFFERED": "1",
    }


def unit_command(name: str, checkout: Path) -> list[str]:
    """The ``ExecStart`` of ``deploy/systemd/<name>`` for a checkout at ``checkout``."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read(ROOT / "deploy" / "systemd" / name)
    service = parser["Service"]
    assert service["WorkingDirectory"] == "/srv/gateway"
    return shlex.split(service["ExecStart"].replace("/srv/gateway", str(checkout)))


@dataclass
class Units:
    """gunicorn, qcluster and runbot as ``gateway.target`` starts them."""

    processes: list[Process]

    @classmethod
    def start(cls, env: dict[str, str], checkout: Path, logs: Path, tag: str) -> Units:
        processes = [
            Process(
                f"{unit}-{tag}",
                unit_command(f"gateway-{unit}.service", checkout),
                env,
                logs / f"{unit}-{tag}.log",
                group=True,
                cwd=checkout,  # the units' WorkingDirectory
            )
            for unit in ("web", "worker", "bot")
        ]
        units = cls(processes)
        try:
            wait_for_port(int(env["PORT"]), timeout=60)
        except TimeoutError:
            units.stop()
            raise AssertionError(units.tails()) from None
        return units

    def tails(self) -> str:
        return "\n\n".join(f"== {p.name}\n{p.tail(30)}" for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


@dataclass
class Deployment:
    """One production deployment of a drill: the database, the fakes, the Caddy proxy in front,
    the environment of /etc/gateway/env, and the units running at the moment (if any)."""

    database_url: str
    stripe: FakeStripeServer
    discord: FakeDiscordServer
    proxy: CaddyProxy
    mail: Path
    logs: Path
    env: dict[str, str]
    units: Units | None = None

    def start(self, env: dict[str, str], checkout: Path, stage: str) -> Units:
        """Start the units of ``checkout`` with ``env``; their logs are ``<unit>-<stage>.log``."""
        self.units = Units.start(env, checkout, self.logs, stage)
        return self.units

    def stop(self) -> None:
        if self.units is not None:
            self.units.stop()
            self.units = None


@contextmanager
def production(tmp_path: Path, database: str) -> Iterator[Deployment]:
    """A fresh PostgreSQL database named after ``database``, the fake Discord and a fake Stripe
    whose webhooks go over TLS through the Caddy site file, and the production environment for
    them; on the way out the running units stop, the proxy closes and the database is dropped."""
    webhook_secret = f"whsec_{secrets.token_hex(16)}"
    mail = tmp_path / "mail"
    mail.mkdir()
    port = free_port()
    with (
        fresh_database(database) as database_url,
        FakeDiscordServer() as discord,
        FakeStripeServer(webhook_secret=webhook_secret) as stripe,
    ):
        proxy = CaddyProxy([port], tmp_path)
        try:
            stripe.set_webhook(f"{proxy.url}/stripe/webhook/")
            stripe.configure_webhooks(ca_file=str(proxy.cert), attempts=8, backoff=0.5)
            env = production_env(
                database_url=database_url,
                app_url=proxy.url,
                port=port,
                stripe=stripe,
                discord=discord,
                webhook_secret=webhook_secret,
                mail=mail,
            )
            deployment = Deployment(database_url, stripe, discord, proxy, mail, tmp_path, env)
            try:
                yield deployment
            finally:
                deployment.stop()
        finally:
            proxy.close()


class Browser:
    """A member's browser over HTTPS through the proxy (cookies, CSRF, redirects)."""

    def __init__(self, app_url: str, ca_file: Path) -> None:
        self.app_url = app_url
        self.session = requests.Session()
        # Per request: REQUESTS_CA_BUNDLE in the environment would override session.verify.
        self.verify = str(ca_file)

    def get(self, path_or_url: str, **params: Any) -> requests.Response:
        url = path_or_url if "://" in path_or_url else self.app_url + path_or_url
        return self.session.get(url, params=params or None, timeout=30, verify=self.verify)

    def submit(
        self, path: str, data: dict[str, str], *, on: str | None = None, follow: bool = True
    ) -> requests.Response:
        """GET the page with the form (``on``, else ``path``), POST the form to ``path`` with
        its CSRF token, as a browser would."""
        page = self.get(on or path)
        assert page.status_code == 200, (on or path, page.status_code, page.text[-2000:])
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, f"no CSRF token on {on or path}"
        return self.session.post(
            self.app_url + path,
            data={"csrfmiddlewaretoken": token.group(1), **data},
            headers={"Referer": page.url},
            timeout=30,
            verify=self.verify,
            allow_redirects=follow,
        )


def wait_ready(browser: Browser, timeout: float = 90) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        response = browser.get("/health/ready")
        return response.json() if response.status_code == 200 else None

    return wait_until(ready, timeout, "/health/ready 200")


def confirm_email(browser: Browser, mail: Path, email: str) -> None:
    """Open the confirmation link the gateway emailed (its page confirms on POST)."""

    def link() -> str | None:
        for path in sorted(mail.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True):
            text = path.read_text()
            if f"To: {email}" in text:
                found = re.findall(r"https://[^\s\"'<>/]+/email/verify/\?token=[^\s\"'<>]+", text)
                if found:
                    return found[-1]
        return None

    url = wait_until(link, 30, f"the confirmation email to {email}")
    token = url.split("token=", 1)[1]
    path = url.split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]
    confirmed = browser.submit(
        "/" + path, {"token": unquote_plus(token)}, on=f"/{path}?token={token}"
    )
    assert confirmed.status_code == 200, (confirmed.status_code, confirmed.url)


def sign_up(browser: Browser, email: str) -> None:
    """Sign up, then log in again on a new visit (the password must work)."""
    signed_up = browser.submit(
        "/signup/", {"email": email, "password": PASSWORD, "password_confirm": PASSWORD}
    )
    assert signed_up.url.endswith("/dashboard/"), (signed_up.status_code, signed_up.text[-1500:])
    browser.session.cookies.clear()
    logged_in = browser.submit("/login/", {"email": email, "password": PASSWORD})
    assert logged_in.url.endswith("/dashboard/"), (logged_in.status_code, logged_in.url)


def pay(browser: Browser, checkout_page: requests.Response) -> None:
    """Pay on the fake's hosted Checkout page the gateway redirected to; back on the dashboard."""
    assert "/checkout/cs_" in checkout_page.url, checkout_page.url
    paid = browser.session.post(
        checkout_page.url,
        data={"card_number": "4242 4242 4242 4242", "name": "Test Member"},
        timeout=30,
        verify=browser.verify,
    )
    assert "checkout=success" in paid.url, (paid.status_code, paid.url)


def link_discord(browser: Browser, discord: FakeDiscordServer, discord_user: str) -> None:
    """Through the fake's consent page as ``discord_user``; returns once that user is Squire
    in the fake guild."""
    # Not followed: the fake would consent as its default user at once.
    consent = browser.submit("/claim/", {}, follow=False).headers.get("Location", "")
    assert "/oauth2/authorize" in consent, consent
    parts = urlsplit(consent)
    query = parts.query + "&" + urlencode({"fake_user": discord_user})
    linked = browser.get(urlunsplit(parts._replace(query=query)))
    assert linked.url.endswith("/dashboard/"), (linked.status_code, linked.url)
    squire = discord.seed.role_id("squire")

    def is_squire() -> bool:
        with discord.state.lock:
            member = discord.state.members.get(discord_user)
            return member is not None and squire in member.roles

    wait_until(is_squire, 60, "the member to be Squire in the fake guild")


def member_journey(
    browser: Browser,
    discord: FakeDiscordServer,
    mail: Path,
    *,
    email: str,
    discord_user: str,
    confirm: bool = True,
) -> None:
    """Sign up, log in again, confirm the email (``confirm``: releases before email
    confirmation have no such step), pay on the fake Checkout, link Discord as
    ``discord_user``; returns once the fake guild shows that user as Squire."""
    sign_up(browser, email)
    if confirm:
        confirm_email(browser, mail, email)
    pay(browser, browser.submit("/checkout/individual/", {}, on="/dashboard/"))
    wait_until(
        lambda: "Active" in browser.get("/dashboard/").text, 60, "the dashboard to say Active"
    )
    link_discord(browser, discord, discord_user)


def run_shell(script: str, *, cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    """Run a documented block with bash -e, as an operator pastes it; its output."""
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"$ {script}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    print(f"{time.monotonic() - started:.1f}s: {script.splitlines()[0]} ...")  # in -s output
    return done.stdout


# The tables that hold the state an operator would miss (members, teams, payment failures,
# the Stripe inbox, the notification outbox).
TABLES = (
    "members_user",
    "members_member",
    "members_team",
    "billing_failureepisode",
    "billing_stripeeventinbox",
    "ops_notification",
)


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in TABLES
        }


def pending_notifications(url: str) -> int:
    """Messages the outbox still has to send (queued, or being sent)."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(
            "SELECT count(*) FROM ops_notification WHERE status IN ('pending', 'sending')"
        ).fetchone()[0]


def unapplied_events(url: str) -> int:
    """Stored Stripe events the worker has not finished with (neither applied nor given up)."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(
            "SELECT count(*) FROM billing_stripeeventinbox "  # noqa: S608 - a fixed table
            "WHERE status NOT IN ('processed', 'ignored', 'failed')"
        ).fetchone()[0]


def messages_sent(mail: Path, discord: FakeDiscordServer) -> int:
    """Emails written by the file backend plus messages the bot posted or sent as DMs."""
    emails = sum(path.read_text().count("\nSubject: ") for path in mail.glob("*.log"))
    with discord.state.lock:
        bot = discord.state.bot.id
        posted = sum(1 for m in discord.state.messages.values() if m.author_id == bot)
    return emails + posted


def populate(
    browser: Browser,
    discord: FakeDiscordServer,
    stripe: FakeStripeServer,
    mail: Path,
    database_url: str,
    *,
    confirm: bool = True,
) -> None:
    """The state an operator would miss, made through the gateway's own pages and webhooks:
    arthur@ (``browser``) pays and links Discord, guinevere@ too and then her renewal fails (a
    payment-failure episode and its messages), owner@camelot buys a company with team seats.
    Returns once every event is processed and every queued message sent."""
    member_journey(
        browser, discord, mail, email="arthur@example.org", discord_user=ARTHUR_ID, confirm=confirm
    )
    guinevere = Browser(browser.app_url, Path(browser.verify))
    member_journey(
        guinevere,
        discord,
        mail,
        email="guinevere@example.org",
        discord_user=GUINEVERE_ID,
        confirm=confirm,
    )
    owner = Browser(browser.app_url, Path(browser.verify))
    sign_up(owner, "owner@camelot.example")
    if confirm:
        confirm_email(owner, mail, "owner@camelot.example")
    pay(
        owner,
        owner.submit(
            "/company/",
            {"company_name": "Camelot Consulting", "owner_seats": "1", "team_seats": "2"},
        ),
    )
    with stripe.state.lock:
        failing = next(
            sub["id"]
            for sub in stripe.state.subscriptions.values()
            if stripe.state.customers.get(sub["customer"])["email"] == "guinevere@example.org"
        )
    stripe.state.fail_renewal(failing)

    def settled() -> bool:
        rows = counts(database_url)
        return (
            rows["billing_failureepisode"] >= 1
            and rows["members_team"] >= 1
            and pending_notifications(database_url) == 0
            and all(d["status"] == "succeeded" for d in stripe.webhooks.deliveries())
        )

    wait_until(settled, 90, "episode, team, every event processed and message sent")
