"""Bookkeeping for the bad-input fuzz suite: what ran, how many 500s, what was stored.

Every fuzzed request goes through :func:`send`, which counts it per endpoint. At the end of the
session ``conftest.pytest_sessionfinish`` writes the tally into ``docs/RELIABILITY.md`` under
"Bad input", so the figures in the docs are always the ones the last run measured.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from django.http import HttpResponse
from django.test import Client

from billing.models import StripeEventInbox
from members.models import Member, User
from ops.models import AuditLog, Notification

CASES: Counter[str] = Counter()
ERRORS: Counter[str] = Counter()
# Invalid inputs after which a count of stored rows changed (the bar is 0).
STORED: Counter[str] = Counter()

STORED_MODELS = (User, Member, StripeEventInbox, Notification, AuditLog)


def client() -> Client:
    """A fresh browser: no session, CSRF not enforced, a crash answered as a 500 (not raised),
    so the suite counts 500s instead of stopping at the first."""
    return Client(raise_request_exception=False)


def snapshot() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in STORED_MODELS}


def send(endpoint: str, call: Callable[[], HttpResponse]) -> HttpResponse:
    response = call()
    CASES[endpoint] += 1
    if response.status_code >= 500:
        ERRORS[endpoint] += 1
    assert response.status_code < 500, f"{endpoint} answered {response.status_code}"
    return response


def assert_nothing_stored(endpoint: str, before: dict[str, int]) -> None:
    after = snapshot()
    if after != before:
        STORED[endpoint] += 1
    assert after == before, f"{endpoint} stored rows from invalid input: {before} -> {after}"


def report() -> str:
    """The "Bad input" section of docs/RELIABILITY.md."""
    rows = [
        "| Endpoint | Cases | 500s | Invalid inputs that stored a row |",
        "|---|---|---|---|",
    ]
    for endpoint in sorted(CASES):
        rows.append(f"| {endpoint} | {CASES[endpoint]} | {ERRORS[endpoint]} | {STORED[endpoint]} |")
    total = sum(CASES.values())
    rows.append(
        f"| **all** | **{total}** | **{sum(ERRORS.values())}** | **{sum(STORED.values())}** |"
    )
    intro = (
        "Written by `pytest tests/security/test_fuzz.py` (a session-finish hook in "
        "`tests/security/conftest.py`), never by hand. Hypothesis sends random bodies, headers, "
        "signatures, validly signed random JSON and event shapes to the Stripe webhook, and "
        "random form fields, tokens and query strings to sign-up, login, magic-link request and "
        "verify, the Discord OAuth callback (with and without a started flow) and invite claim. "
        "The bar: no 500, and no User, Member, StripeEventInbox, Notification or AuditLog row "
        "stored from invalid input."
    )
    return intro + "\n\n" + "\n".join(rows) + "\n"
