"""What an attacker tries with addresses: finding out who has an account through sign-up,
and registering a look-alike of someone's address (internationalised or quoted)."""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY
from django.urls import reverse

from billing.teams import SeatError, invite_create
from members.models import Member, User, normalize_email
from ops.models import Notification
from tests import personas
from tests.personas import SIGNUP_PASSWORD as PASSWORD

pytestmark = pytest.mark.django_db


def signup(client, email: str, password: str = PASSWORD):
    return client.post(
        reverse("members:signup"),
        {"email": email, "password": password, "password_confirm": password},
    )


@pytest.fixture
def camelot_owner(db) -> Member:
    return personas.company("Camelot Ltd").primary_owner


# --- Sign-up does not tell whether an account exists ------------------------------------


@pytest.mark.parametrize("password", ["password1", "qwertyuiop", "12345678"])
def test_a_weak_password_gets_the_same_answer_for_known_and_unknown_emails(client, alice, password):
    known = signup(client, "alice@example.org", password)
    unknown = signup(client, "nobody@example.org", password)

    assert known.status_code == unknown.status_code == 400
    # Only the email differs between the two pages; the messages are the same.
    assert known.content.decode().replace("alice@example.org", "X") == (
        unknown.content.decode().replace("nobody@example.org", "X")
    ).replace(
        # the CSRF token differs per response
        _csrf(unknown),
        _csrf(known),
    )
    assert "We could not create an account" not in known.content.decode()
    assert User.objects.count() == 1
    assert SESSION_KEY not in client.session


def _csrf(response) -> str:
    body = response.content.decode()
    marker = 'name="csrfmiddlewaretoken" value="'
    start = body.index(marker) + len(marker)
    return body[start : body.index('"', start)]


def test_a_strong_password_for_a_known_email_is_refused_neutrally(client, alice):
    response = signup(client, "alice@example.org", "a different strong passphrase")

    assert response.status_code == 400
    assert "We could not create an account with these details." in response.content.decode()
    assert not User.objects.get().check_password("a different strong passphrase")


# --- Look-alike addresses ----------------------------------------------------------------


def test_an_internationalised_domain_is_stored_in_its_ascii_form():
    assert normalize_email(" Ann@Bücher.Example ") == "ann@xn--bcher-kva.example"
    assert normalize_email("ann@xn--bcher-kva.example") == "ann@xn--bcher-kva.example"
    assert normalize_email("ann@BÜCHER.example") == "ann@xn--bcher-kva.example"
    # Full-width letters fold to the address they imitate.
    assert normalize_email("ann@ｅｘａｍｐｌｅ.org") == "ann@example.org"


def test_signup_with_the_unicode_form_of_a_taken_domain_is_a_duplicate(client):
    first = signup(client, "ann@xn--bcher-kva.example")
    assert first.status_code == 302

    second = signup(client.__class__(), "ann@BÜCHER.example")

    assert second.status_code == 400
    assert User.objects.count() == 1
    assert User.objects.get().email == "ann@xn--bcher-kva.example"


def test_signup_with_full_width_letters_cannot_shadow_an_account(client, alice):
    response = signup(client, "alice@ｅｘａｍｐｌｅ.org", "a different strong passphrase")

    assert response.status_code == 400
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    "address", ['"alice"@example.org', '"alice@example.org"@example.org', '"a b"@example.org']
)
def test_quoted_local_parts_are_refused_everywhere(client, alice, address):
    assert signup(client, address).status_code == 400
    assert User.objects.count() == 1

    login = client.post(reverse("members:login"), {"email": address, "password": PASSWORD})
    assert login.status_code == 400
    assert SESSION_KEY not in client.session

    client.post(reverse("members:magic_link"), {"email": address})
    assert not Notification.objects.filter(kind="magic_link").exists()


def test_login_and_magic_link_find_the_account_by_its_unicode_domain(client):
    user = User.objects.create_user("ann@xn--bcher-kva.example", PASSWORD)
    Member.objects.create(user=user)

    response = client.post(
        reverse("members:login"), {"email": "Ann@Bücher.example", "password": PASSWORD}
    )
    assert response.status_code == 302
    client.post(reverse("members:logout"))

    client.post(reverse("members:magic_link"), {"email": "ann@bücher.example"})
    assert Notification.objects.get(kind="magic_link").recipient == "ann@xn--bcher-kva.example"


@pytest.mark.parametrize("address", ['"boss"@example.org', "not an address"])
def test_invites_refuse_quoted_or_invalid_addresses(camelot_owner, address):
    with pytest.raises(SeatError):
        invite_create(actor=camelot_owner, tier="team", email=address)


def test_invites_store_the_ascii_form_of_an_internationalised_domain(camelot_owner):
    invite = invite_create(actor=camelot_owner, tier="team", email="Ann@Bücher.example")

    assert invite.email == "ann@xn--bcher-kva.example"


# --- Wrong passwords for someone else's email do not lock them out ------------------------


def test_wrong_passwords_from_one_address_do_not_lock_the_owner_out(client, alice, settings):
    settings.RATELIMIT_LOGIN = "3/m"
    url = reverse("members:login")
    attacker = [
        client.post(
            url, {"email": "alice@example.org", "password": "guess"}, REMOTE_ADDR="203.0.113.66"
        ).status_code
        for _ in range(4)
    ]
    # The attacker's address is stopped for this email...
    assert attacker == [400, 400, 400, 429]

    # ...and Alice, from her own address, logs in as usual.
    owner = client.post(
        url, {"email": "alice@example.org", "password": PASSWORD}, REMOTE_ADDR="198.51.100.5"
    )
    assert owner.status_code == 302
    # (One address trying many emails is still stopped: tests/members/test_pages.py.)


def test_an_attacker_rotating_addresses_still_cannot_lock_the_owner_out(client, alice, settings):
    settings.RATELIMIT_LOGIN = "3/m"
    url = reverse("members:login")
    for n in range(12):
        client.post(
            url, {"email": "ALICE@example.org", "password": "guess"}, REMOTE_ADDR=f"10.0.0.{n}"
        )

    owner = client.post(
        url, {"email": "alice@example.org", "password": PASSWORD}, REMOTE_ADDR="198.51.100.5"
    )
    assert owner.status_code == 302
