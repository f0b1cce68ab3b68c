"""Lifecycles that cross, seen by the member who pays (SPEC §2, §2a).

Each test drives the fake Stripe and the fake Discord over HTTP and delivers Stripe's events
to our webhook, as the other lifecycle tests do, and checks what the person notices: access,
roles, charges and the messages they receive (exactly once per occasion, never for something
that did not happen).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing.checkout import (
    CheckoutError,
    checkout_company_start,
    checkout_individual_start,
    seats_add,
)
from billing.entitlement import Access, member_access, member_is_entitled
from billing.models import Dispute, StripeEventInbox
from billing.staff_services import member_complimentary_end, member_complimentary_grant
from members.models import Invite, Member, SeatTier, Team, User
from ops.models import AuditLog, Notification
from tests import personas
from tests.journeys import (
    messages,
    never_sent,
    removed_keeping_subscription,
    sent_once,
    subscribe_company,
    subscribe_individual,
)
from tests.personas import seat_member
from tests.providers import (
    authorize,
    deliver,
    pay_checkout,
    recorded_events,
    start_individual_checkout,
)

pytestmark = pytest.mark.django_db(transaction=True)

D = timedelta(days=1)


def _session_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _live(world, subscription_ids: list[str]) -> list[str]:
    return [s for s in subscription_ids if world.stripe_status(s) in ("active", "trialing")]


def _stuck_events() -> list[str]:
    rows = StripeEventInbox.objects.exclude(status=StripeEventInbox.Status.PROCESSED)
    return [f"{row.type}: {row.last_error}" for row in rows]


# --- disputes ---------------------------------------------------------------------------------


def test_a_dispute_first_seen_already_won_tells_the_member_nothing(world, settings):
    """The dispute opened and was won before we processed either event (a webhook outage):
    the member's access was never paused, so "your access is back" would be news of
    something that did not happen. Staff still hear of it."""
    settings.ADMIN_EMAIL = "ops@example.org"
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    opened = world.stripe.state.open_dispute(kay.subscription_id)
    world.stripe.state.close_dispute(opened["id"], won=True)
    world.deliver_new()

    dispute = Dispute.objects.get(dispute_id=opened["id"])
    assert dispute.outcome == Dispute.Outcome.WON
    assert world.roles(kay) == ["lord"]
    for recipient in (kay.discord_id, "kay@example.org"):
        never_sent("dispute_opened", recipient)
        never_sent("dispute_won", recipient)
    assert messages("dispute_staff", "ops@example.org")


# --- checkout completed twice -----------------------------------------------------------------


def _deliver_all(world, *, reverse: bool) -> None:
    events = [e for e in recorded_events(world.stripe) if e["id"] not in world.seen]
    for event in reversed(events) if reverse else events:
        world.seen.add(event["id"])
        assert deliver(world.client, event).status_code == 200


@pytest.mark.parametrize("reverse", [False, True], ids=["in_order", "reversed"])
def test_an_individual_checkout_paid_in_two_tabs_leaves_one_subscription_and_access(world, reverse):
    """Two Checkout tabs, both paid: one membership, one welcome, and the duplicate
    subscription cancelled so it is never charged again, whatever order the events arrive in."""
    kay = personas.buyer("kay@example.org")
    first = checkout_individual_start(member=kay)
    second = checkout_individual_start(member=kay)  # the other tab, before either was paid
    pay_checkout(world.stripe, _session_id(first), email="kay@example.org")
    pay_checkout(world.stripe, _session_id(second), email="kay@example.org")
    _deliver_all(world, reverse=reverse)

    kay.refresh_from_db()
    subscriptions = sorted(
        str(s["id"])
        for s in world.stripe.state.subscriptions.values()
        if s["customer"] == kay.stripe_customer_id
    )
    assert len(subscriptions) == 2
    assert _live(world, subscriptions) == [kay.subscription_id]  # the duplicate is cancelled
    assert member_is_entitled(kay, timezone.now()) and kay.cancelled_at is None
    sent_once("welcome", "kay@example.org")
    assert _stuck_events() == []
    assert AuditLog.objects.filter(action="duplicate_subscription_cancelled").count() == 1

    # Cancelling the membership later ends it: nothing else bills the member.
    world.stripe.state.cancel(kay.subscription_id)
    world.deliver_new()
    kay.refresh_from_db()
    assert kay.cancelled_at is not None


def test_a_company_checkout_paid_in_two_tabs_is_not_stuck_and_not_charged_twice(world):
    """Both tabs of the same pending company paid: the team keeps one subscription, the
    other is cancelled, and no event is left failing forever."""
    pat = personas.buyer("pat@acme.example")
    first = checkout_company_start(member=pat, company_name="Acme Ltd", owner_seats=1, team_seats=1)
    second = checkout_company_start(
        member=pat, company_name="Acme Ltd", owner_seats=1, team_seats=1
    )
    pay_checkout(world.stripe, _session_id(first), email="pat@acme.example")
    pay_checkout(world.stripe, _session_id(second), email="pat@acme.example")
    world.deliver_new()

    team = Team.objects.get(name="Acme Ltd")
    pat.refresh_from_db()
    subscriptions = sorted(
        str(s["id"])
        for s in world.stripe.state.subscriptions.values()
        if s["customer"] == team.stripe_customer_id
    )
    assert len(subscriptions) == 2
    assert _live(world, subscriptions) == [team.subscription_id]
    assert pat.team_id == team.pk and pat.seat_tier == SeatTier.OWNER
    assert member_access(pat, timezone.now()) == Access.ENTITLED
    sent_once("welcome", "pat@acme.example")
    assert _stuck_events() == []
    assert Member.objects.count() == 1


# --- paying again after the removal -----------------------------------------------------------


def test_paying_after_the_removal_tells_the_kicked_member_the_way_back_in_once(world):
    """Removed after the Debtor period with the subscription kept in Stripe, then the member
    pays it: access is back, but they were kicked, so they are emailed the way back into the
    guild (once for this absence), and nobody hears that they are welcome a second time."""
    kay = removed_keeping_subscription(world, "kay@example.org", "kay")
    assert world.roles(kay) is None  # kicked

    world.recover(kay.subscription_id)

    kay.refresh_from_db()
    assert member_is_entitled(kay, timezone.now()) and not kay.in_guild
    sent_once("guild_rejoin", "kay@example.org")
    sent_once("welcome", "kay@example.org")  # the purchase's, not a second one

    # Stripe's events again (a replay) and the daily reconciliation: nothing new.
    world.seen.clear()
    StripeEventInbox.objects.all().delete()
    world.deliver_new()
    with contextlib.suppress(SystemExit):  # exit code 1: the member is still not in the guild
        call_command("reconcile", "--fix", stdout=StringIO())
    assert len(messages("guild_rejoin")) == 1


def test_a_returning_subscriber_hears_one_welcome_for_the_new_subscription(world):
    """Cancelled (farewell, kicked), then bought again: the new subscription's welcome is the
    way back in; no second email saying the same thing."""
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    world.stripe.state.cancel(kay.subscription_id)
    world.deliver_new()
    assert world.roles(kay) is None
    kay.refresh_from_db()

    session = start_individual_checkout(kay)
    pay_checkout(world.stripe, session.id, email="kay@example.org")
    world.deliver_new()

    kay.refresh_from_db()
    assert member_is_entitled(kay, timezone.now()) and kay.cancelled_at is None
    assert len(messages("welcome", "kay@example.org")) == 2  # one per subscription
    sent_once("farewell", kay.discord_id)
    never_sent("guild_rejoin", "kay@example.org")


# --- complimentary memberships ----------------------------------------------------------------


def test_a_complimentary_membership_for_a_kicked_former_member_brings_the_way_back_in(world):
    """Staff grant a complimentary membership to someone whose subscription ended (farewell,
    kicked): they are entitled again but outside the guild, so they are emailed the way back
    in, once; the membership's end later says goodbye once."""
    staff = User.objects.create_superuser("staff@example.org", "correct horse battery")
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    world.stripe.state.cancel(kay.subscription_id)
    world.deliver_new()
    kay.refresh_from_db()
    assert world.roles(kay) is None and not kay.in_guild

    member_complimentary_grant(member=kay, actor=staff, reason="speaker at the summit")

    kay.refresh_from_db()
    assert member_is_entitled(kay, timezone.now())
    sent_once("guild_rejoin", "kay@example.org")

    member_complimentary_end(member=kay, actor=staff, reason="summit is over")
    assert len(messages("farewell", kay.discord_id)) == 2  # the subscription's, then this one
    assert len(messages("guild_rejoin")) == 1


