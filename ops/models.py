"""Operational state: audit log, notification outbox, templates, flags, database settings,
heartbeats, leases (one-at-a-time locks across hosts) and reconciliation runs."""

from __future__ import annotations

from django.db import models


class AuditActor(models.TextChoices):
    """Who acted: the one vocabulary of ``AuditLog.actor_type``."""

    SYSTEM = "system", "System"
    MEMBER = "member", "Member"
    STAFF = "staff", "Staff"
    STRIPE = "stripe", "Stripe"
    DISCORD = "discord", "Discord"


class AuditAction(models.TextChoices):
    """What happened: every ``AuditLog.action`` the code writes (values as stored since v1)."""

    ACCESS_RESTORED = "access_restored"
    BILLING_CATALOGUE_PRICES_SYNCED = "billing.catalogue_prices_synced"
    BILLING_CHECKOUT_STARTED = "billing.checkout_started"
    BILLING_CUSTOMER_CREATED = "billing.customer_created"
    BILLING_PLAN_CHANGED = "billing.plan_changed"
    BILLING_PORTAL_OPENED = "billing.portal_opened"
    BILLING_SEATS_ADDED = "billing.seats_added"
    BILLING_TEAM_CUSTOMER_SEPARATED = "billing.team_customer_separated"
    CHARGE_REFUNDED = "charge_refunded"
    CHECKOUT_COMPLETED = "checkout_completed"
    COMPLIMENTARY_ENDED = "complimentary_ended"
    COMPLIMENTARY_GRANTED = "complimentary_granted"
    DEBTOR_ENTERED = "debtor_entered"
    DEBTOR_REMOVED = "debtor_removed"
    DISCORD_GUILD_JOINED = "discord_guild_joined"
    DISCORD_LINKED = "discord_linked"
    DISCORD_MEMBER_KICKED = "discord_member_kicked"
    DISCORD_ONLY_MEMBER_MERGED = "discord_only_member_merged"
    DISCORD_ROLES_STRIPPED = "discord_roles_stripped"
    DISCORD_ROLE_ADDED = "discord_role_added"
    DISCORD_ROLE_REMOVED = "discord_role_removed"
    DISCORD_ROLE_REMOVED_UNKNOWN_USER = "discord_role_removed_unknown_user"
    DISPUTE_LOST = "dispute_lost"
    DISPUTE_OPENED = "dispute_opened"
    DISPUTE_WON = "dispute_won"
    DUPLICATE_SUBSCRIPTION_CANCELLED = "duplicate_subscription_cancelled"
    EXPORT_DOWNLOADED = "export_downloaded"
    FAILURE_EPISODE_CLOSED = "failure_episode_closed"
    FAILURE_EPISODE_RECOVERED = "failure_episode_recovered"
    FEATURE_FLAG_SET = "feature_flag.set"
    GATEWAY_CONFIG_UPDATED = "gateway_config.updated"
    INVITE_CREATED = "invite_created"
    INVITE_REVOKED = "invite_revoked"
    MEMBER_ACCESS_RESTORED = "member_access_restored"
    MEMBER_ACCESS_REVOKED = "member_access_revoked"
    MEMBER_CLAIM_RESET = "member_claim_reset"
    MEMBER_EMAIL_VERIFIED = "member.email_verified"
    MEMBER_GUILD_JOINED = "member.guild_joined"
    MEMBER_GUILD_LEFT = "member.guild_left"
    MEMBER_INTRODUCED = "member.introduced"
    MEMBER_MAGIC_LINK_REQUESTED = "member.magic_link_requested"
    MEMBER_PASSWORD_RESET_REQUESTED = "member.password_reset_requested"
    MEMBER_RESYNC_REQUESTED = "member_resync_requested"
    MEMBER_ROLE_FORCED = "member_role_forced"
    MEMBER_SIGNED_UP = "member.signed_up"
    MESSAGE_TEMPLATE_CREATED = "message_template.created"
    MESSAGE_TEMPLATE_RESET = "message_template.reset"
    MESSAGE_TEMPLATE_UPDATED = "message_template.updated"
    NOTIFICATION_RETRY_NOW = "notification.retry_now"
    PAYMENT_FAILED = "payment_failed"
    RECONCILIATION_REQUESTED = "reconciliation_requested"
    REMOVAL_SETTLED = "removal_settled"
    SEATS_UPDATED = "seats_updated"
    SEAT_CLAIMED = "seat_claimed"
    SEAT_RELEASED = "seat_released"
    SEAT_REVOKED = "seat_revoked"
    STAFF_2FA_ENROLLED = "staff.2fa_enrolled"
    STAFF_2FA_RESET = "staff.2fa_reset"
    STAFF_RECOVERY_CODE_USED = "staff.recovery_code_used"
    STRIPE_EVENT_REPROCESS_REQUESTED = "stripe_event_reprocess_requested"
    SUBSCRIPTION_ACTIVATED = "subscription_activated"
    SUBSCRIPTION_ENDED = "subscription_ended"
    SUBSCRIPTION_REPLACED = "subscription_replaced"
    SUBSCRIPTION_STATUS_CHANGED = "subscription_status_changed"
    TEAM_MEMBER_DETACHED = "team_member_detached"
    TEAM_OWNER_REATTACHED = "team_owner_reattached"


