"""Write services for accounts: sign-up, magic links and password-reset emails.

Views call these; they never touch the ORM for writes themselves. Every change writes an
audit row, and every email goes through the outbox (``ops.services.notification_enqueue``)
after commit, so a rolled-back sign-up never sends anything.
"""

from __future__ import annotations

import uuid

import structlog
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from sesame.utils import get_query_string

from members.models import Member, User, normalize_email
from ops.models import AuditLog
from ops.services import audit_record, notification_enqueue

log = structlog.get_logger(__name__)

# One message for every sign-up refusal that could reveal whether an account exists.
SIGNUP_REFUSED = "We could not create an account with these details."


class MemberError(Exception):
    """A member-facing refusal; the message is safe to show on the page."""


def absolute_url(path: str) -> str:
    """Links in emails are built from ``APP_URL``, never from the request's Host header."""
    return f"{settings.APP_URL}{path}"


@transaction.atomic
def member_signup(*, email: str, password: str) -> User:
    """Create a login and its Member. The Stripe customer is created later, at checkout.

    Everything about the request is checked before the duplicate check, so a weak password
    gets the same answer whether or not the email has an account. A duplicate email (any
    letter case) then raises ``MemberError`` with the same neutral message as other refusals,
    after hashing the password like a real sign-up, so the time taken does not tell either.
    """
    normalized = normalize_email(email)
    if not normalized:
        raise MemberError(SIGNUP_REFUSED)
    user = User(email=normalized)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise MemberError(" ".join(exc.messages)) from exc
    user.set_password(password)
    if User.objects.filter(email__iexact=normalized).exists():
        log.info("signup_refused_duplicate")
        raise MemberError(SIGNUP_REFUSED)
    try:
        # A concurrent sign-up with the same email loses on the case-insensitive constraint.
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:
        raise MemberError(SIGNUP_REFUSED) from exc
    member = Member.objects.create(user=user)
    audit_record(
        actor_type=AuditLog.Actor.MEMBER,
        actor_id=str(member.pk),
        actor_label=normalized,
        action="member.signed_up",
        target=member,
    )
    return user


def magic_link_url(*, user: User) -> str:
    """A single-use login link, valid for ``SESAME_MAX_AGE`` seconds."""
    return absolute_url(reverse("members:magic_link_login") + get_query_string(user))


@transaction.atomic
def magic_link_request(*, email: str) -> None:
    """Email a login link if an active account has this address; otherwise do nothing.

    The caller shows the same response either way, so this never reveals whether the email
    is known.
    """
    normalized = normalize_email(email)
    user = None
    if normalized:
        user = User.objects.filter(email__iexact=normalized, is_active=True).first()
    if user is None:
        log.info("magic_link_unknown_email")
        return
    member = Member.objects.filter(user=user).first()
    # Each request is its own occurrence: a fresh episode key so a second request mails again.
    notification_enqueue(
        kind="magic_link",
        channel="email",
        recipient=user.email or "",
        episode=uuid.uuid4().hex,
        member=member,
        context={
            "link": magic_link_url(user=user),
            "expires_minutes": settings.SESAME_MAX_AGE // 60,
        },
    )
    audit_record(
        actor_type=AuditLog.Actor.MEMBER,
        actor_id=str(member.pk) if member else "",
        actor_label=user.email or "",
        action="member.magic_link_requested",
        target=member or user,
    )


@transaction.atomic
def password_reset_email(*, user: User, link: str) -> None:
    """Queue the password-reset email built by Django's reset form."""
    member = Member.objects.filter(user=user).first()
    notification_enqueue(
        kind="password_reset",
        channel="email",
        recipient=user.email or "",
        episode=uuid.uuid4().hex,
        member=member,
        context={"link": link},
    )
    audit_record(
        actor_type=AuditLog.Actor.MEMBER,
        actor_id=str(member.pk) if member else "",
        actor_label=user.email or "",
        action="member.password_reset_requested",
        target=member or user,
    )


def member_for_user(*, user: User) -> Member:
    """The member row of a logged-in user, created on first use for staff or legacy logins."""
    member, _ = Member.objects.get_or_create(user=user)
    return member
