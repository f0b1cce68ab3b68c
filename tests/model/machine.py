"""The stateful model test: random member journeys through the real gateway.

Each step is something a person, Stripe, Discord, staff or the clock does, performed through
the real code at its boundary: our views through the Django test client (sign-up, Checkout,
linking through the fake Discord's OAuth pages), the fake Stripe over HTTP (its hosted Checkout
page, renewals, failures, recoveries, cancellations) whose events reach our signed webhook
endpoint, the fake Discord over HTTP, and the task functions the worker runs (the webhook
drain and role/outbox tasks run inline in tests, ``billing_tick``, reconciliation).

Stripe's events are collected from the fake's event list into ``pending`` and handed to our
webhook signed, as Stripe would, but not at once: steps deliver one out of order, deliver an old
one again days later, lose one (reconciliation with ``--fix`` then repairs), or let time pass
first. Once every pending event is delivered ("settled") the invariants compare the gateway
with the reference model (``tests/model/reference.py``).

Time travel: the whole process (and the fake servers' threads) shares one clock moved with
``time-machine``, so the billing tick, the role policy, the outbox and Stripe's signatures all
see the same "now".
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import stripe
import time_machine
from django.conf import settings
from django.core.management.color import no_style
from django.db import connection
from django.test import Client
from django.utils import timezone
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from billing.staff_services import (
    member_access_restore,
    member_access_revoke,
    member_complimentary_end,
    member_complimentary_grant,
)
from billing.tasks import drain_stripe_events
from discordsync.bot.services import member_guild_join, member_guild_leave
from discordsync.introductions import (
    CATCH_UP_FIRST_WINDOW,
    MessageFacts,
    introduction_handle,
    introductions_catch_up,
    introductions_mark_handled,
)
from gateway.reconciliation import reconcile
from members.models import Invite, Member, User
from members.models import Team as TeamRow
from ops.models import Notification
from tests.journeys import World
from tests.model.reference import DUNNING_KINDS, Person, Reference, Sub, Team
from tests.personas import ROLE_IDS, plan_catalogue
from tests.providers import authorize, deliver, pay_checkout, recorded_events, worker_busy

# People who sign up with an email (individual or company purchasers), and people who only
# ever claim seats through an invite (Discord-only accounts).
NAMES = ["ann", "bob", "cat"]
SEAT_NAMES = ["dan", "eve"]
PASSWORD = "correct horse battery staple"
INTRO = "Hello all, I run revenue operations at a mid-size company and I am here to learn. " * 2
# Every event about a subscription or one of its invoices makes the gateway look at Stripe's
# current state (billing/drain.py applies each such group through one read): the ones the
# webhook endpoint is subscribed to in production (DEPLOYMENT.md), and any other the fake sends,
# such as invoice.finalized.
CONVERGING_PREFIXES = ("customer.subscription.", "invoice.")
# Events a lost delivery may swallow: reconciliation rebuilds what they carry from Stripe.
LOSABLE = (
    "checkout.session.completed",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
)
JUMPS = [timedelta(hours=1), timedelta(hours=23), timedelta(days=2), timedelta(days=9)]
JUMPS += [timedelta(days=31)]


class Stats:
    """What the runs did, for ``docs/RELIABILITY.md`` (``bench/model_run.py``)."""

    def __init__(self) -> None:
        self.sequences = 0
        self.steps = 0
        self.checks = 0
        self.rules: Counter[str] = Counter()

    def dump(self, path: str) -> None:
        Path(path).write_text(
            json.dumps(
                {
                    "sequences": self.sequences,
                    "steps": self.steps,
                    "invariants_checked": self.checks,
                    "rules": dict(self.rules),
                }
            )
        )


def empty_database() -> None:
    """Every table emptied between sequences (faster than a flush: no post-migrate work)."""
    tables = connection.introspection.django_table_names(only_existing=True)
    statements = connection.ops.sql_flush(no_style(), tables, allow_cascade=True)
    connection.ops.execute_sql_flush(statements)


def build(world: World, staff: dict[str, Any], stats: Stats) -> type[RuleBasedStateMachine]:
    """The machine class, bound to this test's fake servers."""

    class Gateway(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            stats.sequences += 1
            empty_database()
            plan_catalogue()  # what a fresh deployment sells, emptied with the rest
            from django.core.cache import cache

            cache.clear()
            world.stripe.state.reset()
            world.discord.reset()
            world.seen = set()
            self.clock = time_machine.travel(timezone.now(), tick=True)
            self.clock_control = self.clock.start()
            self.staff = User.objects.create_superuser("staff@example.org", PASSWORD)
            staff["user"] = self.staff
            self.model = Reference(NAMES)
            self.clients: dict[str, Client] = {}
            for name in NAMES + SEAT_NAMES:
                user = world.discord.add_user(username=name, in_guild=False)
                email = f"{name}@example.org" if name in NAMES else ""
                self.model.people[name] = Person(name=name, email=email, discord_id=user["id"])
                self.clients[name] = Client()
            self.pending: list[dict[str, Any]] = []
            self.claims = 0
            self.delivered: list[dict[str, Any]] = []
            self.lost = False
            self.seen_notifications = 0
            self.team_rows: dict[str, int] = {}
            self.bot_online = True
            self.missed: list[tuple[Person, datetime]] = []  # posted while the bot was away
            self.intro_mark = False  # the bot has handled an introduction (its catch-up mark)
            self.disputes: dict[str, str] = {}  # dispute id → subscription id

        def teardown(self) -> None:
            self.clock.stop()

        # --- plumbing ---------------------------------------------------------------------

        def _step(self, name: str) -> None:
            stats.steps += 1
            stats.rules[name] += 1

        def _collect(self) -> None:
            for event in recorded_events(world.stripe):
                if event["id"] not in world.seen:
                    world.seen.add(event["id"])
                    self.pending.append(event)

        def _hand_over(self, event: dict[str, Any]) -> None:
            """Deliver one event to our webhook, then update the model from the truth."""
            now = timezone.now()
            response = deliver(world.client, event)
            assert response.status_code == 200, response.content
            if any(seen["id"] == event["id"] for seen in self.delivered):
                return  # the same event id again: stored once, applied once, nothing re-read
            self.delivered.append(event)
            obj = event["data"]["object"]
            sub_id = ""
            if event["type"].startswith("invoice."):
                sub_id = world.stripe.state.invoice_subscription_id(obj) or ""
            elif event["type"].startswith("customer.subscription."):
                sub_id = obj["id"]
            elif event["type"].startswith("charge.dispute."):
                sub_id = self.disputes.get(obj["id"], "")
            sub = self.model.subs.get(sub_id)
            if sub is None:
                return
            if event["type"].startswith(CONVERGING_PREFIXES):
                # §2a: any event about the subscription or its invoices is a reason to look at
                # Stripe's current state; what it shows decides, whichever event arrived.
                self.model.on_invoice_paid(sub)
                invoice = obj["id"] if event["type"].startswith("invoice.") else sub.open_invoice
                self.model.on_payment_failed(sub, invoice, now)
                self.model.on_ended(sub)
            elif event["type"].startswith("charge.dispute."):
                self.model.on_dispute_seen(sub, obj["id"])
                self.model.on_dispute_event(sub)

        def _tick(self) -> None:
            now = timezone.now()
            world.tick(now)
            self.model.tick(now)
            self._collect()

        def settle(self, rnd: random.Random | None = None, *, batched: bool = False) -> None:
            """Deliver everything pending (in Stripe's order, or shuffled by ``rnd``), repair
            lost deliveries with reconciliation (``--fix``), then run the tick. ``batched``:
            the worker is busy while they arrive, then one drain applies the pile (by Stripe
            object, one read each)."""
            self._collect()
            while self.pending or self.lost:
                order, self.pending = self.pending, []
                if rnd is not None:
                    rnd.shuffle(order)
                if batched:
                    with worker_busy():
                        for event in order:
                            self._hand_over(event)
                    drain_stripe_events()
                else:
                    for event in order:
                        self._hand_over(event)
                if self.lost:
                    self.lost = False
                    reconcile(fix=True, dry_run=False, trigger="command")
                    for sub in self.model.subs.values():
                        self.model.on_invoice_paid(sub)
                        self.model.on_ended(sub)
                self._tick()

        def _settle_purchase(self, data: st.DataObject, rnd: random.Random | None = None) -> None:
            """Settle a purchase's events; one time in four its ``checkout.session.completed``
            never arrives (every retry failed), and only reconciliation can link what was
            paid."""
            self._collect()
            if data.draw(st.integers(0, 3), label="completion lost") == 0:
                lost = [e for e in self.pending if e["type"] == "checkout.session.completed"]
                self.pending = [e for e in self.pending if e not in lost]
                self.lost = self.lost or bool(lost)
                stats.rules["lose_completion"] += bool(lost)
            self.settle(rnd)

        def _person(self, name: str) -> Person:
            return self.model.people[name]

        def _anyone(self, test: Callable[[Person], bool]) -> bool:
            return any(test(p) for p in self.model.people.values())

        def _pick(self, data: st.DataObject, test: Callable[[Person], bool]) -> Person | None:
            """One person passing ``test`` (after settling, there may be none left)."""
            eligible = [p for p in self.model.people.values() if test(p)]
            return data.draw(st.sampled_from(eligible)) if eligible else None

        def _member(self, person: Person) -> Member:
            rows = Member.objects.select_related("user")
            if person.email:
                return rows.get(user__email=person.email)
            return rows.get(discord_id=person.discord_id)

        def _client(self, person: Person) -> Client:
            client = self.clients[person.name]
            if person.signed_up:
                client.force_login(self._member(person).user)
            return client

        # --- people -----------------------------------------------------------------------

        def _may_buy(self, person: Person) -> bool:
            return self.model.may_buy(person)

        @precondition(lambda self: self._anyone(self._may_buy))
        @rule(data=st.data())
        def buy_individual(self, data: st.DataObject) -> None:
            """Sign up (once), then Checkout on the fake's hosted page; also a resubscription."""
            self._step("buy_individual")
            self.settle()
            person = self._pick(data, self._may_buy)
            if person is None:
                return
            name = person.name
            client = self._client(person)
            self._sign_up(person, client)
            response = client.post("/checkout/individual/")
            assert response.status_code == 302, response.content
            session_id = urlparse(response["Location"]).path.rsplit("/", 1)[-1]
            pay_checkout(world.stripe, session_id, email=person.email)
            sub_id = world.stripe.state.get_checkout_session(session_id)["subscription"]
            self.model.subs[sub_id] = Sub(id=sub_id, holder=name)
            person.sub = sub_id
            person.expected["welcome:email"] += 1
            self._settle_purchase(data)

        def _sign_up(self, person: Person, client: Client) -> None:
            if person.signed_up:
                return
            response = client.post(
                "/signup/",
                {"email": person.email, "password": PASSWORD, "password_confirm": PASSWORD},
            )
            assert response.status_code == 302, response.content
            # Open the emailed confirmation link, as linking Discord and the team pages wait
            # for it.
            link = Notification.objects.filter(kind="email_verify", recipient=person.email)
            token = parse_qs(urlparse(link.latest("id").context["link"]).query)["token"][0]
            response = client.post("/email/verify/", {"token": token})
            assert response.status_code == 302, response.content
            person.signed_up = True

        def _may_buy_company(self, person: Person) -> bool:
            return self._may_buy(person) and person.team is None

        @precondition(lambda self: self._anyone(self._may_buy_company))
        @rule(data=st.data(), owner_seats=st.integers(1, 2), team_seats=st.integers(0, 2))
        def buy_company(self, data: st.DataObject, owner_seats: int, team_seats: int) -> None:
            """The company form, then Checkout: the purchaser holds the first owner seat."""
            self._step("buy_company")
            self.settle()
            person = self._pick(data, self._may_buy_company)
            if person is None:
                return
            client = self._client(person)
            self._sign_up(person, client)
            key = f"team{len(self.model.teams) + 1}"
            response = client.post(
                "/company/",
                {"company_name": key, "owner_seats": owner_seats, "team_seats": team_seats},
            )
            assert response.status_code == 302, response.content
            session_id = urlparse(response["Location"]).path.rsplit("/", 1)[-1]
            pay_checkout(world.stripe, session_id, email=person.email)
            sub_id = world.stripe.state.get_checkout_session(session_id)["subscription"]
            self.model.subs[sub_id] = Sub(id=sub_id, holder=key)
            self.model.teams[key] = Team(
                key=key,
                sub=sub_id,
                primary=person.name,
                paid={"owner": owner_seats, "team": team_seats},
            )
            person.team, person.tier = key, "owner"
            person.claimed_seq = self._claim_seq()
            person.teams_ever.add(key)
            person.expected["welcome:email"] += 1
            self._settle_purchase(data)
            self.team_rows[key] = TeamRow.objects.get(subscription_id=sub_id).pk

        # --- plan changes (billing/plan_change.py) ----------------------------------------

        def _may_move_to_company(self, person: Person) -> bool:
            sub = self.model.subs.get(person.sub or "")
            return person.team is None and sub is not None and self.model.may_change_plan(sub)

        @precondition(lambda self: self._anyone(self._may_move_to_company))
        @rule(data=st.data(), team_seats=st.integers(0, 2), rnd=st.randoms(use_true_random=False))
        def move_to_company(self, data: st.DataObject, team_seats: int, rnd: random.Random) -> None:
            """An individual buys a company plan: it replaces their individual plan once paid."""
            self._step("move_to_company")
            self.settle()
            person = self._pick(data, self._may_move_to_company)
            if person is None:
                return
            key = f"team{len(self.model.teams) + 1}"
            response = self._client(person).post(
                "/company/", {"company_name": key, "owner_seats": 1, "team_seats": team_seats}
            )
            assert response.status_code == 302, response.content
            new = self._paid_sub(response, person, holder=key)
            team = Team(
                key=key, sub=new.id, primary=person.name, paid={"owner": 1, "team": team_seats}
            )
            self.model.teams[key] = team
            self.model.moved(person, self.model.subs[person.sub or ""], new=new, team=team)
            person.claimed_seq = self._claim_seq()
            self._settle_purchase(data, rnd)  # the move's events in any order
            self.team_rows[key] = TeamRow.objects.get(subscription_id=new.id).pk

        def _may_move_to_individual(self, person: Person) -> bool:
            team = self.model.teams.get(person.team or "")
            if team is None or team.ended or team.primary != person.name:
                return False
            alone = [p.name for p in self.model.people.values() if p.team == team.key] == [
                person.name
            ]
            return alone and self.model.may_change_plan(self.model.subs[team.sub])

        @precondition(lambda self: self._anyone(self._may_move_to_individual))
        @rule(data=st.data(), rnd=st.randoms(use_true_random=False))
        def move_to_individual(self, data: st.DataObject, rnd: random.Random) -> None:
            """A primary owner alone on the team buys the individual plan: it replaces the
            company plan once paid."""
            self._step("move_to_individual")
            self.settle()
            person = self._pick(data, self._may_move_to_individual)
            if person is None:
                return
            team = self.model.teams[person.team or ""]
            response = self._client(person).post("/checkout/individual/")
            assert response.status_code == 302, response.content
            new = self._paid_sub(response, person, holder=person.name)
            self.model.moved(person, self.model.subs[team.sub], new=new, team=None)
            self._settle_purchase(data, rnd)

        def _paid_sub(self, response: Any, person: Person, *, holder: str) -> Sub:
            """Pay the Checkout a page sent the person to; the subscription it made."""
            session_id = urlparse(response["Location"]).path.rsplit("/", 1)[-1]
            pay_checkout(world.stripe, session_id, email=person.email)
            sub_id = world.stripe.state.get_checkout_session(session_id)["subscription"]
            self.model.subs[sub_id] = Sub(id=sub_id, holder=holder)
            return self.model.subs[sub_id]

        def _may_link(self, person: Person) -> bool:
            return not person.linked and self.model.entitled(person) and not person.revoked

        @precondition(lambda self: self._anyone(self._may_link))
        @rule(data=st.data())
        def link(self, data: st.DataObject) -> None:
            """ "Link Discord": our redirect, the fake's OAuth page, our callback, guilds.join."""
            self._step("link")
            self.settle()
            person = self._pick(data, self._may_link)
            if person is None:
                return
            client = self._client(person)
            world.discord.set_oauth_user(person.discord_id)
            response = client.post("/claim/")
            assert response.status_code == 302, response.content
            back = authorize(response["Location"])
            response = client.get("/oauth/discord/callback/", back)
            assert response.status_code == 302, response.content
            person.linked = True
            person.in_guild = True

        def _may_introduce(self, person: Person) -> bool:
            waiting = any(p is person for p, _ in self.missed)
            return person.in_guild and not person.introduced and not waiting

        @precondition(lambda self: self._anyone(self._may_introduce))
        @rule(data=st.data())
        def introduce(self, data: st.DataObject) -> None:
            """A top-level message of ≥100 characters in #introductions: the bot handles it
            live, or, while no bot is connected, on its next connect (§2a)."""
            self._step("introduce" if self.bot_online else "introduce_while_bot_offline")
            self.settle()
            person = self._pick(data, self._may_introduce)
            if person is None:
                return
            channel = settings.DISCORD_INTRODUCTIONS_CHANNEL_ID
            message = world.discord.post_message(channel, person.discord_id, INTRO)
            if not self.bot_online:
                self.missed.append((person, timezone.now()))
                return
            facts = MessageFacts(
                channel_id=channel,
                author_id=person.discord_id,
                author_is_bot=False,
                content=INTRO,
            )
            introduction_handle(facts=facts, message_id=message["id"], now=timezone.now())
            introductions_mark_handled(channel_id=channel, message_id=message["id"])
            self.intro_mark = True
            if self.model.expected_role(person) == "squire":
                person.introduced = True

        @precondition(lambda self: self.bot_online)
        @rule()
        def bot_goes_offline(self) -> None:
            self._step("bot_offline")
            self.bot_online = False

        @precondition(lambda self: not self.bot_online)
        @rule()
        def bot_connects(self) -> None:
            """The bot connects and reads #introductions since the last message it handled
            (the last week when it never handled one)."""
            self._step("bot_connects")
            self.settle()
            now = timezone.now()
            introductions_catch_up(now=now)
            for person, posted_at in self.missed:
                if not self.intro_mark and posted_at < now - CATCH_UP_FIRST_WINDOW:
                    continue
                self.intro_mark = True
                if self.model.expected_role(person) == "squire":
                    person.introduced = True
            self.missed = []
            self.bot_online = True

        @precondition(lambda self: self._anyone(lambda p: p.in_guild))
        @rule(data=st.data())
        def leave_guild(self, data: st.DataObject) -> None:
            self._step("leave_guild")
            self.settle()
            person = self._pick(data, lambda p: p.in_guild)
            if person is None:
                return
            world.discord.remove_member(person.discord_id)
            member_guild_leave(discord_id=person.discord_id, now=timezone.now())
            person.in_guild = False

        @precondition(lambda self: self._anyone(lambda p: p.linked and not p.in_guild))
        @rule(data=st.data())
        def rejoin_guild(self, data: st.DataObject) -> None:
            self._step("rejoin_guild")
            self.settle()
            person = self._pick(data, lambda p: p.linked and not p.in_guild)
            if person is None:
                return
            world.discord.add_member(person.discord_id)
            member_guild_join(discord_id=person.discord_id, now=timezone.now())
            person.in_guild = True

        # --- company seats ---------------------------------------------------------------

        def _live_teams(self) -> list[Team]:
            return [
                t for t in self.model.teams.values() if not t.ended and self.model.subs[t.sub].live
            ]

        def _owner_client(self, team: Team) -> Client:
            return self._client(self.model.people[team.primary])

        def _may_claim(self, person: Person) -> bool:
            # Anyone without a live membership; someone with an email account claims with the
            # Discord account linked to it (§2a: a cancelled individual may take a seat).
            sub = self.model.sub_of(person)
            free = (
                person.team is None and (sub is None or not sub.live) and not person.complimentary
            )
            return free and (not person.email or person.linked)

        @precondition(lambda self: self._live_teams() and self._anyone(self._may_claim))
        @rule(data=st.data(), tier=st.sampled_from(["owner", "team"]))
        def invite_and_claim(self, data: st.DataObject, tier: str) -> None:
            """An owner creates an invite link; the invited person claims it through Discord's
            OAuth (a seat is claimed only while the team is entitled and the tier has room)."""
            self._step("invite_and_claim")
            self.settle()
            teams = self._live_teams()
            person = self._pick(data, self._may_claim)
            if not teams or person is None:
                return
            team = data.draw(st.sampled_from(teams))
            invites = Invite.objects.filter(team_id=self.team_rows[team.key])
            before = invites.count()
            response = self._owner_client(team).post("/team/invites/", {"tier": tier, "email": ""})
            assert response.status_code == 302, response.content
            sub = self.model.subs[team.sub]
            full = len(self.model.seats(team, tier)) >= team.paid[tier]
            if full or not self.model.sub_entitles(sub):
                # No invites for a full tier, nor while the team is not entitled (claims need
                # an entitled team not in Debtor, §2).
                assert invites.count() == before, "an invite was created that nobody may claim"
                return
            invite = invites.latest("pk")
            client = self.clients[person.name]
            client.logout()
            world.discord.set_oauth_user(person.discord_id)
            response = client.post(f"/invite/{invite.token}/")
            assert response.status_code == 302, response.content
            back = authorize(response["Location"])
            response = client.get("/oauth/discord/callback/", back)
            assert response.status_code == 302, response.content
            person.signed_up = True
            person.team, person.tier = team.key, tier
            person.claimed_seq = self._claim_seq()
            person.teams_ever.add(team.key)
            person.linked = True
            person.in_guild = True
            person.introduced = False

        @precondition(
            lambda self: self._anyone(
                lambda p: p.team is not None and p.name != self.model.teams[p.team].primary
            )
        )
        @rule(data=st.data())
        def revoke_seat(self, data: st.DataObject) -> None:
            """The primary owner revokes a seat: farewell DM, roles removed, kicked."""
            self._step("revoke_seat")
            self.settle()
            person = self._pick(
                data, lambda p: p.team is not None and p.name != self.model.teams[p.team].primary
            )
            if person is None:
                return
            team = self.model.teams[person.team or ""]
            member = self._member(person)
            response = self._owner_client(team).post(f"/team/members/{member.pk}/revoke/")
            assert response.status_code == 302, response.content
            self.model.seat_released(person)
            person.expected["seat_revoked:dm"] += 1

        @precondition(
            lambda self: any(not self.model.subs[t.sub].failing for t in self._live_teams())
        )
        @rule(data=st.data(), tier=st.sampled_from(["owner", "team"]), quantity=st.integers(1, 2))
        def add_seats(self, data: st.DataObject, tier: str, quantity: int) -> None:
            """Owners buy more seats (prorated, invoiced at once; counts follow Stripe)."""
            self._step("add_seats")
            self.settle()
            teams = [t for t in self._live_teams() if not self.model.subs[t.sub].failing]
            if not teams:
                return
            team = data.draw(st.sampled_from(teams))
            response = self._owner_client(team).post(
                "/team/seats/", {"tier": tier, "quantity": quantity}
            )
            assert response.status_code == 302, response.content
            team.paid[tier] += quantity
            self.settle()

        def _claim_seq(self) -> int:
            self.claims += 1
            return self.claims

        def _reducible(self) -> list[tuple[Team, str]]:
            # Owner seats never drop below one: the primary owner is never released (§2a), so
            # a team paying for no owner seat at all would hold more seats than it pays for.
            return [
                (team, tier)
                for team in self._live_teams()
                for tier in ("owner", "team")
                if team.paid[tier] > (1 if tier == "owner" else 0)
            ]

        @precondition(lambda self: self._reducible())
        @rule(data=st.data())
        def reduce_seats(self, data: st.DataObject) -> None:
            """The company lowers a seat quantity in Stripe (the portal or Stripe's dashboard);
            seats claimed beyond the new count are released when the gateway hears of it."""
            self._step("reduce_seats")
            team, tier = data.draw(st.sampled_from(self._reducible()))
            floor = 1 if tier == "owner" else 0
            paid = data.draw(st.integers(floor, team.paid[tier] - 1))
            price = (
                settings.STRIPE_OWNER_SEAT_PRICE_ID
                if tier == "owner"
                else (settings.STRIPE_TEAM_SEAT_PRICE_ID)
            )
            subscription = stripe.Subscription.retrieve(team.sub)
            item = next(i for i in subscription["items"]["data"] if i["price"]["id"] == price)
            stripe.SubscriptionItem.modify(item["id"], quantity=paid, proration_behavior="none")
            self.model.seats_reduced(team, tier, paid)
            self._collect()

        # --- staff ------------------------------------------------------------------------

        @precondition(lambda self: self._anyone(lambda p: p.signed_up))
        @rule(data=st.data())
        def admin_access(self, data: st.DataObject) -> None:
            """Staff revoke access (or restore it) from the member page's actions."""
            self.settle()
            person = self._pick(data, lambda p: p.signed_up)
            if person is None:
                return
            revoke = not person.revoked
            self._step("admin_revoke" if revoke else "admin_restore")
            action = member_access_revoke if revoke else member_access_restore
            action(member=self._member(person), actor=self.staff, reason="model test")
            person.revoked = revoke

        @precondition(lambda self: self._anyone(lambda p: p.signed_up))
        @rule(data=st.data(), days=st.sampled_from([None, 3, 40]))
        def admin_complimentary(self, data: st.DataObject, days: int | None) -> None:
            """Staff grant a complimentary membership (open-ended or until a date), or end it."""
            self.settle()
            person = self._pick(data, lambda p: p.signed_up)
            if person is None:
                return
            member = self._member(person)
            if person.complimentary:
                self._step("complimentary_end")
                member_complimentary_end(member=member, actor=self.staff, reason="model test")
                self.model.complimentary_ended(person)
                return
            self._step("complimentary_grant")
            ends_at = timezone.now() + timedelta(days=days) if days else None
            member_complimentary_grant(
                member=member, actor=self.staff, reason="model test", ends_at=ends_at
            )
            person.complimentary = True
            person.complimentary_ends_at = ends_at

        # --- Stripe (events wait in ``pending``) ------------------------------------------

        def _subs(self, test: Callable[[Sub], bool]) -> list[Sub]:
            """Live subscriptions the gateway knows, that pass ``test``."""
            held = {p.sub for p in self.model.people.values()}
            held |= {t.sub for t in self.model.teams.values() if not t.ended}
            return [s for s in self.model.subs.values() if s.live and s.id in held and test(s)]

        @precondition(lambda self: self._subs(lambda sub: not sub.failing))
        @rule(data=st.data())
        def renewal(self, data: st.DataObject) -> None:
            """The period ends and the renewal is paid (or ends the subscription if cancelling)."""
            self._step("renewal")
            sub = data.draw(st.sampled_from(self._subs(lambda sub: not sub.failing)))
            world.stripe.state.renew(sub.id)
            self.model.renewed(sub)
            self._collect()

        @precondition(lambda self: self._subs(lambda sub: not sub.cancel_at_period_end))
        @rule(data=st.data())
        def renewal_fails(self, data: st.DataObject) -> None:
            """The renewal payment fails; again while open, it is Stripe's retry failing."""
            self._step("renewal_fails")
            sub = data.draw(st.sampled_from(self._subs(lambda sub: not sub.cancel_at_period_end)))
            outcome = world.stripe.state.fail_renewal(sub.id)
            self.model.renewal_failed(sub, outcome["invoice"]["id"])
            self._collect()

        @precondition(lambda self: self._subs(lambda sub: sub.failing))
        @rule(data=st.data())
        def recover(self, data: st.DataObject) -> None:
            self._step("recover")
            sub = data.draw(st.sampled_from(self._subs(lambda sub: sub.failing)))
            world.stripe.state.recover(sub.id)
            self.model.paid_up(sub)
            self._collect()

        @precondition(lambda self: self._subs(lambda sub: not sub.failing))
        @rule(data=st.data(), value=st.booleans())
        def cancel_at_period_end(self, data: st.DataObject, value: bool) -> None:
            self._step("cancel_at_period_end")
            sub = data.draw(st.sampled_from(self._subs(lambda sub: not sub.failing)))
            world.stripe.state.set_cancel_at_period_end(sub.id, value)
            sub.cancel_at_period_end = value
            self._collect()

        @precondition(lambda self: self._subs(lambda sub: True))
        @rule(data=st.data())
        def cancel_now(self, data: st.DataObject) -> None:
            self._step("cancel_now")
            sub = data.draw(st.sampled_from(self._subs(lambda sub: True)))
            world.stripe.state.cancel(sub.id)
            sub.status = "canceled"
            self._collect()

        @precondition(
            lambda self: self._subs(lambda sub: not sub.dispute and not sub.charge_disputed)
        )
        @rule(data=st.data())
        def dispute_opened(self, data: st.DataObject) -> None:
            """The bank disputes the latest payment (``charge.dispute.created``)."""
            self._step("dispute_opened")
            sub = data.draw(
                st.sampled_from(self._subs(lambda s: not s.dispute and not s.charge_disputed))
            )
            dispute = world.stripe.state.open_dispute(sub.id)
            self.disputes[dispute["id"]] = sub.id
            sub.dispute, sub.charge_disputed = dispute["id"], True
            self._collect()

        @precondition(lambda self: any(s.dispute for s in self.model.subs.values()))
        @rule(data=st.data(), won=st.booleans())
        def dispute_closed(self, data: st.DataObject, won: bool) -> None:
            """The bank decides: won (access back) or lost (the membership ends)."""
            self._step("dispute_won" if won else "dispute_lost")
            sub = data.draw(st.sampled_from([s for s in self.model.subs.values() if s.dispute]))
            world.stripe.state.close_dispute(sub.dispute, won=won)
            sub.dispute, sub.dispute_lost = "", not won
            self._collect()

        @precondition(lambda self: self._subs(lambda sub: True))
        @rule(data=st.data())
        def refund(self, data: st.DataObject) -> None:
            """A refund of the latest payment: audited, changes nothing by itself (§2a)."""
            self._step("refund")
            sub = data.draw(st.sampled_from(self._subs(lambda s: True)))
            world.stripe.state.refund(sub.id)
            self._collect()

        # --- deliveries -------------------------------------------------------------------

        @precondition(lambda self: self.pending)
        @rule(index=st.integers(min_value=0))
        def deliver_one_out_of_order(self, index: int) -> None:
            self._step("deliver_out_of_order")
            self._hand_over(self.pending.pop(index % len(self.pending)))

        @precondition(lambda self: self.delivered)
        @rule(index=st.integers(min_value=0))
        def deliver_again(self, index: int) -> None:
            """Stripe's retry, or an operator's replay, of an event already delivered."""
            self._step("deliver_again")
            self._hand_over(self.delivered[index % len(self.delivered)])

        @precondition(lambda self: any(e["type"] in LOSABLE for e in self.pending))
        @rule(index=st.integers(min_value=0))
        def lose_one(self, index: int) -> None:
            """Every retry of a delivery failed: only reconciliation can bring it back."""
            self._step("lose_delivery")
            losable = [e for e in self.pending if e["type"] in LOSABLE]
            self.pending.remove(losable[index % len(losable)])
            self.lost = True

        @precondition(lambda self: self.pending or self.lost)
        @rule(rnd=st.randoms(use_true_random=False))
        def settle_deliveries(self, rnd: random.Random) -> None:
            """Everything pending arrives, in any order."""
            self._step("settle")
            self.settle(rnd)

        @precondition(lambda self: self.pending)
        @rule(rnd=st.randoms(use_true_random=False), seconds=st.sampled_from([0, 1, 3]))
        def settle_while_the_worker_is_busy(self, rnd: random.Random, seconds: int) -> None:
            """Everything pending arrives in any order (some twice) while the worker is busy,
            some seconds after Stripe sent it; one drain then applies the pile together."""
            self._step("settle_batched")
            self._collect()
            self.pending += rnd.sample(self.pending, k=len(self.pending) // 3)
            self.clock_control.shift(timedelta(seconds=seconds))
            self.settle(rnd, batched=True)

        # --- time -------------------------------------------------------------------------

        @precondition(lambda self: self._subs(lambda sub: True))
        @rule(jump=st.sampled_from(JUMPS))
        def time_passes(self, jump: timedelta) -> None:
            """Time passes (pending deliveries stay delayed); the worker's tick runs."""
            self._step("time_passes")
            self.clock_control.shift(jump)
            self._tick()

        @precondition(lambda self: self._subs(lambda sub: sub.episode is not None))
        @rule(jump=st.sampled_from(JUMPS))
        def time_passes_during_a_failure(self, jump: timedelta) -> None:
            """The same, drawn more often while a failure episode runs (grace, Debtor, removal)."""
            self.time_passes(jump)

        # --- invariants (once every delivery has settled) ---------------------------------

        @invariant()
        def gateway_agrees_with_the_model(self) -> None:
            if self.pending or self.lost:
                return
            stats.checks += 1
            self._check_roles()
            self._check_messages()
            self._check_stripe_cancellations()
            self._check_seats()

        def _check_roles(self) -> None:
            for person in self.model.people.values():
                held = world.discord.member_roles(person.discord_id)
                if not person.in_guild:
                    assert held is None, f"{person.name} should not be in the guild: {held}"
                    continue
                assert held is not None, f"{person.name} should be in the guild"
                names = sorted(n for n, rid in ROLE_IDS.items() if rid in held)
                role = self.model.expected_role(person)
                assert names == ([role] if role else []), (person.name, names, role)

        def _check_messages(self) -> None:
            rows = list(
                Notification.objects.filter(pk__gt=self.seen_notifications)
                .select_related("member__user")
                .order_by("pk")
            )
            by_email = {p.email: p for p in self.model.people.values()}
            for row in rows:
                if row.kind not in DUNNING_KINDS or row.member is None:
                    continue
                person = by_email.get(row.member.user.email)
                if person is None:
                    continue
                holders = {person.name} | person.teams_ever
                subs = [s for s in self.model.subs.values() if s.holder in holders]
                allowed = any(sub.dunning_allowed for sub in subs)
                assert allowed, f"{row.kind} to {person.name} outside any failure episode"
            if rows:
                self.seen_notifications = rows[-1].pk
            for sub in self.model.subs.values():
                sub.dunning_allowed = sub.episode is not None
            counted = {k.split(":")[0] for p in self.model.people.values() for k in p.expected}
            counted |= {"welcome", "payment_failed", "debtor_entered", "recovered_grace"}
            counted |= {"recovered_debtor", "removal", "payment_failed_member", "recovered_member"}
            counted |= {"seat_revoked", "dispute_opened", "dispute_won"}
            for person in self.model.people.values():
                if not person.signed_up:
                    continue
                member = self._member(person)
                actual: Counter[str] = Counter()
                for kind, channel in Notification.objects.filter(
                    member=member, kind__in=counted
                ).values_list("kind", "channel"):
                    actual[f"{kind}:{channel}"] += 1
                expected = +person.expected
                # The removal DM goes only to a member still reachable in Discord.
                actual.pop("removal:dm", None)
                assert actual == expected, (person.name, dict(actual), dict(expected))

        def _check_seats(self) -> None:
            """Claimed seats never exceed paid seats; the counts follow Stripe's quantities."""
            for team in self.model.teams.values():
                row = TeamRow.objects.get(pk=self.team_rows[team.key])
                for tier in ("owner", "team"):
                    claimed = Member.objects.filter(team=row, seat_tier=tier).count()
                    # §2a: ending a team detaches every member.
                    assert claimed == len(self.model.seats(team, tier)), (team.key, tier, claimed)
                    if team.ended:
                        continue
                    assert row.paid_seats(tier) == team.paid[tier], (team.key, tier)
                    assert claimed <= row.paid_seats(tier), (team.key, tier, claimed)

        def _check_stripe_cancellations(self) -> None:
            for entry in world.stripe.state.request_log():
                if entry["method"] == "DELETE" and entry["path"].startswith("/v1/subscriptions/"):
                    sub_id = entry["path"].rsplit("/", 1)[-1]
                    sub = self.model.subs[sub_id]
                    allowed = sub.failing or sub.dispute_lost or sub.replaced
                    assert sub.cancelled_by_us and allowed, f"we cancelled paid {sub_id}"

    return Gateway


def bounded_examples(default: int) -> int:
    return int(os.environ.get("MODEL_EXAMPLES", default))
