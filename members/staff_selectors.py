"""Reads for the staff console: each member's billing state, computed in SQL.

The console filters and the dashboard count members by state over the whole table, so the
state is an annotation (subqueries on dj-stripe's ``Subscription`` by subscription id and on
open failure episodes), never a Python loop over members.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import (
    Case,
    CharField,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.fields.json import KT
from djstripe.models import Subscription

from billing.models import FailureEpisode
from billing.selectors import ENTITLED_STATUSES
from members.models import Member


class BillingState:
    """Mutually exclusive states, most urgent first (a Debtor is also "paid" in Stripe)."""

    DEBTOR = "debtor"
    GRACE = "grace"
    ACTIVE = "active"
    CANCELLED = "cancelled"
    NONE = "none"

    CHOICES = (
        (ACTIVE, "Active (paid, no failure)"),
        (GRACE, "Grace (payment failed, full access)"),
        (DEBTOR, "Debtor"),
        (CANCELLED, "Cancelled / ended"),
        (NONE, "No subscription"),
    )
    ENTITLED = (ACTIVE, GRACE)


def with_billing_state(queryset: QuerySet[Member], now: datetime) -> QuerySet[Member]:
    """Annotate ``billing_subscription``, ``subscription_status`` and ``billing_state``."""
    subscription_id = Case(
        When(team__isnull=False, then=F("team__subscription_id")),
        default=F("subscription_id"),
        output_field=CharField(),
    )
    status = Subquery(
        Subscription.objects.filter(id=OuterRef("billing_subscription"))
        .annotate(status=KT("stripe_data__status"))
        .values("status")[:1],
        output_field=CharField(),
    )
    open_episodes = FailureEpisode.objects.filter(
        subscription_id=OuterRef("billing_subscription"), closed_at__isnull=True
    )
    return (
        queryset.annotate(billing_subscription=subscription_id)
        .annotate(
            subscription_status=status,
            in_debtor=Exists(open_episodes.filter(debtor_at__lte=now)),
            in_failure=Exists(open_episodes),
        )
        .annotate(
            billing_state=Case(
                When(
                    Q(subscription_status__in=ENTITLED_STATUSES, in_debtor=True),
                    then=Value(BillingState.DEBTOR),
                ),
                When(
                    Q(subscription_status__in=ENTITLED_STATUSES, in_failure=True),
                    then=Value(BillingState.GRACE),
                ),
                When(subscription_status__in=ENTITLED_STATUSES, then=Value(BillingState.ACTIVE)),
                When(
                    Q(subscription_status__isnull=False) | Q(cancelled_at__isnull=False),
                    then=Value(BillingState.CANCELLED),
                ),
                default=Value(BillingState.NONE),
                output_field=CharField(),
            )
        )
    )
