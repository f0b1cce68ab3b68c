"""Builders for Stripe-shaped objects, as the API version stripe-python 15.6 pins returns them.

Shapes follow API version ``2026-08-26.dahlia`` (``stripe._api_version._ApiVersion.CURRENT``):

* billing periods live on subscription **items** (``current_period_start/end``), not on the
  subscription;
* an invoice names its subscription in ``parent.subscription_details.subscription`` and its
  lines name price and product in ``pricing.price_details`` (no top-level ``subscription``,
  ``paid``, ``charge`` or ``payment_intent`` fields);
* nullable fields are present with ``null``, as Stripe sends them, so code written against the
  fake does not silently depend on a field Stripe omits.

Nested objects that never change after creation (``automatic_tax`` and friends) are shared
module constants: bulk seeding builds 100k subscriptions and a fresh copy of each would cost
hundreds of megabytes. The state never mutates them in place, only replaces them.
"""

from __future__ import annotations

import calendar
import secrets
import string
from datetime import UTC, datetime
from typing import Any

API_VERSION = "2026-08-26.dahlia"

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(length))}"


def random_code(length: int = 8) -> str:
    """An upper-case code, as Stripe makes coupon ids and promotion codes."""
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(length))


def fast_ids(prefix: str, count: int) -> list[str]:
    """Many unique ids at once (bulk seeding): one random stem plus a counter."""
    stem = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return [f"{prefix}_{stem}{n:014d}" for n in range(count)]


def add_interval(ts: int, interval: str, count: int = 1) -> int:
    """Advance a UTC timestamp by whole calendar intervals, clamping the day like Stripe."""
    if interval == "day":
        return ts + 86400 * count
    if interval == "week":
        return ts + 7 * 86400 * count
    moment = datetime.fromtimestamp(ts, UTC)
    months = count * (12 if interval == "year" else 1)
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def describe_interval(recurring: dict[str, Any] | None) -> str:
    """``month``, ``3 months``, ``year``: how often a recurring price bills."""
    if not recurring:
        return "once"
    count = int(recurring.get("interval_count") or 1)
    interval = recurring["interval"]
    return interval if count == 1 else f"{count} {interval}s"


def format_amount(amount: int, currency: str) -> str:
    sign = "-" if amount < 0 else ""
    value = f"{abs(amount) / 100:,.2f}"
    if currency.lower() == "usd":
        return f"{sign}${value}"
    return f"{sign}{value} {currency.upper()}"


def list_object(data: list[dict[str, Any]], url: str, *, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


# -- shared immutable parts -------------------------------------------------------------------

_AUTOMATIC_TAX_OFF = {"disabled_reason": None, "enabled": False, "liability": None}
_CANCELLATION_NONE = {"comment": None, "feedback": None, "reason": None}
_SUB_INVOICE_SETTINGS = {"account_tax_ids": None, "issuer": {"type": "self"}}
_SUB_PAYMENT_SETTINGS = {
    "payment_method_options": None,
    "payment_method_types": None,
    "save_default_payment_method": "off",
}
_TRIAL_SETTINGS = {"end_behavior": {"missing_payment_method": "create_invoice"}}
_BILLING_MODE = {"flexible": None, "type": "classic"}
_RECURRING_MONTH = {
    "interval": "month",
    "interval_count": 1,
    "meter": None,
    "trial_period_days": None,
    "usage_type": "licensed",
}


# -- account ----------------------------------------------------------------------------------


def account(account_id: str, created: int) -> dict[str, Any]:
    return {
        "id": account_id,
        "object": "account",
        "business_profile": {
            "annual_revenue": None,
            "estimated_worker_count": None,
            "mcc": None,
            "name": "Fake Stripe sandbox",
            "support_address": None,
            "support_email": None,
            "support_phone": None,
            "support_url": None,
            "url": None,
        },
        "business_type": None,
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "account"},
        "country": "US",
        "created": created,
        "default_currency": "usd",
        "details_submitted": True,
        "email": "sandbox@example.invalid",
        "metadata": {},
        "payouts_enabled": True,
        "requirements": {
            "alternatives": [],
            "current_deadline": None,
            "currently_due": [],
            "disabled_reason": None,
            "errors": [],
            "eventually_due": [],
            "past_due": [],
            "pending_verification": [],
        },
        "settings": {
            "branding": {
                "icon": None,
                "logo": None,
                "primary_color": None,
                "secondary_color": None,
            },
            "dashboard": {"display_name": "Fake Stripe sandbox", "timezone": "Etc/UTC"},
        },
        "tos_acceptance": {"date": None},
        "type": "standard",
    }