def test_a_complimentary_membership_for_a_member_in_the_guild_sends_no_rejoin_email(world):
    staff = User.objects.create_superuser("staff@example.org", "correct horse battery")
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    member_complimentary_grant(member=kay, actor=staff, reason="community partner")
    assert world.roles(kay) == ["lord"]
    never_sent("guild_rejoin", "kay@example.org")


# --- seats added with a card that declines ----------------------------------------------------


def test_seats_added_with_a_declining_card_are_refused_and_not_claimable(world):
    """The proration of a seat add is declined: the owner is told, the team keeps the seats it
    paid for, and the subscription is not left past_due with seats nobody paid (Stripe's
    default ``allow_incomplete`` would keep the new quantity, unpaid, with no failure episode
    since only renewals start one)."""
    team, owner = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=1)
    world.stripe.state.decline_payments(1)

    with pytest.raises(CheckoutError, match="declined"):
        seats_add(team=team, tier=SeatTier.TEAM, quantity=2, actor=owner)
    world.deliver_new()

    team.refresh_from_db()
    assert team.team_seats == 1
    assert world.stripe_status(team.subscription_id) == "active"
    items = world.stripe.state.get_subscription(team.subscription_id)["items"]["data"]
    assert sorted(item["quantity"] for item in items) == [1, 2]  # owner seats 2, team seats 1
    assert _stuck_events() == []


