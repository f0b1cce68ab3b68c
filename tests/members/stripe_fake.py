"""The fake Stripe server over real HTTP, with stripe-python (and dj-stripe) pointed at it."""

from __future__ import annotations

from typing import Any

import stripe

from members.models import Member


def requests_to(server: Any, method: str, path_prefix: str) -> list[dict[str, Any]]:
    """The calls our code made to the fake, as the fake recorded them."""
    return [
        entry
        for entry in server.state.request_log()
        if entry["method"] == method and entry["path"].startswith(path_prefix)
    ]


def paid_subscription(server: Any, session_url: str) -> str:
    """Pay a Checkout Session on the fake and mirror the subscription into dj-stripe."""

    session_id = session_url.rstrip("/").rsplit("/", 1)[-1]
    session = server.state.complete_checkout(session_id)
    sync_subscription(session["subscription"])
    return session["subscription"]


def sync_subscription(subscription_id: str) -> None:
    """What the webhook pipeline does: re-read from Stripe and mirror with dj-stripe."""
    from djstripe.models import Subscription

    Subscription.sync_from_stripe_data(stripe.Subscription.retrieve(subscription_id))


def individual_subscriber(member: Member, server: Any) -> str:
    """A member who completed individual checkout (webhook effect applied directly)."""
    from billing.checkout import checkout_individual_start

    subscription_id = paid_subscription(server, checkout_individual_start(member=member))
    member.refresh_from_db()
    member.subscription_id = subscription_id
    member.save()
    return subscription_id