# -- catalogue --------------------------------------------------------------------------------


def product(
    product_id: str,
    *,
    name: str,
    created: int,
    livemode: bool,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
    active: bool = True,
) -> dict[str, Any]:
    return {
        "id": product_id,
        "object": "product",
        "active": active,
        "attributes": [],
        "created": created,
        "default_price": None,
        "description": description,
        "images": [],
        "livemode": livemode,
        "marketing_features": [],
        "metadata": metadata or {},
        "name": name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": created,
        "url": None,
    }


def price(
    price_id: str,
    *,
    product_id: str,
    unit_amount: int,
    currency: str,
    created: int,
    livemode: bool,
    recurring: dict[str, Any] | None,
    nickname: str | None = None,
    lookup_key: str | None = None,
    metadata: dict[str, str] | None = None,
    active: bool = True,
) -> dict[str, Any]:
    if (
        recurring is not None
        and recurring.get("interval") == "month"
        and recurring.get("interval_count", 1) == 1
    ):
        recurring = _RECURRING_MONTH
    return {
        "id": price_id,
        "object": "price",
        "active": active,
        "billing_scheme": "per_unit",
        "created": created,
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": livemode,
        "lookup_key": lookup_key,
        "metadata": metadata or {},
        "nickname": nickname,
        "product": product_id,
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }


