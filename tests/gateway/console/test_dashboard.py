"""The staff dashboard: counts, weekly new/churned, MRR from mirrored Stripe data, health."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from djstripe.models import Customer, Price, Product, Subscription

from billing.models import FailureEpisode, StripeEventInbox
from gateway.admin_site import week_starts
from members.models import Member
from ops.models import Heartbeat, ReconciliationRun
from tests import personas

pytestmark = pytest.mark.django_db


def price(amount: int, interval: str, currency: str = "eur", count: int = 1) -> dict:
    return {
        "id": f"price_{amount}_{interval}_{currency}",
        "unit_amount": amount,
        "currency": currency,
        "recurring": {"interval": interval, "interval_count": count},
    }


def seed_subscription(sub_id: str, status: str, items: list[tuple[dict | str, int]]) -> None:
    customer, _ = Customer.objects.get_or_create(id=f"cus_{sub_id}", defaults={"stripe_data": {}})
    data = {
        "id": sub_id,
        "status": status,
        "items": {"data": [{"price": p, "quantity": q} for p, q in items]},
    }
    Subscription.objects.create(id=sub_id, customer=customer, stripe_data=data)


@pytest.fixture
def stripe_mirror():
    # 1 individual monthly (20.00) + a company: 2 owner seats and 3 team seats yearly.
    seed_subscription("sub_a", "active", [(price(2000, "month"), 1)])
    seed_subscription("sub_b", "past_due", [(price(24000, "year"), 2), (price(12000, "year"), 3)])
    # Price not expanded on the item: read from dj-stripe's Price row.
    product = Product.objects.create(id="prod_weekly", name="Weekly pass", stripe_data={})
    Price.objects.create(
        id="price_week_usd", active=True, product=product, stripe_data=price(500, "week", "usd")
    )
    seed_subscription("sub_c", "trialing", [("price_week_usd", 1)])
    seed_subscription("sub_d", "canceled", [(price(9900, "month"), 1)])  # not revenue
    seed_subscription("sub_e", "incomplete", [(price(9900, "month"), 1)])  # not revenue


def test_mrr_is_monthly_normalised_per_currency(admin_web, stripe_mirror):
    response = admin_web.get(reverse("admin_dashboard"))

    assert response.status_code == 200
    # EUR: 20.00 + (2*240 + 3*120)/12 = 20 + 70 = 90.00; USD: 5.00 * 52 / 12 = 21.67
    assert response.context["mrr"] == {"EUR": Decimal("90.00"), "USD": Decimal("21.67")}
    html = response.content.decode()
    assert "90.00 EUR" in html and "21.67 USD" in html


def test_counts_weekly_charts_and_operations(admin_web, discord):
    now = timezone.now()
    this_week = week_starts(now)[-1]
    active = personas.member("active")
    Member.objects.filter(pk=active.pk).update(paid_at=this_week + timedelta(minutes=5))
    old = personas.member("old")
    Member.objects.filter(pk=old.pk).update(paid_at=now - timedelta(weeks=30))
    lapsed = personas.member("lapsed", status="canceled")
    Member.objects.filter(pk=lapsed.pk).update(
        paid_at=this_week - timedelta(weeks=2, hours=-1),
        cancelled_at=this_week - timedelta(weeks=1, hours=-1),
    )
    debtor = personas.member("debtor", status="past_due")
    FailureEpisode.objects.create(
        subscription_id=debtor.subscription_id,
        opened_at=now - timedelta(days=4),
        grace_ends_at=now - timedelta(days=2),
        debtor_at=now - timedelta(days=2),
    )
    personas.member("nosub", status=None)
    for i, status in enumerate(["failed", "failed", "retrying", "processed"]):
        StripeEventInbox.objects.create(
            event_id=f"evt_{i}", type="invoice.paid", body="{}", received_at=now, status=status
        )
    ReconciliationRun.objects.create(
        status="drift", trigger="schedule", started_at=now, findings=[{"kind": "x"}]
    )
    Heartbeat.objects.create(name="worker", beat_at=now - timedelta(seconds=30))

    response = admin_web.get(reverse("admin_dashboard"))
    context = response.context

    assert dict(context["states"]) == {
        "Active (paid, no failure)": 2,
        "Grace (payment failed, full access)": 0,
        "Complimentary (granted by staff)": 0,
        "Debtor": 1,
        "Suspended (payment disputed)": 0,
        "Cancelled / ended": 1,
        "No subscription": 1,
    }
    new_chart, churn_chart = context["charts"][1], context["charts"][2]
    assert [b.value for b in new_chart.bars][-3:] == [1, 0, 1]
    assert [b.value for b in churn_chart.bars][-3:] == [0, 1, 0]
    assert context["failed_webhooks"] == 2 and context["retrying_webhooks"] == 1
    assert context["open_episodes"] == 1
    assert context["last_run"].status == "drift"
    checks = dict(context["checks"])
    assert checks["worker"]["ok"] is True
    assert checks["bot"]["ok"] is False  # no bot heartbeat: shown as failing

    html = response.content.decode()
    assert "<svg" in html and 'class="bar"' in html
    assert "Drift found" in html
    # CSP: no inline scripts or style attributes; the stylesheet is a static file.
    assert "<script>" not in html and not re.search(r"\sstyle=", html)
    assert "admin-dashboard.css" in html


def test_dashboard_is_linked_from_the_admin_index_and_staff_only(admin_web, client):
    index = admin_web.get(reverse("admin:index")).content.decode()
    assert reverse("admin_dashboard") in index
    anonymous = client.get(reverse("admin_dashboard"))
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
