"""Email ownership: an account squatted before its owner proved the email stops working for
the squatter once the owner proves it, and the sensitive actions wait for a proven email.

The attack (account pre-hijacking): someone signs up with another person's email and a
password of their own; the real owner later gets in by magic link and pays; the squatter's
password must not open the paid account any more.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from members.models import Member, User
from ops.models import AuditLog, Notification
from tests import personas

pytestmark = pytest.mark.django_db

VICTIM = "victim@example.org"
SQUATTER_PASSWORD = "the squatter's own passphrase"
OWNER_PASSWORD = "the owner's own passphrase"

GATED = [
    ("get", "/claim/"),
    ("post", "/claim/"),
    ("post", "/billing/portal/"),
    ("get", "/team/"),
    ("post", "/team/invites/"),
    ("post", "/team/seats/"),
]


def sign_up(client: Client, email: str, password: str) -> None:
    response = client.post(
        reverse("members:signup"),
        {"email": email, "password": password, "password_confirm": password},
    )
    assert response.status_code == 302


def follow_emailed_link(client: Client, link: str):
    """GET shows a button (mail scanners prefetch links); the POST uses the token."""
    parsed = urlparse(link)
    page = client.get(f"{parsed.path}?{parsed.query}")
    assert page.status_code == 200
    token = parse_qs(parsed.query)["token"][0]
    return client.post(parsed.path, {"token": token})


def latest_link(kind: str) -> str:
    return Notification.objects.filter(kind=kind).latest("id").context["link"]


def logged_in(client: Client) -> bool:
    return client.get(reverse("billing:dashboard")).status_code == 200


# --- The attack ---------------------------------------------------------------------------


def test_the_owners_magic_link_ends_the_squatters_password_and_session():
    squatter = Client()
    sign_up(squatter, VICTIM, SQUATTER_PASSWORD)
    assert logged_in(squatter)

    owner = Client()
    owner.post(reverse("members:magic_link"), {"email": VICTIM})
    response = follow_emailed_link(owner, latest_link("magic_link"))
    assert response.status_code == 302
    assert logged_in(owner)

    # The squatter's open session is over, and the password no longer logs in.
    assert not logged_in(squatter)
    again = Client().post(
        reverse("members:login"), {"email": VICTIM, "password": SQUATTER_PASSWORD}
    )
    assert again.status_code == 400
    user = User.objects.get(email=VICTIM)
    assert user.email_verified_at is not None
    assert not user.has_usable_password()
    assert AuditLog.objects.filter(action="member.email_verified").count() == 1


def test_the_sign_up_confirmation_link_opened_by_the_owner_ends_the_squatter_too():
    squatter = Client()
    sign_up(squatter, VICTIM, SQUATTER_PASSWORD)
    link = latest_link("email_verify")

    owner = Client()
    response = follow_emailed_link(owner, link)

    assert response.status_code == 302
    assert logged_in(owner)
    assert not logged_in(squatter)
    user = User.objects.get(email=VICTIM)
    assert user.email_verified_at is not None
    assert not user.check_password(SQUATTER_PASSWORD)


def test_a_password_reset_proves_the_email_and_ends_every_other_session():
    squatter = Client()
    sign_up(squatter, VICTIM, SQUATTER_PASSWORD)

    owner = Client()
    owner.post(reverse("members:password_reset"), {"email": VICTIM})
    link = urlparse(latest_link("password_reset")).path
    form_url = owner.get(link, follow=True).redirect_chain[-1][0]
    owner.post(form_url, {"new_password1": OWNER_PASSWORD, "new_password2": OWNER_PASSWORD})

    assert not logged_in(squatter)
    user = User.objects.get(email=VICTIM)
    assert user.email_verified_at is not None
    assert user.check_password(OWNER_PASSWORD)


# --- The owner's own sign-up --------------------------------------------------------------


def test_sign_up_emails_a_confirmation_link_that_keeps_the_password_in_the_same_browser():
    browser = Client()
    sign_up(browser, VICTIM, OWNER_PASSWORD)
    notification = Notification.objects.get(kind="email_verify")
    assert notification.recipient == VICTIM
    assert notification.context["link"].startswith("http://")

    response = follow_emailed_link(browser, notification.context["link"])

    assert response.status_code == 302
    assert logged_in(browser)
    user = User.objects.get(email=VICTIM)
    assert user.email_verified_at is not None
    assert user.check_password(OWNER_PASSWORD)  # the browser that set it proved the email


def test_the_confirmation_link_works_once():
    browser = Client()
    sign_up(browser, VICTIM, OWNER_PASSWORD)
    link = latest_link("email_verify")
    assert follow_emailed_link(browser, link).status_code == 302

    second = follow_emailed_link(Client(), link)

    assert second.status_code == 400
    assert SESSION_KEY not in second.wsgi_request.session


def test_a_tampered_confirmation_link_is_refused():
    sign_up(Client(), VICTIM, OWNER_PASSWORD)
    link = latest_link("email_verify")

    response = follow_emailed_link(Client(), link.replace("token=", "token=x"))

    assert response.status_code == 400
    assert User.objects.get(email=VICTIM).email_verified_at is None


def test_a_later_magic_link_changes_nothing_once_the_email_is_proven():
    browser = Client()
    sign_up(browser, VICTIM, OWNER_PASSWORD)
    follow_emailed_link(browser, latest_link("email_verify"))

    phone = Client()
    phone.post(reverse("members:magic_link"), {"email": VICTIM})
    follow_emailed_link(phone, latest_link("magic_link"))

    assert logged_in(browser) and logged_in(phone)
    assert User.objects.get(email=VICTIM).check_password(OWNER_PASSWORD)


# --- Sensitive actions wait for a proven email --------------------------------------------


@pytest.fixture
def unproven_owner(db) -> Member:
    """A paid team owner whose email was never proven (signed up before proofs existed)."""
    owner = personas.company("Camelot Ltd").primary_owner
    User.objects.filter(pk=owner.user_id).update(email_verified_at=None)
    return owner


@pytest.mark.parametrize(("method", "path"), GATED)
def test_sensitive_actions_ask_for_a_confirmed_email_first(unproven_owner, method, path):
    client = Client()
    client.force_login(unproven_owner.user)

    response = getattr(client, method)(path)

    assert response.status_code == 403
    body = response.content.decode()
    assert "Confirm your email first" in body
    assert reverse("members:email_verify_send") in body


@pytest.mark.parametrize(("method", "path"), GATED)
def test_sensitive_actions_open_once_the_email_is_proven(unproven_owner, method, path):
    client = Client()
    client.force_login(unproven_owner.user)
    client.post(reverse("members:email_verify_send"))
    follow_emailed_link(client, latest_link("email_verify"))

    response = getattr(client, method)(path)

    assert "Confirm your email first" not in response.content.decode()


def test_an_unproven_individual_member_cannot_start_linking_discord(client):
    percival = personas.member("percival")
    User.objects.filter(pk=percival.user_id).update(email_verified_at=None)
    client.force_login(percival.user)

    response = client.post("/claim/")

    assert response.status_code == 403
    assert Member.objects.get(pk=percival.pk).discord_id is None


def test_discord_only_seats_have_no_email_to_prove(client):
    team = personas.company("Camelot Ltd")
    seat = Member.objects.create(
        user=User.objects.create_user(None), team=team, seat_tier="owner", discord_id="77"
    )
    client.force_login(seat.user)

    assert client.get("/team/").status_code == 200


def test_the_resend_button_mails_a_new_link_and_is_rate_limited(client, settings):
    settings.RATELIMIT_EMAIL_VERIFY = "2/h"
    sign_up(client, VICTIM, OWNER_PASSWORD)
    url = reverse("members:email_verify_send")

    codes = [client.post(url).status_code for _ in range(3)]

    assert codes[:2] == [302, 302]
    assert codes[2] == 429
    assert Notification.objects.filter(kind="email_verify", recipient=VICTIM).count() == 3


def test_the_resend_button_needs_a_login(client):
    response = client.post(reverse("members:email_verify_send"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("members:login"))