def plan_from_price(p: dict[str, Any]) -> dict[str, Any]:
    """The legacy ``plan`` object Stripe still embeds in subscription items."""
    recurring = p["recurring"] or _RECURRING_MONTH
    return {
        "id": p["id"],
        "object": "plan",
        "active": p["active"],
        "amount": p["unit_amount"],
        "amount_decimal": p["unit_amount_decimal"],
        "billing_scheme": "per_unit",
        "created": p["created"],
        "currency": p["currency"],
        "interval": recurring["interval"],
        "interval_count": recurring["interval_count"],
        "livemode": p["livemode"],
        "metadata": p["metadata"],
        "meter": None,
        "nickname": p["nickname"],
        "product": p["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": "licensed",
    }


# -- customers and payment methods ------------------------------------------------------------


def customer(
    customer_id: str,
    *,
    created: int,
    livemode: bool,
    email: str | None = None,
    name: str | None = None,
    description: str | None = None,
    phone: str | None = None,
    metadata: dict[str, str] | None = None,
    invoice_prefix: str | None = None,
) -> dict[str, Any]:
    return {
        "id": customer_id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": description,
        "discount": None,
        "email": email,
        "invoice_prefix": invoice_prefix or secrets.token_hex(4).upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": livemode,
        "metadata": metadata or {},
        "name": name,
        "next_invoice_sequence": 1,
        "phone": phone,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def payment_method(
    pm_id: str,
    *,
    customer_id: str | None,
    created: int,
    livemode: bool,
    last4: str = "4242",
    brand: str = "visa",
    exp_month: int = 12,
    exp_year: int = 2034,
    email: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    return {
        "id": pm_id,
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": email,
            "name": name,
            "phone": None,
            "tax_id": None,
        },
        "card": {
            "brand": brand,
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass",
            },
            "country": "US",
            "display_brand": brand,
            "exp_month": exp_month,
            "exp_year": exp_year,
            "fingerprint": secrets.token_hex(8),
            "funding": "credit",
            "generated_from": None,
            "last4": last4,
            "networks": {"available": [brand], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": created,
        "customer": customer_id,
        "livemode": livemode,
        "metadata": {},
        "type": "card",
    }


# -- subscriptions ----------------------------------------------------------------------------


def subscription_item(
    item_id: str,
    *,
    subscription_id: str,
    price_obj: dict[str, Any],
    plan_obj: dict[str, Any],
    quantity: int,
    created: int,
    period_start: int,
    period_end: int,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": created,
        "current_period_end": period_end,
        "current_period_start": period_start,
        "discounts": [],
        "metadata": metadata or {},
        "plan": plan_obj,
        "price": price_obj,
        "quantity": quantity,
        "subscription": subscription_id,
        "tax_rates": [],
    }


def items_list(subscription_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "has_more": False,
        "total_count": len(items),
        "url": f"/v1/subscription_items?subscription={subscription_id}",
    }


def subscription(
    subscription_id: str,
    *,
    customer_id: str,
    items: list[dict[str, Any]],
    created: int,
    livemode: bool,
    currency: str = "usd",
    status: str = "active",
    metadata: dict[str, str] | None = None,
    default_payment_method: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    return {
        "id": subscription_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": _AUTOMATIC_TAX_OFF,
        "billing_cycle_anchor": created,
        "billing_cycle_anchor_config": None,
        "billing_mode": _BILLING_MODE,
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": _CANCELLATION_NONE,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": currency,
        "customer": customer_id,
        "days_until_due": None,
        "default_payment_method": default_payment_method,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": _SUB_INVOICE_SETTINGS,
        "items": items_list(subscription_id, items),
        "latest_invoice": None,
        "livemode": livemode,
        "metadata": metadata or {},
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": _SUB_PAYMENT_SETTINGS,
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": created,
        "status": status,
        "test_clock": None,
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": _TRIAL_SETTINGS,
        "trial_start": None,
    }


# -- invoices ---------------------------------------------------------------------------------


def invoice_line(
    line_id: str,
    *,
    invoice_id: str | None,
    subscription_id: str,
    price_obj: dict[str, Any],
    quantity: int,
    amount: int,
    period_start: int,
    period_end: int,
    livemode: bool,
    description: str,
    subscription_item_id: str | None = None,
    invoice_item_id: str | None = None,
    proration: bool = False,
) -> dict[str, Any]:
    """A line of an invoice: from a subscription item, or from a (proration) invoice item."""
    if invoice_item_id:
        parent = {
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": invoice_item_id,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription_id,
            },
            "subscription_item_details": None,
        }
    else:
        parent = {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription_id,
                "subscription_item": subscription_item_id,
            },
        }
    return {
        "id": line_id,
        "object": "line_item",
        "amount": amount,
        "currency": price_obj["currency"],
        "description": description,
        "discount_amounts": [],
        "discountable": not proration,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": livemode,
        "metadata": {},
        "parent": parent,
        "period": {"end": period_end, "start": period_start},
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": {"price": price_obj["id"], "product": price_obj["product"]},
            "type": "price_details",
            "unit_amount_decimal": price_obj["unit_amount_decimal"],
        },
        "quantity": quantity,
        "subtotal": amount,
        "taxes": [],
    }


def invoice_item(
    item_id: str,
    *,
    customer_id: str,
    subscription_id: str,
    subscription_item_id: str | None,
    price_obj: dict[str, Any],
    quantity: int,
    amount: int,
    created: int,
    period_start: int,
    period_end: int,
    livemode: bool,
    description: str,
    proration: bool,
) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "invoiceitem",
        "amount": amount,
        "currency": price_obj["currency"],
        "customer": customer_id,
        "date": created,
        "description": description,
        "discountable": False,
        "discounts": [],
        "invoice": None,
        "livemode": livemode,
        "metadata": {},
        "net_amount": amount,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {
                "subscription": subscription_id,
                "subscription_item": subscription_item_id,
            },
        },
        "period": {"end": period_end, "start": period_start},
        "pricing": {
            "price_details": {"price": price_obj["id"], "product": price_obj["product"]},
            "type": "price_details",
            "unit_amount_decimal": price_obj["unit_amount_decimal"],
        },
        "proration": proration,
        "proration_details": {"credited_items": None},
        "quantity": quantity,
        "tax_rates": [],
        "test_clock": None,
    }


def invoice(
    invoice_id: str,
    *,
    customer: dict[str, Any],
    subscription_id: str | None,
    subscription_metadata: dict[str, str],
    lines: list[dict[str, Any]],
    billing_reason: str,
    currency: str,
    created: int,
    period_start: int,
    period_end: int,
    livemode: bool,
    public_url: str,
) -> dict[str, Any]:
    total = sum(line["amount"] for line in lines)
    parent = None
    if subscription_id:
        parent = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription_metadata),
                "subscription": subscription_id,
            },
        }
    return {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Fake Stripe sandbox",
        "account_tax_ids": None,
        "amount_due": max(total, 0),
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": max(total, 0),
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": True,
        "automatic_tax": _AUTOMATIC_TAX_OFF,
        "automatically_finalizes_at": None,
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "confirmation_secret": None,
        "created": created,
        "currency": currency,
        "custom_fields": None,
        "customer": customer["id"],
        "customer_address": None,
        "customer_email": customer.get("email"),
        "customer_name": customer.get("name"),
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": f"{public_url}/invoices/{invoice_id}",
        "invoice_pdf": f"{public_url}/invoices/{invoice_id}/pdf",
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": livemode,
        "metadata": {},
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": parent,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": period_end,
        "period_start": period_start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "test_clock": None,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
    }


