"""Outbox delivery by email: exactly once, retried with backoff, visible to staff."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from members.models import Member, Team, User
from ops import notifications
from ops.models import AuditLog, Notification
from ops.retry import MAX_ATTEMPTS
from ops.services import notification_enqueue
from ops.tasks import deliver_due_notifications, deliver_notification

# Real commits: delivery is queued with transaction.on_commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


class FlakyEmailBackend(LocmemBackend):
    """The email provider at its boundary: refuses the first ``failures`` sends."""

    failures = 0
    error = "provider unavailable"
    calls = 0

    def send_messages(self, messages):
        type(self).calls += 1
        if type(self).calls <= type(self).failures:
            raise ConnectionError(type(self).error)
        return super().send_messages(messages)


@pytest.fixture
def flaky_provider():
    FlakyEmailBackend.calls = 0
    FlakyEmailBackend.failures = 0
    FlakyEmailBackend.error = "provider unavailable"
    with override_settings(EMAIL_BACKEND="tests.ops.test_notifications_email.FlakyEmailBackend"):
        yield FlakyEmailBackend


@pytest.fixture
def individual_member() -> Member:
    user = User.objects.create_user("ada@example.com", "pw-123456789")
    return Member.objects.create(user=user, discord_username="ada")


@pytest.fixture
def team_member() -> Member:
    team = Team.objects.create(name="Acme Ltd")
    user = User.objects.create_user("bob@acme.example", "pw-123456789")
    return Member.objects.create(user=user, team=team, seat_tier="team")


def _time_passes(notification: Notification) -> None:
    """Jump to the moment the row's retry is due (the clock is not ours to move)."""
    Notification.objects.filter(pk=notification.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def test_welcome_email_is_sent_once_with_reply_to_and_html(individual_member):
    for _ in range(2):
        with transaction.atomic():
            notification_enqueue(
                kind="welcome",
                channel="email",
                recipient="ada@example.com",
                episode="sub_1",
                member=individual_member,
            )

    assert Notification.objects.count() == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ada@example.com"]
    assert message.from_email == "gatekeeper@localhost"
    assert message.reply_to == ["gatekeeper@localhost"]
    assert message.subject == "Welcome to The Revenue Council"
    assert "Hello ada," in message.body
    assert "http://127.0.0.1:8000/claim/" in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert '<a href="http://127.0.0.1:8000/claim/"' in html
    row = Notification.objects.get()
    assert row.status == Notification.Status.SENT
    assert row.attempts == 1
    assert row.sent_at is not None


def test_rolled_back_change_sends_nothing(individual_member):
    with pytest.raises(RuntimeError), transaction.atomic():
        notification_enqueue(kind="welcome", channel="email", recipient="ada@example.com")
        raise RuntimeError("the caller's change failed")

    assert Notification.objects.count() == 0
    assert mail.outbox == []


def test_unknown_kind_or_wrong_channel_is_refused_and_stores_nothing():
    with pytest.raises(ValueError, match="Unknown message kind 'welcom'"):
        notification_enqueue(kind="welcom", channel="email", recipient="a@example.com")
    with pytest.raises(ValueError, match="sent by email, not 'dm'"):
        notification_enqueue(kind="magic_link", channel="dm", recipient="123")
    assert Notification.objects.count() == 0


def test_datetimes_in_context_are_stored_and_formatted(team_member):
    grace_ends = timezone.now().replace(year=2030, month=5, day=6, hour=7, minute=8)
    notification_enqueue(
        kind="payment_failed_member",
        channel="email",
        recipient="bob@acme.example",
        episode="ep1",
        member=team_member,
        context={"grace_ends_at": grace_ends},
    )

    body = mail.outbox[0].body
    assert "until 6 May 2030, 07:08 UTC" in body
    assert "Acme Ltd's plan" in body
    assert "let your plan administrator know" in body
    assert "#billing-support" not in mail.outbox[0].subject


def test_provider_failures_are_retried_with_backoff_then_delivered_once(flaky_provider):
    flaky_provider.failures = 2
    before = timezone.now()
    notification = notification_enqueue(
        kind="claim_reminder", channel="email", recipient="ada@example.com", episode="48h"
    )

    notification.refresh_from_db()
    assert notification.status == Notification.Status.FAILED
    assert notification.attempts == 1
    assert notification.last_error == "ConnectionError: provider unavailable"
    assert before + timedelta(minutes=1) <= notification.next_attempt_at
    assert notification.next_attempt_at <= timezone.now() + timedelta(minutes=1)
    # Not due yet: the schedule leaves it alone.
    assert deliver_due_notifications() == 0

    _time_passes(notification)
    assert deliver_due_notifications() == 1
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == (Notification.Status.FAILED, 2)
    assert notification.next_attempt_at >= timezone.now() + timedelta(minutes=4)

    _time_passes(notification)
    deliver_due_notifications()
    notification.refresh_from_db()
    assert notification.status == Notification.Status.SENT
    assert notification.attempts == 3
    assert notification.last_error == ""
    assert len(mail.outbox) == 1
    # A late duplicate task for the same row changes nothing.
    assert deliver_notification(notification.pk) == "skipped"
    assert len(mail.outbox) == 1


def test_gives_up_after_max_attempts_and_staff_can_retry(flaky_provider, admin_client):
    flaky_provider.failures = 100
    notification = notification_enqueue(
        kind="claim_reminder", channel="email", recipient="ada@example.com", episode="7d"
    )
    for _ in range(MAX_ATTEMPTS - 1):
        _time_passes(notification)
        deliver_due_notifications()

    notification.refresh_from_db()
    assert notification.status == Notification.Status.FAILED
    assert notification.attempts == MAX_ATTEMPTS
    assert notification.next_attempt_at is None
    assert deliver_due_notifications() == 0

    changelist = reverse("admin:ops_notification_changelist")
    page = admin_client.get(changelist + "?status=failed")
    assert "gave up" in page.content.decode()

    flaky_provider.failures = 0
    response = admin_client.post(
        changelist, {"action": "retry_now", "_selected_action": [notification.pk]}, follow=True
    )
    assert "Queued 1 message(s)" in response.content.decode()
    notification.refresh_from_db()
    assert notification.status == Notification.Status.SENT
    assert len(mail.outbox) == 1
    audit = AuditLog.objects.get(action="notification.retry_now")
    assert audit.actor_type == "staff"
    assert audit.target_id == str(notification.pk)


def test_secrets_never_reach_the_stored_error(flaky_provider):
    flaky_provider.failures = 1
    flaky_provider.error = "401 for key re_live_abcdef123456"
    with override_settings(RESEND_API_KEY="re_live_abcdef123456"):
        notification = notification_enqueue(
            kind="welcome", channel="email", recipient="ada@example.com"
        )
    notification.refresh_from_db()
    assert "re_live_abcdef123456" not in notification.last_error
    assert "[redacted]" in notification.last_error


def test_row_left_in_sending_by_a_dead_worker_is_delivered_once():
    notification = Notification.objects.create(
        key="email:ada@example.com:welcome:",
        channel="email",
        kind="welcome",
        recipient="ada@example.com",
        status=Notification.Status.SENDING,
        next_attempt_at=timezone.now() - timedelta(seconds=1),
    )
    # A second worker cannot steal a row another one is sending.
    assert deliver_notification(notification.pk) == "skipped"

    deliver_due_notifications()
    deliver_due_notifications()

    notification.refresh_from_db()
    assert notification.status == Notification.Status.SENT
    assert notification.attempts == 2
    assert len(mail.outbox) == 1


def test_pending_row_whose_task_was_lost_is_picked_up_by_the_schedule():
    notification = Notification.objects.create(
        key="email:ada@example.com:welcome:",
        channel="email",
        kind="welcome",
        recipient="ada@example.com",
    )
    assert deliver_due_notifications() == 0  # its own task may still be on its way
    Notification.objects.filter(pk=notification.pk).update(
        created_at=timezone.now() - notifications.LOST_TASK_AFTER - timedelta(seconds=1)
    )

    assert deliver_due_notifications() == 1
    notification.refresh_from_db()
    assert notification.status == Notification.Status.SENT
    assert len(mail.outbox) == 1


def test_magic_link_is_emailed_then_removed_from_the_outbox(individual_member, admin_client):
    link = "http://127.0.0.1:8000/login/link/verify/?token=secret-token-value"
    notification = notification_enqueue(
        kind="magic_link",
        channel="email",
        recipient="ada@example.com",
        episode="n1",
        member=individual_member,
        context={"link": link},
    )

    assert link in mail.outbox[0].body
    assert "expires in 15 minutes" in mail.outbox[0].body
    notification.refresh_from_db()
    assert "secret-token-value" not in str(notification.context)
    page = admin_client.get(reverse("admin:ops_notification_change", args=[notification.pk]))
    assert page.status_code == 200
    assert "secret-token-value" not in page.content.decode()


def test_outbox_and_audit_log_are_read_only_in_the_admin(admin_client):
    notification_enqueue(kind="welcome", channel="email", recipient="ada@example.com")
    notification = Notification.objects.get()

    assert admin_client.get(reverse("admin:ops_notification_add")).status_code == 403
    assert admin_client.get(reverse("admin:ops_auditlog_add")).status_code == 403
    delete_url = reverse("admin:ops_notification_delete", args=[notification.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    change_page = admin_client.get(reverse("admin:ops_notification_change", args=[notification.pk]))
    assert 'name="_save"' not in change_page.content.decode()
    assert admin_client.get(reverse("admin:ops_auditlog_changelist")).status_code == 200
