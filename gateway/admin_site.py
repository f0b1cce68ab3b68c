"""Admin login rate limit and the staff dashboard.

The admin is Django's default site; these two views are mounted in front of it in
``gateway/urls.py``: the login (rate-limited per real client IP and per submitted username)
and ``<ADMIN_URL>dashboard/``. Charts are SVG built here and rendered server-side, because the
CSP allows neither inline scripts nor ``style=`` attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from django.conf import settings
from django.contrib import admin
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django_ratelimit.decorators import ratelimit
from djstripe.models import Price, Subscription

from billing.entitlement import ENTITLED_STATUSES, BillingState, with_entitlement
from billing.models import FailureEpisode, StripeEventInbox
from gateway.staff_auth import login_redirect
from members.models import Member, normalize_email
from ops.health import run_checks
from ops.http import rate_limited
from ops.models import ReconciliationRun

log = structlog.get_logger(__name__)

# --- Third-party admin pages ----------------------------------------------------------------

SECRET_NAME_PARTS = ("api_key", "secret")


def _without_secrets(names: Any) -> list[str]:
    return [n for n in names if not any(part in str(n) for part in SECRET_NAME_PARTS)]


def redact_third_party_admins(site: admin.AdminSite = admin.site) -> None:
    """Keep dj-stripe's admin pages from rendering keys and secrets.

    dj-stripe shows every model property as a read-only field, ``default_api_key`` (the
    Stripe secret key) included, and the webhook endpoint's signing ``secret``. Done when the
    root URLconf imports this module, i.e. before any admin page can be served.
    """
    for model, model_admin in site._registry.items():
        if model._meta.app_label != "djstripe" or getattr(model_admin, "_redacted", False):
            continue
        cls = type(model_admin)

        def get_readonly_fields(self, request, obj=None, _orig=cls.get_readonly_fields):
            return _without_secrets(_orig(self, request, obj))

        def get_fields(self, request, obj=None, _orig=cls.get_fields):
            return _without_secrets(_orig(self, request, obj))

        model_admin.get_readonly_fields = get_readonly_fields.__get__(model_admin)
        model_admin.get_fields = get_fields.__get__(model_admin)
        model_admin._redacted = True


redact_third_party_admins()


# --- Login ----------------------------------------------------------------------------------


def _login_rate(group: str, request: HttpRequest) -> str:
    return settings.RATELIMIT_ADMIN_LOGIN


def _username_key(group: str, request: HttpRequest) -> str:
    return normalize_email(request.POST.get("username", "")) or "-"


@ratelimit(group="admin_login.ip", key="ip", rate=_login_rate, method="POST", block=False)
@ratelimit(
    group="admin_login.username", key=_username_key, rate=_login_rate, method="POST", block=False
)
def admin_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """Django's admin login, behind the limits (both counters live in the shared cache)."""
    if getattr(request, "limited", False):
        log.warning("admin_login_rate_limited")
        return rate_limited(request)
    # Signed in with the password but not enrolled yet (second factor required): enrol first.
    enrol = login_redirect(request)
    if enrol is not None:
        return enrol
    return admin.site.login(request, extra_context)


# --- Dashboard numbers ----------------------------------------------------------------------

WEEKS = 12
# Monthly factor per Stripe recurring interval (a year is 12 months, a week 52/12 of one).
MONTHLY_FACTOR = {
    "day": Decimal(365) / 12,
    "week": Decimal(52) / 12,
    "month": Decimal(1),
    "year": Decimal(1) / 12,
}


def _price_data(price: Any, prices: dict[str, dict]) -> dict:
    if isinstance(price, dict):
        return price
    return prices.get(str(price or ""), {})


def mrr_by_currency(subscriptions: list[dict]) -> dict[str, Decimal]:
    """Monthly recurring revenue in major units per currency, from subscription items.

    ``subscriptions`` are Stripe subscription objects (dj-stripe's ``stripe_data``); items
    whose price is not expanded are looked up in dj-stripe's ``Price`` rows.
    """
    price_ids = {
        str(item.get("price"))
        for sub in subscriptions
        for item in (sub.get("items") or {}).get("data") or []
        if item.get("price") and not isinstance(item.get("price"), dict)
    }
    prices = dict(Price.objects.filter(id__in=price_ids).values_list("id", "stripe_data"))
    totals: dict[str, Decimal] = {}
    for sub in subscriptions:
        for item in (sub.get("items") or {}).get("data") or []:
            price = _price_data(item.get("price"), prices)
            recurring = price.get("recurring") or {}
            interval = recurring.get("interval")
            if price.get("unit_amount") is None or interval not in MONTHLY_FACTOR:
                continue
            count = int(recurring.get("interval_count") or 1)
            amount = Decimal(int(price["unit_amount"])) * int(item.get("quantity") or 0)
            monthly = amount * MONTHLY_FACTOR[interval] / count
            currency = str(price.get("currency") or "").upper()
            totals[currency] = totals.get(currency, Decimal(0)) + monthly
    # Stripe amounts are in the currency's minor unit (cents for the currencies we sell in).
    return {cur: (total / 100).quantize(Decimal("0.01")) for cur, total in sorted(totals.items())}