# -- coupons, promotion codes and discounts ---------------------------------------------------


def coupon(
    coupon_id: str,
    *,
    created: int,
    livemode: bool,
    percent_off: float | None,
    amount_off: int | None,
    currency: str | None,
    duration: str,
    duration_in_months: int | None,
    name: str | None = None,
    max_redemptions: int | None = None,
    redeem_by: int | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "id": coupon_id,
        "object": "coupon",
        "amount_off": amount_off,
        "applies_to": None,
        "created": created,
        "currency": currency,
        "currency_options": None,
        "duration": duration,
        "duration_in_months": duration_in_months,
        "livemode": livemode,
        "max_redemptions": max_redemptions,
        "metadata": metadata or {},
        "name": name,
        "percent_off": percent_off,
        "redeem_by": redeem_by,
        "times_redeemed": 0,
        "valid": True,
    }


def promotion_code(
    promo_id: str,
    *,
    code: str,
    coupon_id: str,
    created: int,
    livemode: bool,
    active: bool = True,
    max_redemptions: int | None = None,
    expires_at: int | None = None,
    customer: str | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A promotion code; at this API version its coupon is in ``promotion.coupon``."""
    return {
        "id": promo_id,
        "object": "promotion_code",
        "active": active,
        "code": code,
        "created": created,
        "customer": customer,
        "customer_account": None,
        "expires_at": expires_at,
        "livemode": livemode,
        "max_redemptions": max_redemptions,
        "metadata": metadata or {},
        "promotion": {"coupon": coupon_id, "type": "coupon"},
        "restrictions": {
            "currency_options": {},
            "first_time_transaction": False,
            "minimum_amount": None,
            "minimum_amount_currency": None,
        },
        "times_redeemed": 0,
    }


def discount(
    discount_id: str,
    *,
    coupon_id: str,
    promotion_code: str | None,
    customer: str,
    subscription: str | None,
    start: int,
    end: int | None,
) -> dict[str, Any]:
    """A coupon applied to a subscription; at this API version its coupon is in ``source``."""
    return {
        "id": discount_id,
        "object": "discount",
        "checkout_session": None,
        "customer": customer,
        "customer_account": None,
        "end": end,
        "invoice": None,
        "invoice_item": None,
        "promotion_code": promotion_code,
        "source": {"coupon": coupon_id, "type": "coupon"},
        "start": start,
        "subscription": subscription,
        "subscription_item": None,
    }


def coupon_amount(coupon_obj: dict[str, Any], base: int) -> int:
    """What a coupon takes off ``base`` (never more than ``base``)."""
    if base <= 0:
        return 0
    if coupon_obj["percent_off"] is not None:
        return min(base, round(base * coupon_obj["percent_off"] / 100))
    return min(base, int(coupon_obj["amount_off"] or 0))


def split_amount(total: int, weights: list[int]) -> list[int]:
    """``total`` shared in proportion to ``weights``; the last share takes the rounding."""
    whole = sum(weights)
    if not weights or whole <= 0:
        return [0] * len(weights)
    shares = [total * weight // whole for weight in weights[:-1]]
    return [*shares, total - sum(shares)]


# -- checkout and portal ----------------------------------------------------------------------


def checkout_session(
    session_id: str,
    *,
    mode: str,
    customer_id: str | None,
    customer_email: str | None,
    client_reference_id: str | None,
    success_url: str | None,
    cancel_url: str | None,
    metadata: dict[str, str],
    custom_fields: list[dict[str, Any]],
    amount_total: int,
    currency: str,
    created: int,
    livemode: bool,
    url: str,
) -> dict[str, Any]:
    return {
        "id": session_id,
        "object": "checkout.session",
        "adaptive_pricing": {"enabled": False},
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": amount_total,
        "amount_total": amount_total,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": None,
        "cancel_url": cancel_url,
        "client_reference_id": client_reference_id,
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "created": created,
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": custom_fields,
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": customer_id,
        "customer_creation": None if customer_id else "always",
        "customer_details": None,
        "customer_email": customer_email,
        "discounts": [],
        "expires_at": created + 24 * 3600,
        "invoice": None,
        "invoice_creation": None,
        "livemode": livemode,
        "locale": None,
        "metadata": metadata,
        "mode": mode,
        "origin_context": None,
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "always",
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "permissions": None,
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": None,
        "subscription": None,
        "success_url": success_url,
        "tax_id_collection": {"enabled": False, "required": "never"},
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "url": url,
        "wallet_options": None,
    }


def checkout_line_item(
    item_id: str, *, price_obj: dict[str, Any], product_name: str, quantity: int
) -> dict[str, Any]:
    amount = price_obj["unit_amount"] * quantity
    return {
        "id": item_id,
        "object": "item",
        "amount_discount": 0,
        "amount_subtotal": amount,
        "amount_tax": 0,
        "amount_total": amount,
        "currency": price_obj["currency"],
        "description": product_name,
        "price": price_obj,
        "quantity": quantity,
    }


def portal_session(
    session_id: str,
    *,
    customer_id: str,
    return_url: str | None,
    created: int,
    livemode: bool,
    url: str,
) -> dict[str, Any]:
    return {
        "id": session_id,
        "object": "billing_portal.session",
        "configuration": "bpc_fakedefault",
        "created": created,
        "customer": customer_id,
        "customer_account": None,
        "flow": None,
        "livemode": livemode,
        "locale": None,
        "on_behalf_of": None,
        "return_url": return_url,
        "url": url,
    }


def event(
    event_id: str,
    *,
    event_type: str,
    data_object: dict[str, Any],
    previous_attributes: dict[str, Any] | None,
    created: int,
    livemode: bool,
    pending_webhooks: int,
    request_id: str | None,
    idempotency_key: str | None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": data_object}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id,
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": data,
        "livemode": livemode,
        "pending_webhooks": pending_webhooks,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": event_type,
    }


# -- payments and disputes ----------------------------------------------------------------------


def charge(
    charge_id: str,
    *,
    amount: int,
    currency: str,
    customer: str,
    payment_intent: str,
    payment_method: str | None,
    created: int,
    livemode: bool,
) -> dict[str, Any]:
    """A succeeded card charge (the fields the gateway and dj-stripe read)."""
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": 0,
        "captured": True,
        "created": created,
        "currency": currency,
        "customer": customer,
        "description": "Subscription update",
        "disputed": False,
        "livemode": livemode,
        "metadata": {},
        "paid": True,
        "payment_intent": payment_intent,
        "payment_method": payment_method,
        "refunded": False,
        "status": "succeeded",
    }


def invoice_payment(
    payment_id: str,
    *,
    invoice_id: str,
    amount: int,
    currency: str,
    payment_intent: str,
    created: int,
    livemode: bool,
) -> dict[str, Any]:
    """How an invoice was paid (``/v1/invoice_payments``): the link from a payment to it."""
    return {
        "id": payment_id,
        "object": "invoice_payment",
        "amount_paid": amount,
        "amount_requested": amount,
        "created": created,
        "currency": currency,
        "invoice": invoice_id,
        "is_default": True,
        "livemode": livemode,
        "payment": {"type": "payment_intent", "payment_intent": payment_intent},
        "status": "paid",
        "status_transitions": {"canceled_at": None, "paid_at": created},
    }


def refund(
    refund_id: str,
    *,
    charge: dict[str, Any],
    amount: int,
    metadata: dict[str, Any],
    reason: str | None,
    created: int,
) -> dict[str, Any]:
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": None,
        "charge": charge["id"],
        "created": created,
        "currency": charge["currency"],
        "metadata": metadata,
        "payment_intent": charge["payment_intent"],
        "reason": reason,
        "status": "succeeded",
    }


def dispute(
    dispute_id: str,
    *,
    charge: dict[str, Any],
    reason: str,
    created: int,
) -> dict[str, Any]:
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": charge["amount"],
        "balance_transactions": [],
        "charge": charge["id"],
        "created": created,
        "currency": charge["currency"],
        "evidence_details": {
            "due_by": created + 21 * 86400,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": charge["livemode"],
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "reason": reason,
        "status": "needs_response",
    }
