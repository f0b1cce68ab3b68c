"""Sign-up, login, logout, magic links and password reset, through the real pages."""

from __future__ import annotations

import re
import types
from urllib.parse import urlparse

import pytest
import sesame.tokens_v2
from django.contrib.auth import SESSION_KEY
from django.urls import reverse

from members.models import Member, User
from ops.models import AuditLog, Notification
from tests.personas import SIGNUP_PASSWORD as PASSWORD

pytestmark = pytest.mark.django_db


def signup(client, email: str, password: str = PASSWORD, confirm: str | None = None):
    return client.post(
        reverse("members:signup"),
        {"email": email, "password": password, "password_confirm": confirm or password},
    )


def test_signup_creates_account_logs_in_and_lands_on_dashboard(client):
    response = signup(client, "  New.Person@Example.ORG ")

    assert response.status_code == 302
    assert response["Location"] == reverse("billing:dashboard")
    user = User.objects.get()
    assert user.email == "new.person@example.org"
    assert user.check_password(PASSWORD)
    member = Member.objects.get(user=user)
    assert member.stripe_customer_id == ""  # the Stripe customer comes at checkout
    assert client.session[SESSION_KEY] == str(user.pk)
    assert AuditLog.objects.filter(action="member.signed_up", target_id=str(member.pk)).exists()
    assert client.get(reverse("billing:dashboard")).status_code == 200


def test_duplicate_signup_any_case_is_refused_neutrally_without_session(client, alice):
    response = signup(client, "ALICE@example.org", password="another long passphrase")

    assert response.status_code == 400
    body = response.content.decode()
    assert "We could not create an account with these details." in body
    assert "exists" not in body.lower()
    assert "taken" not in body.lower()
    assert SESSION_KEY not in client.session
    assert User.objects.count() == 1
    assert not User.objects.get().check_password("another long passphrase")


def test_signup_with_mismatched_passwords_shows_linked_error(client):
    response = signup(client, "bob@example.org", confirm="something else entirely")

    assert response.status_code == 400
    body = response.content.decode()
    assert 'id="id_password_confirm_error" role="alert"' in body
    assert 'aria-describedby="id_password_confirm_error"' in body
    assert 'aria-invalid="true"' in body
    assert not User.objects.exists()


def test_weak_password_is_refused(client):
    response = signup(client, "bob@example.org", password="password1")

    assert response.status_code == 400
    assert not User.objects.exists()