@pytest.mark.parametrize("reverse", [False, True], ids=["in_order", "reversed"])
def test_an_individual_plan_and_a_company_bought_in_two_tabs_leave_one_membership(world, reverse):
    """One tab buys the individual plan, the other a company plan, both paid before either
    event arrived: the person holds one membership and is billed by one subscription; the
    other is cancelled (never renewed), whichever completion arrives first."""
    pat = personas.buyer("pat@acme.example")
    individual = checkout_individual_start(member=pat)
    company = checkout_company_start(
        member=pat, company_name="Acme Ltd", owner_seats=1, team_seats=1
    )
    pay_checkout(world.stripe, _session_id(individual), email="pat@acme.example")
    pay_checkout(world.stripe, _session_id(company), email="pat@acme.example")
    _deliver_all(world, reverse=reverse)

    pat.refresh_from_db()
    team = Team.objects.get(name="Acme Ltd")
    customers = {pat.stripe_customer_id, team.stripe_customer_id}
    everything = world.stripe.state.subscriptions.values()
    subscriptions = [str(s["id"]) for s in everything if s["customer"] in customers]
    assert len(subscriptions) == 2
    assert _live(world, subscriptions) == [pat.billing_subscription_id]
    assert member_access(pat, timezone.now()) == Access.ENTITLED
    sent_once("welcome", "pat@acme.example")
    assert _stuck_events() == []


def test_replaying_every_event_after_a_return_keeps_the_new_subscription(world):
    """Subscribed, cancelled, subscribed again; then the first checkout's completion arrives
    again (an operator's replay of that event, or all of them oldest first): it must not move
    the member back to the ended subscription, and nobody hears anything new."""
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    world.stripe.state.cancel(kay.subscription_id)
    world.deliver_new()
    kay.refresh_from_db()
    session = start_individual_checkout(kay)
    pay_checkout(world.stripe, session.id, email="kay@example.org")
    world.deliver_new()
    kay.refresh_from_db()
    current = kay.subscription_id
    before = sorted((n.kind, n.recipient) for n in Notification.objects.all())

    first = world.stripe.state.events_of("checkout.session.completed")[0]
    StripeEventInbox.objects.filter(event_id=first["id"]).delete()
    assert deliver(world.client, first).status_code == 200
    kay.refresh_from_db()
    assert kay.subscription_id == current and kay.cancelled_at is None
    assert member_is_entitled(kay, timezone.now())

    world.seen.clear()
    StripeEventInbox.objects.all().delete()
    world.deliver_new()

    kay.refresh_from_db()
    assert kay.subscription_id == current and kay.cancelled_at is None
    assert member_is_entitled(kay, timezone.now())
    assert sorted((n.kind, n.recipient) for n in Notification.objects.all()) == before
    assert _stuck_events() == []


def test_replaying_an_ended_companys_checkout_leaves_its_ex_owner_on_their_own_plan(world):
    """The team ended and its owner bought an individual plan; the company's old checkout
    completion arrives again: the owner stays on their own plan, untouched."""
    team, pat = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=0)
    pat = world.link(pat, "pat", role="lord")
    world.stripe.state.cancel(team.subscription_id)
    world.deliver_new()
    pat.refresh_from_db()
    session = start_individual_checkout(pat)
    pay_checkout(world.stripe, session.id, email="pat@acme.example")
    world.deliver_new()
    pat.refresh_from_db()
    assert pat.team_id is None and pat.cancelled_at is None
    paid_at = pat.paid_at

    first = world.stripe.state.events_of("checkout.session.completed")[0]
    StripeEventInbox.objects.filter(event_id=first["id"]).delete()
    assert deliver(world.client, first).status_code == 200

    pat.refresh_from_db()
    assert pat.team_id is None and pat.seat_tier == SeatTier.INDIVIDUAL
    assert pat.paid_at == paid_at and pat.cancelled_at is None
    assert member_is_entitled(pat, timezone.now())
    assert _stuck_events() == []


