"""The fake's Stripe Tax: a fixed, documented rate table instead of Stripe's tax engine.

Prices are tax-exclusive (``tax_behavior: exclusive``): tax is added on top of what is left of
each invoice line after discounts, rounded to the cent per line. A country in the table is
``standard_rated`` at its rate; any other country is ``not_collecting`` (0%, as Stripe does
where the account has no tax registration). The seller is a US account with no US sales tax
registration, so the US is ``not_collecting`` too. Each country's rate is a ``tax_rate``
object under a fixed id, ``txr_fake_<country>`` (``GET /v1/tax_rates/{id}``).
"""

from __future__ import annotations

from typing import Any

# country → (percent, display name, tax type)
TAX_RATES: dict[str, tuple[float, str, str]] = {
    "AU": (10.0, "GST", "gst"),
    "CA": (5.0, "GST", "gst"),
    "DE": (19.0, "VAT", "vat"),
    "FR": (20.0, "VAT", "vat"),
    "GB": (20.0, "VAT", "vat"),
    "IE": (23.0, "VAT", "vat"),
    "NL": (21.0, "VAT", "vat"),
}

# The countries the hosted page offers (ISO 3166-1 alpha-2), with names.
COUNTRIES: dict[str, str] = {
    "AU": "Australia",
    "CA": "Canada",
    "DE": "Germany",
    "FR": "France",
    "GB": "United Kingdom",
    "IE": "Ireland",
    "NL": "Netherlands",
    "US": "United States",
}

_EU = {"DE", "FR", "IE", "NL"}
_TAX_ID_TYPES = {"AU": "au_abn", "CA": "ca_bn", "GB": "gb_vat", "US": "us_ein"}


def tax_id_type(country: str) -> str:
    """The tax id type a buyer from ``country`` enters on the hosted page."""
    return "eu_vat" if country in _EU else _TAX_ID_TYPES.get(country, "unknown")


def rate_id(country: str) -> str:
    return f"txr_fake_{country.lower()}"


def tax_rate(country: str, *, created: int) -> dict[str, Any]:
    percent, name, tax_type = TAX_RATES.get(country, (0.0, "Tax", "sales_tax"))
    return {
        "id": rate_id(country),
        "object": "tax_rate",
        "active": True,
        "country": country,
        "created": created,
        "description": None,
        "display_name": name,
        "effective_percentage": percent,
        "flat_amount": None,
        "inclusive": False,
        "jurisdiction": COUNTRIES.get(country, country),
        "jurisdiction_level": "country",
        "livemode": False,
        "metadata": {},
        "percentage": percent,
        "rate_type": "percentage",
        "state": None,
        "tax_type": tax_type,
    }


def line_tax(taxable: int, country: str) -> dict[str, Any]:
    """One tax entry (a line's ``taxes[]``, an invoice's ``total_taxes[]``)."""
    percent = TAX_RATES.get(country, (0.0, "", ""))[0]
    return {
        "amount": round(taxable * percent / 100),
        "tax_behavior": "exclusive",
        "tax_rate_details": {"tax_rate": rate_id(country)},
        "taxability_reason": "standard_rated" if country in TAX_RATES else "not_collecting",
        "taxable_amount": taxable,
        "type": "tax_rate_details",
    }


def tax_id(
    tax_id_id: str,
    *,
    customer: str,
    id_type: str,
    value: str,
    country: str | None,
    created: int,
    livemode: bool,
) -> dict[str, Any]:
    return {
        "id": tax_id_id,
        "object": "tax_id",
        "country": country,
        "created": created,
        "customer": customer,
        "customer_account": None,
        "livemode": livemode,
        "owner": {
            "account": None,
            "application": None,
            "customer": customer,
            "customer_account": None,
            "type": "customer",
        },
        "type": id_type,
        "value": value,
        "verification": {"status": "unverified", "verified_address": None, "verified_name": None},
    }
