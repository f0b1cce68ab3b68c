"""Stripe-style API errors.

Stripe answers every failure with ``{"error": {"type", "message", "code", "param"}}`` and an
HTTP status that stripe-python maps onto its exception classes (400/404 →
``InvalidRequestError``, 401 → ``AuthenticationError``, 402 → ``CardError``, 429 →
``RateLimitError``, 5xx → ``APIError``). Business operations raise :class:`StripeError`; the
HTTP layer renders it.
"""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.decline_code = decline_code

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        if self.decline_code:
            error["decline_code"] = self.decline_code
        return {"error": error}


# Stripe names objects in "No such ..." messages by their API name.
_NAMES = {
    "cus": "customer",
    "sub": "subscription",
    "si": "subscription item",
    "price": "price",
    "prod": "product",
    "in": "invoice",
    "ii": "invoiceitem",
    "cs": "checkout.session",
    "evt": "event",
    "pm": "PaymentMethod",
    "bps": "billing portal session",
    "promo": "promotion code",
}


def no_such(kind: str, object_id: str, *, param: str = "id") -> StripeError:
    name = _NAMES.get(kind, kind)
    return StripeError(404, f"No such {name}: '{object_id}'", code="resource_missing", param=param)


def invalid(
    message: str, *, param: str | None = None, code: str = "parameter_invalid"
) -> StripeError:
    return StripeError(400, message, code=code, param=param)


def missing(param: str) -> StripeError:
    return StripeError(
        400, f"Missing required param: {param}.", code="parameter_missing", param=param
    )
