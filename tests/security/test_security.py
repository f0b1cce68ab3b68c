"""Web security: CSRF, open redirects, OAuth state, session fixation, IDOR, client-IP rate
limits, CSP without inline code, and no secret in the logs of a real request."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from ipaddress import ip_network
from urllib.parse import urlparse

import pytest
import stripe
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY as AUTH_SESSION_KEY
from django.test import Client
from sesame.utils import get_query_string

from members.models import Invite, Member, SeatTier, User
from tests import personas
from tests.gateway import planted
from tests.personas import GUINEVERE, LANCELOT, PASSWORD
from tests.providers import authorize

pytestmark = pytest.mark.django_db

EVIL = ["https://evil.example/", "//evil.example/", "/\\evil.example/", "https:evil.example"]


def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


# --- CSRF -----------------------------------------------------------------------------------


ANONYMOUS_FORMS = [
    "/signup/",
    "/login/",
    "/login/link/",
    "/login/link/verify/",
    "/password/reset/",
]
MEMBER_FORMS = [
    "/logout/",
    "/billing/portal/",
    "/checkout/individual/",
    "/company/",
    "/claim/",
]
OWNER_FORMS = ["/team/invites/", "/team/invites/{invite}/revoke/", "/team/members/{seat}/revoke/"]


@pytest.mark.parametrize("path", ANONYMOUS_FORMS)
def test_anonymous_forms_refuse_a_post_without_the_csrf_token(path):
    before = User.objects.count()
    response = csrf_client().post(path, {"email": "mordred@example.org", "password": "x" * 12})
    assert response.status_code == 403
    assert User.objects.count() == before


@pytest.mark.parametrize("path", MEMBER_FORMS)
def test_member_forms_refuse_a_post_without_the_csrf_token(percival, path):
    client = csrf_client()
    client.force_login(percival.user)
    response = client.post(path, {"company_name": "Mordred Ltd", "owner_seats": 1})
    assert response.status_code == 403
    # Still logged in: the forged logout did nothing either.
    assert client.get("/dashboard/").status_code == 200


@pytest.mark.parametrize("path", OWNER_FORMS)
def test_owner_forms_refuse_a_post_without_the_csrf_token(camelot, path):
    seat = personas.member("kay", status=None, team=camelot, seat_tier=SeatTier.TEAM)
    invite = Invite.objects.create(
        team=camelot, tier=SeatTier.TEAM, token="t" * 43, created_by=camelot.primary_owner
    )
    client = csrf_client()
    client.force_login(camelot.primary_owner.user)
    response = client.post(path.format(invite=invite.pk, seat=seat.pk), {"tier": "team"})
    assert response.status_code == 403
    assert Invite.objects.count() == 1
    invite.refresh_from_db()
    seat.refresh_from_db()
    assert invite.revoked_at is None and seat.team_id == camelot.pk


def test_invite_claim_refuses_a_post_without_the_csrf_token(camelot):
    invite = Invite.objects.create(
        team=camelot, tier=SeatTier.TEAM, token="u" * 43, created_by=camelot.primary_owner
    )
    client = csrf_client()
    response = client.post(f"/invite/{invite.token}/")
    assert response.status_code == 403
    assert "discord_oauth" not in client.session


def test_the_same_form_with_its_token_is_accepted(percival):
    """The 403s above are CSRF and not something else: with the token the login works."""
    client = csrf_client()
    client.get("/login/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/login/",
        {"email": percival.user.email, "password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302


# --- Open redirects -------------------------------------------------------------------------


@pytest.mark.parametrize("target", EVIL)
def test_login_next_never_leaves_the_site(percival, target):
    response = Client().post(
        f"/login/?next={target}", {"email": percival.user.email, "password": PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == "/dashboard/"


@pytest.mark.parametrize("target", EVIL)
def test_signup_next_never_leaves_the_site(target):
    response = Client().post(
        "/signup/",
        {
            "email": "bedivere@example.org",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
            "next": target,
        },
    )
    assert response.status_code == 302 and response["Location"] == "/dashboard/"


@pytest.mark.parametrize("target", EVIL)
def test_logout_next_never_leaves_the_site(percival, target):
    client = Client()
    client.force_login(percival.user)
    response = client.post(f"/logout/?next={target}")
    assert response.status_code == 302
    assert not urlparse(response["Location"]).netloc
    assert AUTH_SESSION_KEY not in client.session


@pytest.mark.parametrize("target", EVIL)
def test_magic_link_ignores_a_return_url(percival, target):
    token = get_query_string(percival.user).split("token=")[1]
    response = Client().post(f"/login/link/verify/?next={target}", {"token": token, "next": target})
    assert response.status_code == 302 and response["Location"] == "/dashboard/"


@pytest.mark.parametrize("target", EVIL)
def test_discord_login_returns_only_to_the_dashboard(discord, target):
    personas.member("tristan", discord_id=LANCELOT)
    discord.set_oauth_user(LANCELOT)
    client = Client()
    start = client.get(f"/login/discord/?next={target}")
    # The only place we send the browser is Discord's authorize page, back to our callback.
    assert start["Location"].startswith(django_settings.DISCORD_OAUTH_AUTHORIZE_URL)
    assert "evil.example" not in start["Location"]
    back = authorize(start["Location"])
    response = client.get("/oauth/discord/callback/", {**back, "next": target})
    assert response.status_code == 302 and response["Location"] == "/dashboard/"


# --- OAuth state ----------------------------------------------------------------------------


def test_oauth_state_cannot_be_replayed_in_the_same_or_another_session(discord):
    personas.member("tristan", discord_id=LANCELOT)
    discord.set_oauth_user(LANCELOT)
    client = Client()
    back = authorize(client.get("/login/discord/")["Location"])
    assert client.get("/oauth/discord/callback/", back).status_code == 302
    client.logout()

    assert client.get("/oauth/discord/callback/", back).status_code == 400
    stranger = Client()
    assert stranger.get("/oauth/discord/callback/", back).status_code == 400
    assert AUTH_SESSION_KEY not in client.session and AUTH_SESSION_KEY not in stranger.session


def test_state_from_another_browser_is_refused(discord):
    """A victim's browser cannot be made to finish the attacker's flow (login CSRF)."""
    personas.member("tristan", discord_id=LANCELOT)
    discord.set_oauth_user(LANCELOT)
    attacker = Client()
    back = authorize(attacker.get("/login/discord/")["Location"])
    victim = Client()
    victim.get("/login/discord/")  # the victim has a flow of their own
    assert victim.get("/oauth/discord/callback/", back).status_code == 400
    assert AUTH_SESSION_KEY not in victim.session


# --- Session fixation -----------------------------------------------------------------------


def _planted_session(client: Client) -> str:
    """A session the attacker knows before the victim logs in."""
    client.get("/login/")
    session = client.session
    session["planted"] = True
    session.save()
    client.cookies["sessionid"] = session.session_key
    return session.session_key


def test_password_login_changes_the_session_key(percival):
    client = Client()
    before = _planted_session(client)
    client.post("/login/", {"email": percival.user.email, "password": PASSWORD})
    assert client.session.session_key != before
    assert client.session[AUTH_SESSION_KEY] == str(percival.user.pk)


def test_signup_changes_the_session_key():
    client = Client()
    before = _planted_session(client)
    client.post(
        "/signup/",
        {"email": "elaine@example.org", "password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert AUTH_SESSION_KEY in client.session
    assert client.session.session_key != before


def test_magic_link_login_changes_the_session_key(percival):
    client = Client()
    before = _planted_session(client)
    token = get_query_string(percival.user).split("token=")[1]
    assert client.post("/login/link/verify/", {"token": token}).status_code == 302
    assert client.session.session_key != before
    assert client.session[AUTH_SESSION_KEY] == str(percival.user.pk)


def test_discord_login_changes_the_session_key(discord):
    member = personas.member("tristan", discord_id=LANCELOT)
    discord.set_oauth_user(LANCELOT)
    client = Client()
    _planted_session(client)
    back = authorize(client.get("/login/discord/")["Location"])
    before = client.session.session_key
    assert client.get("/oauth/discord/callback/", back).status_code == 302
    assert client.session.session_key != before
    assert client.session[AUTH_SESSION_KEY] == str(member.user.pk)


def test_invite_claim_login_changes_the_session_key(
    discord, camelot, django_capture_on_commit_callbacks
):
    invite = Invite.objects.create(
        team=camelot, tier=SeatTier.TEAM, token="v" * 43, created_by=camelot.primary_owner
    )
    discord.set_oauth_user(GUINEVERE)
    client = Client()
    _planted_session(client)
    back = authorize(client.post(f"/invite/{invite.token}/")["Location"])
    before = client.session.session_key
    with django_capture_on_commit_callbacks(execute=True):
        assert client.get("/oauth/discord/callback/", back).status_code == 302
    assert client.session.session_key != before
    assert AUTH_SESSION_KEY in client.session


# --- IDOR -----------------------------------------------------------------------------------


@pytest.fixture
def avalon_owner(avalon) -> Client:
    client = Client()
    client.force_login(avalon.primary_owner.user)
    return client


def test_team_page_shows_only_the_owners_own_team(avalon_owner, camelot, avalon):
    kay = personas.member("kay", status=None, team=camelot, seat_tier=SeatTier.TEAM)
    Invite.objects.create(
        team=camelot, tier=SeatTier.TEAM, token="w" * 43, email="secret-hire@camelot.example"
    )
    body = avalon_owner.get("/team/").content.decode()
    assert "Avalon Inc" in body
    assert "Camelot" not in body
    assert kay.user.email not in body and "secret-hire@camelot.example" not in body
    assert "w" * 43 not in body


def test_owner_cannot_revoke_another_teams_seat_or_invite(avalon_owner, camelot):
    kay = personas.member("kay", status=None, team=camelot, seat_tier=SeatTier.TEAM)
    invite = Invite.objects.create(team=camelot, tier=SeatTier.TEAM, token="x" * 43)
    assert avalon_owner.post(f"/team/members/{kay.pk}/revoke/").status_code == 404
    assert avalon_owner.post(f"/team/invites/{invite.pk}/revoke/").status_code == 404
    assert avalon_owner.post(f"/team/members/{camelot.primary_owner.pk}/revoke/").status_code == 404
    kay.refresh_from_db()
    invite.refresh_from_db()
    assert kay.team_id == camelot.pk
    assert invite.revoked_at is None


def test_team_seat_member_is_not_an_owner(camelot):
    kay = personas.member("kay", status=None, team=camelot, seat_tier=SeatTier.TEAM)
    client = Client()
    client.force_login(kay.user)
    assert client.get("/team/").status_code == 404
    assert client.post("/team/invites/", {"tier": "team"}).status_code == 404
    assert client.post(f"/team/members/{camelot.primary_owner.pk}/revoke/").status_code == 404
    assert Invite.objects.count() == 0


def test_dashboard_and_billing_show_only_the_members_own_data(percival):
    other = personas.member("galahad", discord_id=LANCELOT)
    client = Client()
    client.force_login(percival.user)
    for path in ("/dashboard/", "/billing/"):
        response = client.get(path)
        body = response.content.decode()
        assert response.status_code == 200
        assert other.user.email not in body and "galahad" not in body


def test_billing_portal_opens_only_the_members_own_customer(stripe_server):
    mine = stripe.Customer.create(email="percival@example.com")
    theirs = stripe.Customer.create(email="galahad@example.com")
    percival = personas.member("percival", status=None)
    Member.objects.filter(pk=percival.pk).update(stripe_customer_id=mine.id)
    galahad = personas.member("galahad", status=None)
    Member.objects.filter(pk=galahad.pk).update(stripe_customer_id=theirs.id)
    client = Client()
    client.force_login(percival.user)
    stripe_server.clear_requests()

    response = client.post("/billing/portal/", {"customer": theirs.id, "member": galahad.pk})

    assert response.status_code == 302
    (created,) = stripe_server.requests("/v1/billing_portal/sessions")
    assert created["params"]["customer"] == mine.id


# --- Rate limits by real client IP ------------------------------------------------------------


LIMITED = [
    (
        "/login/",
        "RATELIMIT_LOGIN_ADDRESS",
        lambda i: {"email": f"g{i}@example.org", "password": "nope"},
    ),
    ("/signup/", "RATELIMIT_SIGNUP", lambda i: {"email": f"s{i}@example.org", "password": "x"}),
    ("/login/link/", "RATELIMIT_MAGIC_LINK", lambda i: {"email": f"m{i}@example.org"}),
    ("/invite/{token}/", "RATELIMIT_INVITE_CLAIM", lambda i: {}),
]


@pytest.mark.parametrize(("path", "setting", "data"), LIMITED)
def test_rate_limit_keys_on_the_real_client_ip_behind_the_proxy(
    settings, camelot, path, setting, data
):
    """With one trusted proxy, a client that sends its own X-Forwarded-For prefix still
    shares one counter; another real address (the proxy's entry) has its own."""
    settings.TRUSTED_PROXY_COUNT = 1
    settings.FORWARDED_ALLOW_IPS = (ip_network("10.0.0.2"),)
    setattr(settings, setting, "3/h")
    if "{token}" in path:
        Invite.objects.create(team=camelot, tier=SeatTier.TEAM, token="y" * 43)
        path = path.format(token="y" * 43)
        # The invite view reads its rate once, at import.
        from discordsync.views import INVITE_CLAIM_RATE

        limit = int(INVITE_CLAIM_RATE.split("/")[0])
    else:
        limit = 3
    client = Client()
    statuses = [
        client.post(
            path, data(i), HTTP_X_FORWARDED_FOR=f"10.6.6.{i}, 198.51.100.7", REMOTE_ADDR="10.0.0.2"
        ).status_code
        for i in range(limit + 1)
    ]
    assert 429 not in statuses[:limit] and statuses[limit] == 429
    fresh = client.post(
        path, data(99), HTTP_X_FORWARDED_FOR="198.51.100.7, 198.51.100.8", REMOTE_ADDR="10.0.0.2"
    )
    assert fresh.status_code != 429


# --- Admin path, CSP, headers -----------------------------------------------------------------


def test_admin_lives_at_the_configured_path_only(tmp_path):
    from tests.gateway.test_settings import run_manage

    result = run_manage(
        {"DJANGO_ENV": "development", "ADMIN_URL": "back-office-7f3/"},
        "shell",
        "--no-imports",
        "-c",
        "from django.urls import reverse, resolve, Resolver404\n"
        "print(reverse('admin:index'), reverse('admin:login'))\n"
        "try:\n    resolve('/admin/')\n    print('admin-found')\n"
        "except Resolver404:\n    print('admin-missing')",
    )
    assert result.returncode == 0, result.stderr
    assert "/back-office-7f3/ /back-office-7f3/login/" in result.stdout
    assert "admin-missing" in result.stdout


class _InlineFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.links: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self.inline.append("<script> without src")
        if tag == "style":
            self.inline.append("<style> block")
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.inline.append(f"{name}= on <{tag}>")
        if tag == "a" and names.get("href"):
            self.links.append(names["href"] or "")


def _crawl(client: Client, start: list[str]) -> dict[str, int]:
    seen: dict[str, int] = {}
    queue = list(start)
    while queue and len(seen) < 60:
        path = queue.pop(0)
        if path in seen:
            continue
        response = client.get(path)
        seen[path] = response.status_code
        if "text/html" not in response.get("Content-Type", ""):
            continue
        csp = response["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert re.search(r"script-src 'self'", csp), path
        finder = _InlineFinder()
        finder.feed(response.content.decode())
        assert not finder.inline, f"{path}: {finder.inline}"
        for href in finder.links:
            url = urlparse(href)
            if (
                not url.netloc
                and url.path.startswith("/")
                and not url.path.startswith(("/admin", "/static", "/logout", "/stripe"))
            ):
                queue.append(url.path)
    return seen


def test_every_member_page_has_a_strict_csp_and_no_inline_code(camelot, percival):
    pages = [
        "/",
        "/signup/",
        "/login/",
        "/login/link/",
        "/login/link/verify/?token=nonsense",
        "/password/reset/",
        "/password/reset/sent/",
        "/password/reset/complete/",
        "/invite/not-a-token/",
        "/oauth/discord/callback/?state=x",
        "/no-such-page/",
    ]
    invite = Invite.objects.create(
        team=camelot, tier=SeatTier.TEAM, token="z" * 43, created_by=camelot.primary_owner
    )
    anonymous = _crawl(Client(), [*pages, f"/invite/{invite.token}/"])
    member = Client()
    member.force_login(percival.user)
    as_member = _crawl(member, ["/dashboard/", "/billing/", "/company/", "/claim/"])
    owner = Client()
    owner.force_login(camelot.primary_owner.user)
    as_owner = _crawl(owner, ["/team/", "/dashboard/", "/billing/"])

    assert anonymous["/"] == 200 and anonymous[f"/invite/{invite.token}/"] == 200
    assert as_member["/dashboard/"] == 200 and as_member["/claim/"] == 200
    assert as_owner["/team/"] == 200
    assert len(anonymous) + len(as_member) + len(as_owner) >= 20


# --- Secrets never in logs --------------------------------------------------------------------


def test_a_request_carrying_secrets_leaves_none_in_the_logs(
    json_logs,
    settings,
    percival,
):
    settings.STRIPE_WEBHOOK_SECRET = planted.WEBHOOK_SECRET
    magic = get_query_string(percival.user).split("token=")[1]
    client = Client(raise_request_exception=False)
    client.cookies["sessionid"] = planted.SESSION_COOKIE
    headers = {
        "Authorization": planted.BEARER,
        "Stripe-Signature": f"t=1,v1={planted.WEBHOOK_SECRET}",
        "X-Discord-Token": planted.BOT_TOKEN,
    }
    client.post(
        "/stripe/webhook/",
        data=f'{{"secret": "{planted.WEBHOOK_SECRET}", "token": "{planted.BOT_TOKEN}"}}',
        content_type="application/json",
        headers=headers,
    )
    client.post("/login/", {"email": percival.user.email, "password": planted.BOT_TOKEN})
    client.get(f"/login/link/verify/?token={planted.MAGIC_TOKEN}", headers=headers)
    client.post("/login/link/verify/", {"token": magic}, headers=headers)
    client.get(f"/invite/{planted.MAGIC_TOKEN}/", headers=headers)
    client.get(f"/oauth/discord/callback/?code={planted.BOT_TOKEN}&state={planted.MAGIC_TOKEN}")

    output = json_logs.getvalue()
    assert "request_finished" in output  # the requests were logged at all
    for secret in (
        planted.WEBHOOK_SECRET,
        planted.BOT_TOKEN,
        planted.BEARER.split()[1],
        planted.SESSION_COOKIE,
        planted.MAGIC_TOKEN,
        magic,
    ):
        assert secret not in output


# --- Production and staging settings ---------------------------------------------------------


SHOW = (
    "from django.conf import settings as s\n"
    "print(s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SESSION_COOKIE_SECURE,"
    " s.SESSION_COOKIE_HTTPONLY, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT,"
    " s.SECURE_PROXY_SSL_HEADER, s.DEBUG, s.LOG_FORMAT, s.EMAIL_BACKEND, s.STRIPE_LIVE_MODE)"
)


def test_production_sends_hsts_and_secure_httponly_cookies_behind_the_proxy():
    from tests.gateway.test_settings import PRODUCTION, run_manage

    result = run_manage(PRODUCTION, "shell", "--no-imports", "-c", SHOW)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:6] == ["31536000", "True", "True", "True", "True", "True"]
    assert "('HTTP_X_FORWARDED_PROTO', 'https')" in result.stdout


STAGING = {
    "DJANGO_ENV": "staging",
    "SECRET_KEY": "a-long-random-staging-secret-key-for-the-gateway-0123456789",
    "ALLOWED_HOSTS": "staging.members.example.org",
    "APP_URL": "https://staging.members.example.org",
    "STRIPE_SECRET_KEY": "sk_test_staging0000000000000000000000",
    "STRIPE_WEBHOOK_SECRET": "whsec_staging",
    "TRUSTED_PROXY_COUNT": "1",
    # A separate test guild and bot.
    "DISCORD_BOT_TOKEN": "staging-bot-token",
    "DISCORD_CLIENT_ID": "11",
    "DISCORD_CLIENT_SECRET": "staging-client-secret",
    "DISCORD_GUILD_ID": "12",
    "DISCORD_ROLE_SQUIRE_ID": "13",
    "DISCORD_ROLE_KNIGHT_ID": "14",
    "DISCORD_ROLE_LORD_ID": "15",
    "DISCORD_ROLE_DEBTOR_ID": "16",
    "DISCORD_INTRODUCTIONS_CHANNEL_ID": "17",
    "DISCORD_BILLING_SUPPORT_CHANNEL_ID": "18",
    "DISCORD_INVITE_URL": "https://discord.gg/staging",
}


def test_staging_behaves_like_production_with_stripe_test_mode_and_console_email():
    from tests.gateway.test_settings import run_manage

    result = run_manage(STAGING, "shell", "--no-imports", "-c", SHOW)
    assert result.returncode == 0, result.stderr
    values = result.stdout.split()
    assert values[:6] == ["31536000", "True", "True", "True", "True", "True"]
    assert values[-4:] == [
        "False",
        "json",
        "django.core.mail.backends.console.EmailBackend",
        "False",
    ]
    deploy = run_manage(STAGING, "check", "--deploy", "--fail-level", "WARNING")
    assert deploy.returncode == 0, deploy.stderr


def test_staging_refuses_a_live_stripe_key():
    from tests.gateway.test_settings import run_manage

    live = {**STAGING, "STRIPE_SECRET_KEY": "sk_live_abc", "STRIPE_LIVE_MODE": "true"}
    result = run_manage(live, "check")
    assert result.returncode != 0
    assert "DJANGO_ENV=staging uses Stripe test mode" in result.stderr