def test_login_with_password_and_logout(client, alice):
    client.get(reverse("members:login"))
    anonymous_key = client.session.session_key
    response = client.post(
        reverse("members:login"), {"email": "Alice@Example.org", "password": PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("billing:dashboard")
    assert client.session[SESSION_KEY] == str(alice.pk)
    assert client.session.session_key != anonymous_key  # no session fixation

    assert client.get(reverse("members:logout")).status_code == 405  # logout is POST only
    response = client.post(reverse("members:logout"))
    assert response.status_code == 302
    assert SESSION_KEY not in client.session
    assert client.get(reverse("billing:dashboard")).status_code == 302


@pytest.mark.parametrize("email", ["alice@example.org", "nobody@example.org"])
def test_login_failure_is_generic(client, alice, email):
    response = client.post(reverse("members:login"), {"email": email, "password": "wrong pass"})

    assert response.status_code == 400
    body = response.content.decode()
    assert "The email or password is not correct." in body
    assert 'id="form-errors" role="alert"' in body
    assert SESSION_KEY not in client.session


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example.com/",
        "//evil.example.com/",
        "http://evil.example.com/dashboard/",
        "/\\evil.example.com",
        "javascript:alert(1)",
    ],
)
def test_next_never_redirects_off_site(client, alice, target):
    response = client.post(
        reverse("members:login"),
        {"email": "alice@example.org", "password": PASSWORD, "next": target},
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("billing:dashboard")


def test_next_on_site_is_followed(client, alice):
    response = client.post(
        reverse("members:login") + "?next=/company/",
        {"email": "alice@example.org", "password": PASSWORD},
    )

    assert response["Location"] == "/company/"


def test_login_required_pages_send_anonymous_visitors_to_login(client):
    response = client.get(reverse("billing:dashboard"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("members:login") + "?next=")


def _magic_link(client, email: str = "alice@example.org") -> str:
    response = client.post(reverse("members:magic_link"), {"email": email})
    assert response.status_code == 200
    notification = Notification.objects.get(kind="magic_link")
    assert notification.channel == "email"
    assert notification.recipient == email
    return notification.context["link"]


def _use(client, link: str):
    parsed = urlparse(link)
    token = re.search(r"token=([^&]+)", parsed.query).group(1)
    # GET only shows a button (mail scanners prefetch links); the POST logs in.
    page = client.get(f"{parsed.path}?{parsed.query}")
    assert page.status_code == 200
    assert token in page.content.decode()
    return client.post(parsed.path, {"token": token})


def test_magic_link_is_emailed_and_logs_in_once(client, alice, settings):
    link = _magic_link(client)

    assert link.startswith(settings.APP_URL + reverse("members:magic_link_login"))
    assert SESSION_KEY not in client.session  # the GET page alone does not log in
    client.get(reverse("billing:landing"))
    anonymous_key = client.session.session_key
    response = _use(client, link)

    assert response.status_code == 302
    assert response["Location"] == reverse("billing:dashboard")
    assert client.session[SESSION_KEY] == str(alice.pk)
    assert client.session.session_key != anonymous_key

    other = client.__class__()
    second = _use(other, link)
    assert second.status_code == 400
    assert "This link no longer works" in second.content.decode()
    assert SESSION_KEY not in other.session


def test_magic_link_for_unknown_email_looks_the_same_and_sends_nothing(client, alice):
    known = client.post(reverse("members:magic_link"), {"email": "alice@example.org"})
    unknown = client.post(reverse("members:magic_link"), {"email": "nobody@example.org"})

    assert known.content == unknown.content
    assert Notification.objects.filter(kind="magic_link").count() == 1


def test_expired_magic_link_is_refused(client, alice, monkeypatch):
    real_time = sesame.tokens_v2.time.time
    # Issue the token 16 minutes in the past by moving django-sesame's clock only.
    monkeypatch.setattr(
        sesame.tokens_v2, "time", types.SimpleNamespace(time=lambda: real_time() - 16 * 60)
    )
    link = _magic_link(client)
    monkeypatch.undo()

    response = _use(client, link)

    assert response.status_code == 400
    assert SESSION_KEY not in client.session


def test_tampered_magic_link_is_refused(client, alice):
    response = client.post(reverse("members:magic_link_login"), {"token": "not-a-token"})

    assert response.status_code == 400
    assert SESSION_KEY not in client.session


def test_password_reset_emails_a_link_that_sets_a_new_password(client, alice, settings):
    response = client.post(reverse("members:password_reset"), {"email": "ALICE@example.org"})
    assert response.status_code == 302
    assert response["Location"] == reverse("members:password_reset_done")

    notification = Notification.objects.get(kind="password_reset")
    assert notification.recipient == "alice@example.org"
    link = notification.context["link"]
    assert link.startswith(settings.APP_URL + "/password/reset/")

    page = client.get(urlparse(link).path, follow=True)
    assert page.status_code == 200
    form_url = page.redirect_chain[-1][0]
    done = client.post(
        form_url,
        {"new_password1": "a brand new passphrase", "new_password2": "a brand new passphrase"},
    )
    assert done.status_code == 302
    assert done["Location"] == reverse("members:password_reset_complete")
    alice.refresh_from_db()
    assert alice.check_password("a brand new passphrase")

    # The link is spent once the password changed.
    again = client.get(urlparse(link).path, follow=True)
    assert "not valid any more" in again.content.decode()


def test_password_reset_for_unknown_email_sends_nothing(client, alice):
    response = client.post(reverse("members:password_reset"), {"email": "nobody@example.org"})

    assert response.status_code == 302
    assert not Notification.objects.filter(kind="password_reset").exists()
