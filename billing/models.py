"""Billing state that Stripe does not hold: the failure episode timeline.

Everything else about money (customers, subscriptions, invoices, events) is mirrored by
dj-stripe and read from its models by subscription id.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class FailureEpisode(models.Model):
    """One run of failed renewals for a subscription: grace, then Debtor, then removal.

    Opened when Stripe shows a renewal (``billing_reason=subscription_cycle``) failing — the
    invoice open and unpaid, the subscription ``past_due``/``unpaid`` (``billing/truth.py``);
    closed by recovery (that invoice or a later one paid), cancellation or removal. At most
    one is open per subscription, so repeated failures never restart the timeline.
    """

    class CloseReason(models.TextChoices):
        RECOVERED = "recovered", "Recovered"
        REMOVED = "removed", "Removed after Debtor period"
        CANCELLED = "cancelled", "Subscription ended"
        STALE = "stale", "Closed by reconciliation"

    subscription_id = models.CharField(max_length=255, db_index=True)
    member = models.ForeignKey(
        "members.Member", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    team = models.ForeignKey(
        "members.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    invoice_id = models.CharField(max_length=255, blank=True)
    opened_at = models.DateTimeField()
    grace_ends_at = models.DateTimeField()
    debtor_at = models.DateTimeField(null=True, blank=True)
    removal_due_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=16, choices=CloseReason.choices, blank=True)
    # A removal (``close_reason=removed``) keeps the subscription's members out while Stripe
    # still shows it unpaid (``cancel_stripe_on_removal`` off leaves it past_due): set once
    # Stripe reports the subscription paid again, which lets its members back in.
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subscription_id"],
                condition=Q(closed_at__isnull=True),
                name="one_open_failure_episode_per_subscription",
            )
        ]
        indexes = [models.Index(fields=["closed_at", "grace_ends_at"])]

    def __str__(self) -> str:
        return f"Failure episode {self.pk} for {self.subscription_id}"

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


class StripeEventInbox(models.Model):
    """One row per Stripe event id: the raw delivery, and the queue its processing runs from.

    The webhook view stores a verified delivery with a single ``INSERT … ON CONFLICT DO
    NOTHING`` (the unique ``event_id`` absorbs Stripe's duplicate deliveries, even concurrent
    ones) and answers at once; ``billing.drain`` claims rows with a conditional UPDATE, so each
    event is applied by one worker at a time, and marks a row processed only after success.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        PROCESSED = "processed", "Processed"
        RETRYING = "retrying", "Failed, will retry"
        FAILED = "failed", "Failed, retries exhausted"
        IGNORED = "ignored", "Ignored (livemode mismatch)"

    class Lane(models.IntegerChoices):
        """Which events go first: those that admit or welcome someone, and staff replays,
        before bulk renewal traffic (``billing.subjects.lane_of``)."""

        PEOPLE = 0, "People (purchases, staff replays)"
        BULK = 1, "Bulk (renewals and other changes)"

    # Only the indexes the queue and the replay command need: every index is one more write on
    # the acknowledgement path (type and object_id are for reading in the admin).
    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=255)
    livemode = models.BooleanField(default=False)
    object_id = models.CharField(max_length=255, blank=True)
    body = models.TextField()
    received_at = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    lane = models.PositiveSmallIntegerField(choices=Lane.choices, default=Lane.BULK)
    # The drain run that holds a PROCESSING row (with ``locked_until`` as its lease).
    claimed_by = models.CharField(max_length=32, blank=True)

    class Meta:
        verbose_name = "Stripe event"
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            # Small (people events are few), and the drain asks it between every two objects.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(lane=0, status__in=["pending", "retrying"]),
                name="inbox_people_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class ComplimentaryMembership(models.Model):
    """Access granted by staff without a subscription: reason required, optional end.

    Open while ``ended_at`` is null; an ``ends_at`` in the past no longer entitles even before
    the billing tick closes the row through the normal ending path.
    """

    member = models.ForeignKey(
        "members.Member", on_delete=models.CASCADE, related_name="complimentary_memberships"
    )
    reason = models.TextField()
    granted_by = models.CharField(max_length=255, blank=True)
    granted_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["member"],
                condition=Q(ended_at__isnull=True),
                name="one_open_complimentary_membership_per_member",
            )
        ]

    def __str__(self) -> str:
        return f"Complimentary membership {self.pk} of member {self.member_id}"


