"""Message templates: defaults for every kind, staff edits, flagged variables, live links."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core import mail
from django.urls import Resolver404, resolve, reverse

from members.models import Member, User
from ops import notifications
from ops.models import AuditLog, MessageTemplate
from ops.services import notification_enqueue
from ops.templates_registry import KINDS, sample_context

MESSAGES = Path(settings.BASE_DIR) / "templates" / "messages"


def _render_default(kind: str, channel: str) -> notifications.RenderedMessage:
    subject, body = notifications.default_sources(KINDS[kind])
    return notifications.render_preview(kind, subject, body, channel)


def test_every_kind_has_default_files_and_nothing_else_is_there():
    expected = {f"{k}.subject.txt" for k in KINDS} | {f"{k}.txt" for k in KINDS}
    assert {p.name for p in MESSAGES.iterdir()} == expected


@pytest.mark.django_db
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_default_renders_with_known_variables_only(kind):
    subject, body = notifications.default_sources(KINDS[kind])
    assert notifications.unknown_variables(kind, subject, body) == []
    for channel in KINDS[kind].channels:
        rendered = _render_default(kind, channel)
        assert rendered.subject and "{{" not in rendered.subject
        assert len(rendered.text) > 40
        assert "{%" not in rendered.text and "{{" not in rendered.text
        assert settings.COMMUNITY_NAME in rendered.subject + rendered.text
        if channel == "email":
            assert "<#" not in rendered.text  # Discord mentions mean nothing in an inbox


@pytest.mark.django_db
def test_team_members_get_their_own_wording():
    owner = _render_default("payment_failed", "email").text
    member = _render_default("payment_failed_member", "email").text
    assert "Update your payment method here" in owner
    assert "/billing/" in owner
    assert "nothing for you to pay" in member
    assert "/billing/" not in member


@pytest.mark.django_db
def test_every_link_a_message_can_contain_resolves_to_a_page():
    unresolved: set[str] = set()
    for kind in KINDS.values():
        for channel in kind.channels:
            text = _render_default(kind.kind, channel).text
            for url in re.findall(r"https?://\S+", text):
                if not url.startswith(settings.APP_URL):
                    continue
                path = urlsplit(url).path
                try:
                    resolve(path)
                except Resolver404:
                    unresolved.add(f"{kind.kind}: {path}")
    assert not unresolved, "Links that lead nowhere:\n" + "\n".join(sorted(unresolved))


def test_variable_finder_reads_django_syntax():
    source = (
        "{{ a.b|default:c }} {% if d and not e %}{% for x in items %}{{ x }} {{ forloop.counter }}"
        "{% endfor %}{% endif %}{% with f=g %}{{ f }}{% endwith %}{# {{ comment }} #}"
    )
    assert notifications.template_variables(source) == {"a", "c", "d", "e", "items", "g"}


@pytest.mark.django_db
def test_staff_edit_overrides_the_default_and_is_audited(
    admin_client, admin_user, django_capture_on_commit_callbacks
):
    add_url = reverse("admin:ops_messagetemplate_add")
    form = admin_client.get(add_url + "?kind=welcome").content.decode()
    assert "Thank you for joining {{ community_name }}" in form  # starts from the default

    response = admin_client.post(
        add_url,
        {
            "kind": "welcome",
            "subject": "Hail, {{ member_name }}!",
            "body": "Welcome to {{ community_name }}, {{ member_name }}. {{ favourite_colour }}",
        },
        follow=True,
    )
    page = response.content.decode()
    assert "not provided for welcome and will render empty: favourite_colour" in page

    user = User.objects.create_user("ada@example.com", "pw-123456789")
    member = Member.objects.create(user=user, discord_username="ada")
    with django_capture_on_commit_callbacks(execute=True):
        notification_enqueue(
            kind="welcome", channel="email", recipient="ada@example.com", member=member
        )
    assert mail.outbox[0].subject == "Hail, ada!"
    assert mail.outbox[0].body == "Welcome to The Revenue Council, ada.\n"

    audit = AuditLog.objects.get(action="message_template.created")
    assert audit.actor_type == "staff"
    assert audit.actor_id == str(admin_user.pk)
    assert audit.details["unknown_variables"] == ["favourite_colour"]


@pytest.mark.django_db
def test_template_syntax_errors_are_refused(admin_client):
    response = admin_client.post(
        reverse("admin:ops_messagetemplate_add"),
        {"kind": "welcome", "subject": "Hi", "body": "{% if member_name %}unclosed"},
    )
    assert response.status_code == 200
    assert "Template error" in response.content.decode()
    assert not MessageTemplate.objects.exists()
    assert not AuditLog.objects.exists()


@pytest.mark.django_db
def test_reset_to_default_removes_the_edit_and_is_audited(admin_client):
    edit = MessageTemplate.objects.create(kind="farewell", subject="Bye", body="Bye {{ x }}")
    response = admin_client.post(
        reverse("admin:ops_messagetemplate_changelist"),
        {"action": "reset_to_default", "_selected_action": [edit.pk]},
        follow=True,
    )
    assert "Reset to default: farewell" in response.content.decode()
    assert not MessageTemplate.objects.exists()
    audit = AuditLog.objects.get(action="message_template.reset")
    assert audit.details["previous"] == {"subject": "Bye", "body": "Bye {{ x }}"}

    rendered = notifications.render_message("farewell", channel="dm")
    assert "has ended and access to the server has been removed" in rendered.text


@pytest.mark.django_db
def test_preview_and_catalogue_show_every_kind_with_sample_values(admin_client):
    catalogue = admin_client.get(reverse("admin:ops_messagetemplate_changelist")).content.decode()
    for kind in KINDS:
        assert f"<code>{kind}</code>" in catalogue

    MessageTemplate.objects.create(
        kind="seat_invite", subject="Join {{ team_name }}", body="{{ link }} {{ nonsense }}"
    )
    page = admin_client.get(
        reverse("admin:ops_messagetemplate_preview", args=["seat_invite"])
    ).content.decode()
    assert "Join Acme Ltd" in page
    assert sample_context("seat_invite")["link"] in page
    assert "Unknown variables (render empty): nonsense" in page

    missing = admin_client.get(reverse("admin:ops_messagetemplate_preview", args=["nope"]))
    assert missing.status_code == 404
