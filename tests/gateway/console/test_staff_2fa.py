"""Staff reach the admin only through the admin login, with a second factor (TOTP).

The codes are computed here from the secret the enrolment page shows (RFC 6238), the way an
authenticator app would, not by asking django-otp.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
import time

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from sesame.utils import get_query_string

from members.models import Member, User
from ops.models import AuditLog, Notification
from tests.personas import ARTHUR, STAFF_PASSWORD
from tests.providers import authorize

pytestmark = pytest.mark.django_db

ADMIN = "/admin/"
LOGIN = "/admin/login/"
SETUP = "/admin/2fa/setup/"


def totp(secret_b32: str, *, at: float | None = None) -> str:
    key = base64.b32decode(secret_b32)
    counter = int((time.time() if at is None else at) // 30)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 1_000_000:06d}"


@pytest.fixture
def required(settings):
    settings.ADMIN_REQUIRE_2FA = True
    return settings


def admin_login(client: Client, user: User, code: str = ""):
    return client.post(
        LOGIN,
        {"username": user.email, "password": STAFF_PASSWORD, "otp_token": code, "next": ADMIN},
    )


def admin_opens(client: Client) -> bool:
    return client.get(ADMIN).status_code == 200


def enrol(client: Client, user: User) -> tuple[str, list[str]]:
    """First admin login: password, then the setup page; returns the secret and codes."""
    admin_login(client, user)
    assert client.get(LOGIN)["Location"] == SETUP
    page = client.get(SETUP)
    assert page.status_code == 200
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.content.decode()).group(1)
    done = client.post(SETUP, {"otp_token": totp(secret)})
    assert done.status_code == 200, done.content.decode()
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", done.content.decode())
    return secret, codes


def test_first_admin_login_enrols_an_app_with_a_real_code(required, superuser):
    client = Client()
    response = admin_login(client, superuser)
    assert response.status_code == 302
    # Password alone: the admin stays closed, the login page sends to the enrolment.
    assert not admin_opens(client)

    secret, codes = enrol(client, superuser)

    assert len(codes) == 10 and len(set(codes)) == 10
    assert admin_opens(client)
    assert AuditLog.objects.filter(action="staff.2fa_enrolled").count() == 1


def test_a_wrong_code_does_not_enrol(required, superuser):
    client = Client()
    admin_login(client, superuser)
    page = client.get(SETUP).content.decode()
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)
    wrong = f"{(int(totp(secret)) + 1) % 1_000_000:06d}"

    response = client.post(SETUP, {"otp_token": wrong})

    assert response.status_code == 400
    assert "not correct" in response.content.decode()
    assert not admin_opens(client)


def test_after_enrolment_the_login_needs_the_code(required, superuser):
    secret, _codes = enrol(Client(), superuser)

    without = Client()
    assert admin_login(without, superuser).status_code == 200  # the form again, with an error
    assert not admin_opens(without)

    wrong = Client()
    bad = f"{(int(totp(secret)) + 7) % 1_000_000:06d}"
    response = admin_login(wrong, superuser, bad)
    assert "The authentication code is not correct." in response.content.decode()
    assert not admin_opens(wrong)

    # An enrolled user cannot replace the app from a password-only session.
    assert wrong.get(SETUP).status_code == 302


def test_the_right_code_opens_the_admin(required, superuser):
    secret, _codes = enrol(Client(), superuser)
    client = Client()
    # The enrolment used this period's code; an app shows the next one 30 s later.
    code = totp(secret, at=time.time() + 30)

    response = admin_login(client, superuser, code)

    assert response.status_code == 302
    assert admin_opens(client)


def test_a_recovery_code_works_once(required, superuser):
    _secret, codes = enrol(Client(), superuser)

    first = Client()
    admin_login(first, superuser, codes[0])
    assert admin_opens(first)
    assert AuditLog.objects.filter(action="staff.recovery_code_used").exists()

    other = Client()
    admin_login(other, superuser, codes[1])
    assert admin_opens(other)

    again = Client()
    admin_login(again, superuser, codes[0])
    assert not admin_opens(again)


def test_a_session_from_elsewhere_does_not_open_the_admin(required, superuser):
    client = Client()
    client.force_login(superuser)

    assert not admin_opens(client)


def test_reset_command_removes_the_devices_and_the_next_login_enrols_again(
    required, superuser, capsys
):
    enrol(Client(), superuser)

    call_command("staff_otp_reset", "ROOT@example.com")

    assert "Removed 2 device(s)" in capsys.readouterr().out
    client = Client()
    admin_login(client, superuser)
    assert client.get(LOGIN)["Location"] == SETUP
    assert AuditLog.objects.filter(action="staff.2fa_reset").exists()


def test_without_the_requirement_the_password_opens_the_admin(superuser):
    client = Client()

    admin_login(client, superuser)

    assert admin_opens(client)


# --- Member login paths never sign in staff ------------------------------------------------


def test_member_password_login_refuses_staff_like_a_wrong_password(superuser):
    client = Client()

    response = client.post(
        reverse("members:login"), {"email": superuser.email, "password": STAFF_PASSWORD}
    )

    assert response.status_code == 400
    assert "The email or password is not correct." in response.content.decode()
    assert not admin_opens(client)


def test_magic_link_never_signs_in_staff(superuser):
    client = Client()
    client.post(reverse("members:magic_link"), {"email": superuser.email})
    assert not Notification.objects.filter(kind="magic_link").exists()

    # Even a valid token made for the account is refused.
    token = get_query_string(superuser).split("=", 1)[1]
    response = client.post(reverse("members:magic_link_login"), {"token": token})

    assert response.status_code == 400
    assert not admin_opens(client)
    assert client.get(reverse("billing:dashboard")).status_code == 302


def test_discord_login_never_signs_in_staff(discord, superuser):
    Member.objects.create(user=superuser, discord_id=ARTHUR, discord_username="arthur")
    client = Client()

    back = authorize(client.get("/login/discord/")["Location"])
    response = client.get("/oauth/discord/callback/", back)

    assert response.status_code == 400
    assert not admin_opens(client)
    assert client.get(reverse("billing:dashboard")).status_code == 302