def test_a_complimentary_membership_ending_during_debtor_leaves_a_debtor_not_a_farewell(world):
    """The member's subscription is in its Debtor phase (unpaid, still alive in Stripe) when
    their complimentary membership ends: the subscription still carries the membership, so
    they become a Debtor like everyone billed by it — no farewell, no kick, no lost intro."""
    staff = User.objects.create_superuser("staff@example.org", "correct horse battery")
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    member_complimentary_grant(member=kay, actor=staff, reason="speaker at the summit")
    episode = world.fail_renewal(kay.subscription_id)
    t0 = world.rewind(episode)
    world.tick(t0 + 3 * D)  # Debtor by the subscription; the complimentary keeps access
    assert world.roles(kay) == ["lord"]

    member_complimentary_end(member=kay, actor=staff, reason="summit is over")

    kay.refresh_from_db()
    assert kay.cancelled_at is None and kay.introduced_at is not None
    assert member_access(kay, timezone.now()) == Access.DEBTOR
    assert world.roles(kay) == ["debtor"]
    never_sent("farewell", kay.discord_id)


# --- the member's pages in every crossing state -----------------------------------------------

PAGES = ("/dashboard/", "/billing/", "/company/", "/claim/", "/team/")


def _pages_answer(world, member: Member) -> None:
    world.client.force_login(member.user)
    for page in PAGES:
        response = world.client.get(page)
        assert response.status_code < 500, (page, response.status_code)


def test_member_pages_answer_in_every_crossing_state(world, settings):
    """No page answers 500 to a person whose lifecycles crossed: a team owner, a seat, an
    ex-owner and ex-seat after the team ended, a disputed member, a Debtor, a removed one."""
    settings.ADMIN_EMAIL = "ops@example.org"
    team, pat = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=1)
    pat = world.link(pat, "pat", role="lord")
    tom = world.link(seat_member(team, SeatTier.TEAM, "tom@acme.example"), "tom", role="knight")
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    for member in (pat, tom, kay):
        _pages_answer(world, member)

    world.stripe.state.open_dispute(kay.subscription_id)  # suspended
    world.deliver_new()
    episode = world.fail_renewal(team.subscription_id)
    t0 = world.rewind(episode)
    world.tick(t0 + 3 * D)  # the team in Debtor
    for member in (pat, tom, kay):
        _pages_answer(world, member)

    world.stripe.state.cancel(team.subscription_id)  # the team ends: both detached
    world.deliver_new()
    for member in (pat, tom):
        member.refresh_from_db()
        assert member.team_id is None
        _pages_answer(world, member)


def test_a_dispute_won_while_in_debtor_does_not_say_access_is_back(world, settings):
    """A Debtor's earlier payment is disputed and then won: their access is still held back
    by the unpaid renewal, so "your access is back" would be untrue; they stay Debtor."""
    settings.ADMIN_EMAIL = "ops@example.org"
    kay = world.link(subscribe_individual(world, "kay@example.org"), "kay", role="lord")
    episode = world.fail_renewal(kay.subscription_id)
    t0 = world.rewind(episode)
    world.tick(t0 + 3 * D)  # Debtor
    opened = world.stripe.state.open_dispute(kay.subscription_id)
    world.deliver_new()
    world.stripe.state.close_dispute(opened["id"], won=True)
    world.deliver_new()

    assert member_access(kay, timezone.now()) == Access.DEBTOR
    assert world.roles(kay) == ["debtor"]
    never_sent("dispute_won", kay.discord_id)
    never_sent("dispute_won", "kay@example.org")
    assert len(messages("dispute_staff", "ops@example.org")) == 2  # opened, then won


# --- an individual subscriber invited to a team -----------------------------------------------


def test_a_logged_in_individual_subscriber_cannot_take_a_seat_with_an_unlinked_discord(world):
    """Kay pays for the individual plan and has not linked Discord yet; her company invites
    her and she claims while logged in, with a Discord account nobody has linked: she already
    has a membership, so the claim is refused (she would hold two and pay for one she does
    not use), exactly as for a Discord account already linked to an individual plan."""
    kay = subscribe_individual(world, "kay@example.org")
    team, _ = subscribe_company(world, "pat@acme.example", "Acme Ltd", team_seats=1)
    invite = Invite.objects.create(
        team=team, tier=SeatTier.TEAM, token="tok-crossing", email="kay@example.org"
    )
    person = world.discord.add_user(username="kay", in_guild=False, roles=[])
    world.discord.set_oauth_user(person["id"])
    world.client.force_login(kay.user)

    response = world.client.post(f"/invite/{invite.token}/")
    if response.status_code == 302 and "oauth2" in response["Location"]:
        world.client.get("/oauth/discord/callback/", authorize(response["Location"]))

    assert not Member.objects.filter(discord_id=person["id"]).exists()
    assert list(Member.objects.filter(team=team).values_list("pk", flat=True)) == [
        team.primary_owner_id
    ]
    kay.refresh_from_db()
    assert kay.team_id is None and member_is_entitled(kay, timezone.now())