class AuditLog(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_type = models.CharField(max_length=16, choices=AuditActor.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=255, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True, db_index=True)
    details = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    request_id = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"{self.action} on {self.target_type} {self.target_id}"


class Notification(models.Model):
    """The outbox: one row per message, unique per (channel, recipient, kind, episode).

    ``key`` is the SHA-256 of that full tuple (``notification_key``), so addresses and episode
    names of any length stay distinct; ``episode`` keeps the readable occasion.
    """

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        DM = "dm", "Discord DM"
        ADMIN_CHANNEL = "admin_channel", "Admin channel"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (will retry)"
        UNDELIVERABLE = "undeliverable", "Undeliverable"

    key = models.CharField(max_length=255, unique=True)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    kind = models.CharField(max_length=64, db_index=True)
    recipient = models.CharField(max_length=255)
    episode = models.TextField(blank=True)
    member = models.ForeignKey(
        "members.Member",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="notifications",
    )
    context = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} to {self.recipient} ({self.status})"


class MessageTemplate(models.Model):
    """An admin edit of a message; the default lives in ``templates/messages/``."""

    kind = models.CharField(max_length=64, unique=True)
    subject = models.CharField(max_length=255, blank=True)
    body = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return self.kind


class FeatureFlag(models.Model):
    key = models.CharField(max_length=64, unique=True)
    enabled = models.BooleanField(default=False)
    description = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.key


class GatewayConfig(models.Model):
    """Timings and switches staff change in the admin without a restart (one row)."""

    grace_hours = models.PositiveIntegerField(default=48)
    grace_reminder_hours = models.PositiveIntegerField(default=24)
    debtor_days = models.PositiveIntegerField(default=30)
    debtor_reminder_days = models.CharField(max_length=100, default="7,10,15,20,25")
    final_warning_hours = models.CharField(max_length=100, default="48,24,12")
    cancel_stripe_on_removal = models.BooleanField(default=True)
    claim_reminder_hours = models.CharField(max_length=100, default="48,168")
    claim_reminder_every_days = models.PositiveIntegerField(default=30)
    claim_reminder_until_days = models.PositiveIntegerField(default=180)
    intro_guidance_cooldown_hours = models.PositiveIntegerField(default=24)
    reconcile_hour = models.PositiveSmallIntegerField(default=4)
    reconcile_timezone = models.CharField(max_length=64, default="UTC")
    reconcile_autofix = models.BooleanField(default=False)
    reconcile_paused = models.BooleanField(default=False)
    retention_days = models.PositiveIntegerField(default=90)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "gateway settings"
        verbose_name_plural = "gateway settings"

    def __str__(self) -> str:
        return "Gateway settings"

    @classmethod
    def load(cls) -> GatewayConfig:
        config, _ = cls.objects.get_or_create(pk=1)
        return config


class Heartbeat(models.Model):
    """Last sign of life of a long-running process (worker, bot) for readiness checks."""

    name = models.CharField(max_length=64, unique=True)
    beat_at = models.DateTimeField()
    details = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return self.name


class Lease(models.Model):
    """A named lock held until ``expires_at``: one bot, one reconciliation at a time."""

    name = models.CharField(max_length=64, unique=True)
    holder = models.CharField(max_length=255, blank=True)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder}"


class ReconciliationRun(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        RUNNING = "running", "Running"
        CLEAN = "clean", "Clean"
        DRIFT = "drift", "Drift found"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped (paused)"

    status = models.CharField(max_length=16, choices=Status.choices, db_index=True)
    trigger = models.CharField(max_length=32, default="schedule")
    fix = models.BooleanField(default=False)
    is_verification = models.BooleanField(default=False)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    # The local day a daily run belongs to; unique, so two workers cannot both start it.
    scheduled_day = models.DateField(null=True, blank=True, unique=True)
    started_at = models.DateTimeField(null=True, blank=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    findings = models.JSONField(default=list, blank=True)
    fixes = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"Reconciliation {self.pk} ({self.status})"
