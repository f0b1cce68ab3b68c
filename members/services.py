"""Write services for accounts: sign-up, magic links and password-reset emails.

Views call these; they never touch the ORM for writes themselves. Every change writes an
audit row, and every email goes through the outbox (``ops.services.notification_enqueue``)
after commit, so a rolled-back sign-up never sends anything.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from urllib.parse import urlencode

import structlog
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from sesame.utils import get_query_string

from members.gates import member_login_allowed
from members.models import Member, User, normalize_email
from ops.errors import ServiceError
from ops.models import AuditAction, AuditActor
from ops.services import audit_actor, audit_record, notification_enqueue

log = structlog.get_logger(__name__)

# One message for every sign-up refusal that could reveal whether an account exists.
SIGNUP_REFUSED = "We could not create an account with these details."


class MemberError(ServiceError):
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
        **audit_actor(member, AuditActor.MEMBER, label=normalized),
        action=AuditAction.MEMBER_SIGNED_UP,
        target=member,
    )
    email_verify_send(user=user)
    return user


def _account_email(*, user: User, kind: str, context: dict, action: str = "") -> None:
    """Queue an account email (a link for the account's owner) and, with ``action``, audit it.

    Each request is its own occurrence: a fresh episode key, so a second request mails again.
    """
    member = Member.objects.filter(user=user).first()
    notification_enqueue(
        kind=kind,
        channel="email",
        recipient=user.email or "",
        episode=uuid.uuid4().hex,
        member=member,
        context=context,
    )
    if action:
        audit_record(
            actor_type=AuditActor.MEMBER,
            actor_id=str(member.pk) if member else "",
            actor_label=user.email or "",
            action=action,
            target=member or user,
        )


# --- Proving the email ----------------------------------------------------------------------

EMAIL_VERIFY_MAX_AGE = timedelta(days=2)
_EMAIL_VERIFY_SALT = "members.email-verify"


def email_verify_url(*, user: User) -> str:
    """A link that proves ``user.email``: signed, bound to the address, valid two days, and
    spent once the email is proven (see ``email_verify_user``)."""
    token = signing.dumps({"u": user.pk, "e": user.email}, salt=_EMAIL_VERIFY_SALT)
    return absolute_url(f"{reverse('members:email_verify')}?{urlencode({'token': token})}")


def email_verify_user(token: str) -> User | None:
    """The account a confirmation link names, while the link can still be used."""
    try:
        data = signing.loads(
            token, salt=_EMAIL_VERIFY_SALT, max_age=EMAIL_VERIFY_MAX_AGE.total_seconds()
        )
    except signing.BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    return User.objects.filter(
        pk=data.get("u"), email=data.get("e"), email_verified_at__isnull=True, is_active=True
    ).first()


@transaction.atomic
def email_verify_send(*, user: User) -> None:
    """Mail a confirmation link to an account whose email is not proven yet."""
    if user.email_proven:
        return
    _account_email(
        user=user,
        kind="email_verify",
        context={
            "link": email_verify_url(user=user),
            "expires_hours": int(EMAIL_VERIFY_MAX_AGE.total_seconds() // 3600),
        },
    )


@transaction.atomic
def email_proven(*, user: User, via: str, keep_password: bool, now: datetime | None = None) -> bool:
    """Record that the owner of ``user.email`` proved it; True on the first proof.

    A password set before the first proof may be a squatter's (anyone can sign up with
    someone else's address), so it is dropped, which also ends every session of the account
    (Django ties a session to the password hash). The caller logs the proving browser in
    again. ``keep_password`` is for a proof that cannot come from a squatter: a browser
    already logged in to this very account (it knows the password and now the inbox), or a
    password reset, which replaced the password itself.
    """
    locked = User.objects.select_for_update().get(pk=user.pk)
    if locked.email_verified_at is not None:
        return False
    locked.email_verified_at = now or timezone.now()
    dropped = not keep_password and locked.has_usable_password()
    fields = ["email_verified_at"]
    if not keep_password:
        locked.set_unusable_password()
        fields.append("password")
    locked.save(update_fields=fields)
    user.email_verified_at, user.password = locked.email_verified_at, locked.password
    member = Member.objects.filter(user=locked).first()
    audit_record(
        actor_type=AuditActor.MEMBER,
        actor_id=str(member.pk) if member else "",
        actor_label=locked.email or "",
        action=AuditAction.MEMBER_EMAIL_VERIFIED,
        target=member or locked,
        details={"via": via, "password_dropped": dropped},
    )
    log.info("email_verified", via=via, password_dropped=dropped)
    return True


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
    if not member_login_allowed(user):
        log.info("magic_link_staff_refused")
        return
    _account_email(
        user=user,
        kind="magic_link",
        context={
            "link": magic_link_url(user=user),
            "expires_minutes": settings.SESAME_MAX_AGE // 60,
        },
        action=AuditAction.MEMBER_MAGIC_LINK_REQUESTED,
    )


@transaction.atomic
def password_reset_email(*, user: User, link: str) -> None:
    """Queue the password-reset email built by Django's reset form."""
    _account_email(
        user=user,
        kind="password_reset",
        context={"link": link},
        action=AuditAction.MEMBER_PASSWORD_RESET_REQUESTED,
    )


def member_for_user(*, user: User) -> Member:
    """The member row of a logged-in user, created on first use for staff or legacy logins."""
    member, _ = Member.objects.get_or_create(user=user)
    return member
