"""Amounts as people read them: Stripe's integer minor units, formatted for their currency."""

from __future__ import annotations

from decimal import Decimal

# Stripe's zero-decimal currencies: the amount is already in whole units (¥1,000 is 1000).
ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
# Three-decimal currencies: Stripe counts thousandths.
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}


def format_amount(amount: int | None, currency: str) -> str:
    """``$10.00``, ``€9.50``, ``¥1,000``, ``12.50 CHF``; ``""`` when there is no amount."""
    if amount is None:
        return ""
    currency = (currency or "").lower()
    places = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    value = Decimal(abs(int(amount))).scaleb(-places)
    text = f"{value:,.{places}f}"
    sign = "-" if int(amount) < 0 else ""
    symbol = SYMBOLS.get(currency)
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"