class Dispute(models.Model):
    """A chargeback on a payment of a subscription, as Stripe last reported it.

    While open (``closed_at`` null) the subscription entitles nobody; ``won``
    restores access, ``lost`` ends it like a cancellation.
    """

    class Outcome(models.TextChoices):
        WON = "won", "Won"
        LOST = "lost", "Lost"

    dispute_id = models.CharField(max_length=255, unique=True)
    subscription_id = models.CharField(max_length=255, db_index=True)
    charge_id = models.CharField(max_length=255, blank=True)
    invoice_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=32)
    reason = models.CharField(max_length=64, blank=True)
    amount = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=8, blank=True)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]

    def __str__(self) -> str:
        return f"Dispute {self.dispute_id} ({self.status})"


class StripeObjectRead(models.Model):
    """The last read of a Stripe object whose result was applied (``billing.drain``).

    An event created before ``read_at`` is settled by that read: the state it announces was
    already in what was read, mirrored and converged, so the drain marks it processed without
    reading again. For a subscription, ``invoice_ids`` are the invoices mirrored and converged
    with that read; an event about another invoice still needs its own look.
    """

    subject = models.CharField(max_length=300, unique=True)
    read_at = models.DateTimeField()
    invoice_ids = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"{self.subject} read at {self.read_at:%Y-%m-%d %H:%M:%S}"


class Plan(models.Model):
    """A plan of the catalogue staff sell: an individual plan or a company plan (seats).

    Its Stripe prices are :class:`PlanPrice` rows. ``billing.catalogue`` reads the catalogue:
    which plans and intervals the pages offer, and which role a Stripe price plays in a
    subscription (seat counts follow the role, whichever plan or interval was bought).
    """

    class Kind(models.TextChoices):
        INDIVIDUAL = "individual", "Individual"
        COMPANY = "company", "Company (owner and team seats)"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    order = models.PositiveIntegerField(default=0, help_text="Smaller numbers are shown first.")
    visible = models.BooleanField(
        default=True, help_text="Offered on the site. Hidden plans keep their subscribers."
    )
    trial_days = models.PositiveIntegerField(
        default=0, help_text="Days of free trial on Checkout (0 = no trial)."
    )
    allow_promotion_codes = models.BooleanField(
        default=False, help_text="Checkout asks for a Stripe promotion code."
    )

    class Meta:
        ordering = ["order", "pk"]

    def __str__(self) -> str:
        return self.name


class PlanPrice(models.Model):
    """One Stripe price of a plan and the role it plays: an individual membership, an owner
    seat or a team seat (``members.SeatTier``).

    The price is kept by its Stripe id rather than as a foreign key to dj-stripe's mirrored
    ``Price``: the catalogue imported from the old price settings exists before anything is
    mirrored (the migration never calls Stripe), and a re-sync of dj-stripe's rows can never
    delete a price that subscriptions still bill. The admin offers only mirrored active
    recurring prices. A price belongs to one plan, so its role is never ambiguous.
    """

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="prices")
    # The values of ``members.SeatTier``: a seat price's role is the tier its seats are.
    role = models.CharField(
        max_length=16,
        choices=[("individual", "Individual"), ("owner", "Owner seat"), ("team", "Team seat")],
    )
    stripe_price_id = models.CharField("Stripe price", max_length=255, unique=True)
    active = models.BooleanField(
        default=True,
        help_text="Sold on the site. An inactive price still counts its subscribers' seats.",
    )

    class Meta:
        verbose_name = "plan price"
        ordering = ["plan", "role", "pk"]

    def __str__(self) -> str:
        return f"{self.plan} — {self.get_role_display()} ({self.stripe_price_id})"
