"""Users, members, teams and seat invites.

A *Member* is a person with access rights: an individual subscriber, or a seat (owner or team)
on a company plan. Entitlement is never stored here: it is computed from the dj-stripe
subscription the member (individual) or their team (seat) points at, by subscription id.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


def normalize_email(email: str | None) -> str | None:
    """Emails are unique case-insensitively; store them trimmed and lower-cased, with an
    internationalised domain in its ASCII (IDNA) form.

    ``bücher.example``, ``BÜCHER.example`` and ``xn--bcher-kva.example`` are one mailbox, and
    IDNA's mapping folds full-width and other compatibility letters (``ｅｘａｍｐｌｅ.org``)
    into the plain address they imitate, so none of them can hold a second account. A domain
    IDNA cannot encode is left as typed; the email validators refuse it.
    """
    if email is None:
        return None
    email = email.strip().lower()
    local, at, domain = email.rpartition("@")
    if at and domain and not domain.isascii():
        with contextlib.suppress(UnicodeError):
            domain = domain.encode("idna").decode("ascii").lower()
        email = f"{local}@{domain}"
    return email or None


def validate_member_email(value: str) -> None:
    """Refuse what Django's ``EmailValidator`` accepts but no member needs: a quoted local part
    (``"alice"@example.org``), which lets one mailbox be spelt as several distinct accounts."""
    validate_email(value)
    if value.rpartition("@")[0].startswith('"'):
        raise ValidationError("Enter an email address without quotation marks.", code="invalid")


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str | None, password: str | None = None, **extra) -> User:
        user = self.model(email=normalize_email(email), **extra)
        user.set_password(password)  # None gives an unusable password (Discord-only seats)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email=normalize_email(username))


class User(AbstractBaseUser, PermissionsMixin):
    """Login identity for members and staff alike. Email may be empty for Discord-only seats."""

    email = models.EmailField(unique=True, null=True, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    # When the owner of ``email`` proved it (a magic link, a password reset or the emailed
    # confirmation link). Until then a password on the account may be someone else's.
    email_verified_at = models.DateTimeField(null=True, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
        ]

    def save(self, *args, **kwargs) -> None:
        self.email = normalize_email(self.email)
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return self.email or f"user #{self.pk}"

    @property
    def email_proven(self) -> bool:
        """True when nobody but the email's owner can hold this account: the email was
        proven, or there is none (a Discord-only seat, whose identity is its Discord)."""
        return not self.email or self.email_verified_at is not None


class SeatTier(models.TextChoices):
    INDIVIDUAL = "individual", "Individual"
    OWNER = "owner", "Owner seat"
    TEAM = "team", "Team seat"


class ManagedRole(models.TextChoices):
    SQUIRE = "squire", "Squire"
    KNIGHT = "knight", "Knight"
    LORD = "lord", "Lord"
    DEBTOR = "debtor", "Debtor"


class Override(models.TextChoices):
    NONE = "", "None"
    REVOKED = "revoked", "Access revoked"
    FORCED = "forced", "Role forced"


class RoleSyncStatus(models.TextChoices):
    NEVER = "", "Never synced"
    OK = "ok", "In sync"
    NOT_LINKED = "not_linked", "Discord not linked"
    NOT_IN_GUILD = "not_in_guild", "Not in the guild"
    FAILED = "failed", "Failed"


class Team(models.Model):
    """A company plan. Billing is keyed by the Stripe subscription id, never the customer."""

    name = models.CharField(max_length=100)
    primary_owner = models.ForeignKey(
        "Member", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    stripe_customer_id = models.CharField(max_length=255, blank=True, db_index=True)
    subscription_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    checkout_session_id = models.CharField(max_length=255, blank=True)
    # Paid seat counts mirror Stripe's item quantities (updated from subscription events).
    owner_seats = models.PositiveIntegerField(default=0)
    team_seats = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name

    def paid_seats(self, tier: str) -> int:
        return self.owner_seats if tier == SeatTier.OWNER else self.team_seats


@dataclass(frozen=True)
class DiscordUser:
    """A Discord account as OAuth identified it: what a member links (not a row of its own)."""

    id: str
    username: str
    avatar: str


class Member(models.Model):
    # What links a Discord account to the member: written together when linking, and
    # cleared together (with the guild and role state) when staff reset the claim.
    DISCORD_LINK_FIELDS = ("discord_id", "discord_username", "discord_avatar", "linked_at")

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="member")
    stripe_customer_id = models.CharField(max_length=255, blank=True, db_index=True)
    # Individual plan only; seat members are entitled through team.subscription_id.
    subscription_id = models.CharField(max_length=255, blank=True, db_index=True)
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="members"
    )
    seat_tier = models.CharField(
        max_length=16, choices=SeatTier.choices, default=SeatTier.INDIVIDUAL
    )

    discord_id = models.CharField(max_length=32, null=True, blank=True, unique=True)
    discord_username = models.CharField(max_length=100, blank=True)
    discord_avatar = models.CharField(max_length=100, blank=True)
    linked_at = models.DateTimeField(null=True, blank=True)
    in_guild = models.BooleanField(default=False)
    guild_joined_at = models.DateTimeField(null=True, blank=True)
    guild_left_at = models.DateTimeField(null=True, blank=True)

    introduced_at = models.DateTimeField(null=True, blank=True)
    intro_message_id = models.CharField(max_length=32, blank=True)
    intro_guidance_sent_at = models.DateTimeField(null=True, blank=True)

    override = models.CharField(max_length=16, choices=Override.choices, blank=True)
    forced_role = models.CharField(max_length=16, choices=ManagedRole.choices, blank=True)
    override_reason = models.TextField(blank=True)

    # Lifecycle: when the current subscription was first paid, and when access ended.
    paid_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    # Managed roles as Discord last reported them, and the last sync outcome.
    discord_roles = models.JSONField(default=list, blank=True)
    role_sync_status = models.CharField(max_length=16, choices=RoleSyncStatus.choices, blank=True)
    role_sync_error = models.TextField(blank=True)
    roles_synced_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["paid_at"]), models.Index(fields=["team", "seat_tier"])]

    def __str__(self) -> str:
        return self.user.email or self.discord_username or f"member #{self.pk}"

    @property
    def is_primary_owner(self) -> bool:
        return self.team_id is not None and self.team.primary_owner_id == self.pk

    @property
    def billing_subscription_id(self) -> str:
        """The subscription that decides this member's entitlement."""
        if self.team_id is not None:
            return self.team.subscription_id or ""
        return self.subscription_id


class Invite(models.Model):
    """A reusable seat invite: anyone holding the link may claim until the tier is full."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invites")
    tier = models.CharField(
        max_length=16, choices=[(SeatTier.OWNER, "Owner"), (SeatTier.TEAM, "Team")]
    )
    email = models.EmailField(blank=True)
    token = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_claimed_at = models.DateTimeField(null=True, blank=True)
    last_claimed_by = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.get_tier_display()} invite to {self.team}"