def paying_subscriptions() -> list[dict]:
    return list(
        Subscription.objects.filter(stripe_data__status__in=sorted(ENTITLED_STATUSES)).values_list(
            "stripe_data", flat=True
        )
    )


def members_by_state(now: datetime) -> dict[str, int]:
    counts = dict(
        with_entitlement(Member.objects.all(), now)
        .values_list("billing_state")
        .annotate(n=Count("id"))
        .values_list("billing_state", "n")
    )
    return {state: counts.get(state, 0) for state, _label in BillingState.CHOICES}


def week_starts(now: datetime, weeks: int = WEEKS) -> list[datetime]:
    """Monday 00:00 UTC of each of the last ``weeks`` weeks, oldest first (this week last)."""
    today = now.astimezone(UTC)
    monday = (today - timedelta(days=today.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return [monday - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]


def weekly_counts(moments: list[datetime], starts: list[datetime]) -> list[int]:
    counts = [0] * len(starts)
    for moment in moments:
        for index in range(len(starts) - 1, -1, -1):
            if moment >= starts[index]:
                counts[index] += 1
                break
    return counts


@dataclass(frozen=True)
class Bar:
    x: int
    y: int
    width: int
    height: int
    value: int
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    width: int
    height: int
    css_class: str


def bar_chart(title: str, labels: list[str], values: list[int], css_class: str) -> Chart:
    """Bars as SVG geometry (presentation attributes are allowed by the CSP, styles are not)."""
    plot_height, bar_width, gap, top = 120, 28, 8, 16
    peak = max(values) if values and max(values) > 0 else 1
    bars = []
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        height = round(plot_height * value / peak)
        bars.append(
            Bar(
                x=index * (bar_width + gap),
                y=top + plot_height - height,
                width=bar_width,
                height=height,
                value=value,
                label=label,
            )
        )
    width = len(values) * (bar_width + gap)
    return Chart(title, bars, width, top + plot_height + 20, css_class)


def dashboard_data(now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    starts = week_starts(now)
    since = starts[0]
    paid = list(Member.objects.filter(paid_at__gte=since).values_list("paid_at", flat=True))
    churned = list(
        Member.objects.filter(cancelled_at__gte=since).values_list("cancelled_at", flat=True)
    )
    labels = [f"{start:%d %b}" for start in starts]
    states = members_by_state(now)
    last_run = ReconciliationRun.objects.order_by("-started_at", "-id").first()
    _healthy, checks = run_checks()
    state_chart = bar_chart(
        "Members by state",
        [label.split(" (")[0] for _state, label in BillingState.CHOICES],
        [states[state] for state, _label in BillingState.CHOICES],
        "chart-states",
    )
    new_chart = bar_chart("New members per week", labels, weekly_counts(paid, starts), "chart-new")
    churn_chart = bar_chart(
        "Churned members per week", labels, weekly_counts(churned, starts), "chart-churn"
    )
    return {
        "now": now,
        "states": [(label, states[state]) for state, label in BillingState.CHOICES],
        "total_members": sum(states.values()),
        "charts": [state_chart, new_chart, churn_chart],
        "new_total": len(paid),
        "churned_total": len(churned),
        "mrr": mrr_by_currency(paying_subscriptions()),
        "failed_webhooks": StripeEventInbox.objects.filter(
            status=StripeEventInbox.Status.FAILED
        ).count(),
        "retrying_webhooks": StripeEventInbox.objects.filter(
            status=StripeEventInbox.Status.RETRYING
        ).count(),
        "open_episodes": FailureEpisode.objects.filter(closed_at__isnull=True).count(),
        "last_run": last_run,
        "checks": sorted(checks.items()),
    }


def dashboard(request: HttpRequest) -> HttpResponse:
    """``<ADMIN_URL>dashboard/``: the numbers an operator looks at first (any staff user)."""
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        **dashboard_data(),
    }
    return TemplateResponse(request, "admin/dashboard.html", context)
