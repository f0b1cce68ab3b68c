"""Reconciliation: compare Stripe, our database and Discord, report drift, optionally repair it.

Reads are bulk only — Stripe subscriptions 100 per page (``status=all``, stripe-python's
``raw_request``), guild members 1000 per page, database rows in chunks — and each source is
reduced to compact dicts keyed by id while it streams, so memory grows with the number of ids,
not with the size of the objects. The one exception is ``member_id`` mode, which reads just
that member's subscription and guild member.

Fixes never take a shortcut: they go through the paths every other flow uses, so a repair is
audited and paced like any other change —

- a stale dj-stripe row is re-synced from the listed Stripe object and applied with
  ``billing.services.subscription_apply`` (what a webhook does);
- a failure episode Stripe shows as paid is closed by ``billing.services.payment_recovered``;
- role differences are converged by ``discordsync.tasks.sync_member_roles`` (which re-reads
  the one member just before writing, so a page read minutes earlier never causes a wrong
  write);
- managed roles on Discord users we do not know are removed through the Discord client with
  an audit-log reason.

A linked member who should be in the guild but is not (``linked_not_in_guild``) cannot be
added back by us (that needs their OAuth token); every stored run (report-only too, never a
dry run) hands them to ``discordsync.services.guild_absence_record``, which emails them a way
back in once per absence. A member Discord lists in the guild while our row says otherwise
(a join no bot saw) is marked present, which ends the absence.

Admin overrides are honoured by ``expected_role`` and reported as ``override`` (informational),
never as drift. One run at a time across hosts (the ``reconciliation`` lease). A run that fixed
something schedules a report-only verification run one hour later; it is stored as a
``scheduled`` row (and a django-q2 one-off schedule), so a restart does not lose it.

Decisions: ``reconcile_paused`` stops the *scheduled* runs only — a staff member who starts a
run by hand (command or admin) means it. ``dry_run`` touches nothing at all: no fix, no stored
run, no lease, no report.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import stripe
import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task
from djstripe.models import Subscription

from billing.catalogue import price_roles, seat_counts
from billing.entitlement import FactsIndex, access
from billing.lifecycle import LifecycleError
from billing.models import FailureEpisode
from billing.plan_change import replaced_subscription_end
from billing.roles import expected_role, introduction_required, role_facts
from billing.services import (
    BillingError,
    SubscriptionSnapshot,
    checkout_recover,
    payment_recovered,
    subscription_apply,
)
from billing.truth import ENDED_STATUSES
from discordsync.client import DiscordError, get_client
from discordsync.selectors import managed_role_ids
from discordsync.services import guild_absence_record, guild_presence_record
from discordsync.tasks import sync_member_roles
from members.models import Member, Override, SeatTier, Team
from ops.leases import lease_acquire, lease_release
from ops.models import AuditAction, AuditActor, AuditLog, Lease, ReconciliationRun
from ops.services import audit_actor, audit_record, notification_enqueue

log = structlog.get_logger(__name__)

LEASE_NAME = "reconciliation"
# Renewed after every page and every fix, so only a dead process lets it lapse.
LEASE_TTL = timedelta(minutes=10)
VERIFY_AFTER = timedelta(hours=1)
# Worker time limit of a run task. It stays below Q_TIMEOUT (and so below Q_RETRY), so the
# broker never presents a run again while it is still going and a SIGTERM lets it finish;
# 100,000 members take about a minute (docs/PERFORMANCE.md).
RUN_TIMEOUT_SECONDS = 270
STRIPE_PAGE = 100
DISCORD_PAGE = 1000
DB_CHUNK = 2000
# Stored findings are capped so a catastrophic run cannot produce a huge row; counts stay exact.
MAX_STORED_FINDINGS = 1000
REPORT_EXAMPLES = 5

# Kinds that are drift (exit code 1, report); ``override`` is informational.
DRIFT_KINDS = (
    "missing_access",
    "unauthorised_access",
    "wrong_role",
    "debtor_mismatch",
    "multiple_managed_roles",
    "unknown_discord_user_with_managed_roles",
    "linked_not_in_guild",
    "db_status_differs_from_stripe",
    "stale_failure_episode",
    "seats_over_paid",
    "seat_counts_differ_from_stripe",
    "subscription_not_linked",
    "replaced_subscription_live",
)
INFO_KINDS = ("override",)
ROLE_KINDS = frozenset(
    {
        "missing_access",
        "unauthorised_access",
        "wrong_role",
        "debtor_mismatch",
        "multiple_managed_roles",
    }
)

Progress = Callable[[str, int], None]


class ReconciliationError(Exception):
    """A run could not start or complete; the message is meant for the operator."""


class ReconciliationBusy(ReconciliationError):
    """Another reconciliation holds the lease."""


class ReconciliationInterrupted(ReconciliationError):
    """Stopped on request (SIGTERM) after the page in hand."""


@dataclass
class _World:
    """Compact per-id facts gathered from the three sources."""

    stripe_status: dict[str, str] = field(default_factory=dict)
    # subscription id -> {seat tier: quantity}, only for company plans (seat checks).
    stripe_seats: dict[str, dict[str, int]] = field(default_factory=dict)
    # Catalogue price id -> role, read once per run (``billing.catalogue.price_roles``).
    price_roles: dict[str, str] = field(default_factory=price_roles)
    # subscription id -> paid invoice (compact) when Stripe shows it active and paid.
    paid_invoice: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Full Stripe objects, kept only for subscriptions whose mirror row is stale (drift).
    stale_objects: dict[str, Any] = field(default_factory=dict)
    db_status: dict[str, str] = field(default_factory=dict)
    # subscription id -> the (owner, team) seat counts our team row holds, for live teams.
    db_seats: dict[str, tuple[int, int]] = field(default_factory=dict)
    # subscription id -> (ours, Stripe's) seat counts where they differ (a lost update).
    seat_drift: dict[str, tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=dict)
    # subscription id -> (episode id, debtor_at) for open failure episodes.
    episodes: dict[str, tuple[int, datetime | None]] = field(default_factory=dict)
    # Live subscriptions our Checkout created that nobody holds: subscription id -> the member
    # and team ids its metadata names; and subscription id -> (the one it replaced in a plan
    # move, the member who moved).
    checkout_live: dict[str, dict[str, int]] = field(default_factory=dict)
    replaces: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    # Subscriptions held by a member or a live team, and those only an ended team still names.
    linked_live: set[str] = field(default_factory=set)
    linked_ended: set[str] = field(default_factory=set)

    def linked(self, sub_id: str) -> bool:
        """Someone holds it, or held it (a team keeps its subscription id after it ends)."""
        return sub_id in self.linked_live or sub_id in self.linked_ended

    in_guild: set[int] = field(default_factory=set)
    # Discord id -> managed role names held (only users holding at least one).
    held: dict[int, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class _Run:
    fix: bool
    now: datetime
    stop: Callable[[], bool]
    progress: Progress | None
    holder: str | None
    world: _World = field(default_factory=_World)
    counts: Counter[str] = field(default_factory=Counter)
    findings: list[dict[str, Any]] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)
    # Linked members Discord does not list in the guild, and those it lists while our row
    # says they are not in it.
    absent: list[int] = field(default_factory=list)
    present_again: list[int] = field(default_factory=list)

    def checkpoint(self, phase: str, done: int) -> None:
        """Between pages: honour a stop request, keep the lease, report progress."""
        if self.stop():
            raise ReconciliationInterrupted(f"interrupted during {phase}")
        if self.holder is not None and not lease_acquire(
            name=LEASE_NAME, holder=self.holder, ttl=LEASE_TTL, now=timezone.now()
        ):
            raise ReconciliationError("lost the reconciliation lease to another process")
        if self.progress is not None:
            self.progress(phase, done)

    def add(self, kind: str, key: str, **detail: Any) -> None:
        """One finding per (subject, kind), however many passes notice it."""
        if (key, kind) in self.seen:
            return
        self.seen.add((key, kind))
        self.counts[f"finding:{kind}"] += 1
        self.findings.append({"kind": kind, **detail})


# --- public API -------------------------------------------------------------------------------


def reconciliation_start(
    *, trigger: str, fix: bool, actor: Any = None, now: datetime | None = None
) -> ReconciliationRun:
    """Queue a run for the worker (admin "run now"); returns the stored ``scheduled`` row.

    Refused with ``ReconciliationBusy`` while another run holds the lease, so staff hear it at
    once instead of finding a failed row later.
    """
    now = now or timezone.now()
    if _lease_busy(now):
        raise ReconciliationBusy("A reconciliation is already running; try again when it ends.")
    with transaction.atomic():
        run = ReconciliationRun.objects.create(
            status=ReconciliationRun.Status.SCHEDULED,
            trigger=trigger,
            fix=fix,
            scheduled_for=now,
        )
        audit_record(
            **audit_actor(actor),
            action=AuditAction.RECONCILIATION_REQUESTED,
            target=run,
            details={"trigger": trigger, "fix": fix},
        )
        transaction.on_commit(lambda: _enqueue_run(run.pk))
    return run


def reconcile(
    *,
    fix: bool,
    dry_run: bool,
    member_id: int | None = None,
    trigger: str,
    progress: Progress | None = None,
    stop: Callable[[], bool] | None = None,
    run: ReconciliationRun | None = None,
    now: datetime | None = None,
) -> ReconciliationRun:
    """Run one reconciliation and return its row (unsaved when ``dry_run``).

    ``run`` is a row already claimed as ``running`` (scheduled and verification runs); without
    it a new row is created. Raises ``ReconciliationBusy`` when another run holds the lease
    (the refused row is stored as failed), ``ReconciliationInterrupted`` when ``stop`` turned
    true, ``ReconciliationError`` for anything else; the row then says why.
    """
    now = now or timezone.now()
    stop = stop or (lambda: False)
    if dry_run:
        run = ReconciliationRun(
            status=ReconciliationRun.Status.RUNNING, trigger=trigger, fix=fix, started_at=now
        )
        state = _Run(fix=False, now=now, stop=stop, progress=progress, holder=None)
        _collect(state, member_id=member_id)
        _finish(run, state, fixes=_planned_fixes(state) if fix else [], store=False)
        return run

    if run is None:
        run = ReconciliationRun.objects.create(
            status=ReconciliationRun.Status.RUNNING, trigger=trigger, fix=fix, started_at=now
        )
    holder = f"run:{run.pk}:{socket.gethostname()}:{os.getpid()}"
    if not lease_acquire(name=LEASE_NAME, holder=holder, ttl=LEASE_TTL, now=now):
        _fail(run, "refused: another reconciliation is running")
        raise ReconciliationBusy("another reconciliation is running; this one was not started")
    bound = log.bind(run_id=run.pk, trigger=trigger, fix=fix, member_id=member_id)
    bound.info("reconciliation_started")
    try:
        state = _Run(fix=fix, now=now, stop=stop, progress=progress, holder=holder)
        _collect(state, member_id=member_id)
        _note_guild_presence(state)
        fixes = _apply_fixes(state) if fix else []
        _finish(run, state, fixes=fixes, store=True)
    except ReconciliationInterrupted as exc:
        _fail(run, f"interrupted: {exc}")
        bound.warning("reconciliation_interrupted")
        raise
    except Exception as exc:
        _fail(run, f"{type(exc).__name__}: {exc}"[:2000])
        bound.exception("reconciliation_failed")
        if isinstance(exc, ReconciliationError):
            raise
        raise ReconciliationError(str(exc)) from exc
    finally:
        lease_release(name=LEASE_NAME, holder=holder, now=timezone.now())
    bound.info(
        "reconciliation_finished",
        status=run.status,
        findings=len(run.findings),
        fixes=len(run.fixes),
        **{k: v for k, v in run.counts.items() if k.startswith("api_")},
    )
    return run


def run_claim(*, run_id: int, now: datetime | None = None) -> ReconciliationRun | None:
    """Take a due scheduled run for execution (conditional UPDATE); None if it is not due or
    someone else took it."""
    now = now or timezone.now()
    claimed = ReconciliationRun.objects.filter(
        pk=run_id, status=ReconciliationRun.Status.SCHEDULED, scheduled_for__lte=now
    ).update(status=ReconciliationRun.Status.RUNNING, started_at=now)
    return ReconciliationRun.objects.get(pk=run_id) if claimed else None


def run_execute(*, run: ReconciliationRun) -> str:
    """Execute a claimed run for a worker task; failures are recorded on the row, not raised."""
    try:
        done = reconcile(fix=run.fix, dry_run=False, trigger=run.trigger, run=run)
    except ReconciliationError as exc:
        log.warning("reconciliation_run_failed", run_id=run.pk, error=str(exc))
        return "failed"
    return str(done.status)


def daily_run_claim(
    *, day: Any, paused: bool, fix: bool, now: datetime | None = None
) -> ReconciliationRun | None:
    """Store the ``scheduled`` run of ``day`` (unique), or None when another worker did.

    When paused, the row is stored as ``skipped`` so the admin shows the day was not forgotten.
    """
    now = now or timezone.now()
    status = ReconciliationRun.Status.SKIPPED if paused else ReconciliationRun.Status.SCHEDULED
    try:
        with transaction.atomic():
            return ReconciliationRun.objects.create(
                status=status,
                trigger="schedule",
                fix=fix,
                scheduled_day=day,
                scheduled_for=now,
                started_at=now if paused else None,
                finished_at=now if paused else None,
                error="reconciliation is paused in the gateway settings" if paused else "",
            )
    except IntegrityError:
        return None


# --- gathering --------------------------------------------------------------------------------


def _collect(state: _Run, *, member_id: int | None) -> None:
    world = state.world
    member = None
    if member_id is not None:
        member = Member.objects.select_related("team").filter(pk=member_id).first()
        if member is None:
            raise ReconciliationError(f"no member with id {member_id}")
    subscription_ids = [member.billing_subscription_id] if member else None
    _read_db_statuses(state, world, subscription_ids)
    _read_episodes(world, subscription_ids)
    _read_holders(world)
    if member is None:
        _read_stripe(state, world)
        _read_discord(state, world)
    else:
        _read_one(state, world, member)
    _diff_members(state, world, member_id)
    _diff_subscriptions(state, world)
    _diff_holders(state, world)
    _diff_seats(state, world, member)


def _read_db_statuses(state: _Run, world: _World, ids: list[str] | None) -> None:
    rows = Subscription.objects.all()
    if ids is not None:
        rows = rows.filter(id__in=[i for i in ids if i])
    for sub_id, data in rows.values_list("id", "stripe_data").iterator(chunk_size=DB_CHUNK):
        world.db_status[sub_id] = str((data or {}).get("status") or "")
    state.counts["db_subscriptions"] = len(world.db_status)
    teams = Team.objects.filter(subscription_id__isnull=False, cancelled_at__isnull=True)
    if ids is not None:
        teams = teams.filter(subscription_id__in=[i for i in ids if i])
    for sub_id, owner, team in teams.values_list("subscription_id", "owner_seats", "team_seats"):
        world.db_seats[sub_id] = (owner, team)


def _read_holders(world: _World) -> None:
    """Which subscriptions someone holds (members, live teams) or held (ended teams)."""
    members = Member.objects.exclude(subscription_id="").values_list("subscription_id", flat=True)
    world.linked_live.update(members.iterator(chunk_size=DB_CHUNK))
    teams = Team.objects.filter(subscription_id__isnull=False).exclude(subscription_id="")
    for sub_id, cancelled_at in teams.values_list("subscription_id", "cancelled_at"):
        (world.linked_live if cancelled_at is None else world.linked_ended).add(sub_id)


def _read_episodes(world: _World, ids: list[str] | None) -> None:
    rows = FailureEpisode.objects.filter(closed_at__isnull=True)
    if ids is not None:
        rows = rows.filter(subscription_id__in=[i for i in ids if i])
    for pk, sub_id, debtor_at in rows.values_list("pk", "subscription_id", "debtor_at"):
        world.episodes[sub_id] = (pk, debtor_at)


def _remember_subscription(state: _Run, world: _World, sub: Any) -> None:
    """Reduce one Stripe subscription to what the diff needs."""
    sub_id = str(sub["id"])
    status = str(sub.get("status") or "")
    world.stripe_status[sub_id] = status
    state.counts["subscriptions"] += 1
    quantities = seat_counts(sub, roles=world.price_roles)
    if any(quantities.values()):
        world.stripe_seats[sub_id] = quantities
    ours = world.db_seats.get(sub_id)
    theirs = (quantities[SeatTier.OWNER], quantities[SeatTier.TEAM])
    if ours is not None and ours != theirs:
        # A lost customer.subscription.updated: the counts (and any seats beyond them) follow
        # Stripe only when the subscription is applied again.
        world.seat_drift[sub_id] = (ours, theirs)
        world.stale_objects[sub_id] = sub
    _remember_checkout(world, sub)
    invoice = sub.get("latest_invoice")
    if (
        sub_id in world.episodes
        and status == "active"
        and _is_object(invoice)
        and invoice.get("status") == "paid"
    ):
        world.paid_invoice[sub_id] = dict(invoice)
    db_status = world.db_status.get(sub_id)
    if db_status is not None and db_status != status:
        world.stale_objects[sub_id] = sub


def _remember_checkout(world: _World, sub: dict[str, Any]) -> None:
    """A subscription our Checkout created names its buyer in its metadata
    (``billing/checkout.py``), and the subscription a plan move replaces."""
    sub_id, status = str(sub["id"]), str(sub.get("status") or "")
    metadata = sub.get("metadata") or {}
    names = {
        key: int(metadata[key])
        for key in ("member_id", "team_id")
        if str(metadata.get(key) or "").isdigit()
    }
    if metadata.get("replaces"):
        world.replaces[sub_id] = (str(metadata["replaces"]), names.get("member_id"))
    live = status not in ENDED_STATUSES
    if live and metadata.get("plan_type") in ("individual", "company") and not world.linked(sub_id):
        world.checkout_live[sub_id] = names


def _is_object(value: Any) -> bool:
    """An expanded object rather than an id."""
    return isinstance(value, dict)


def _stripe_client() -> stripe.StripeClient:
    """stripe-python as ``billing.stripe_client`` configured it: key, base, timeout, retries."""
    return stripe.StripeClient(
        str(stripe.api_key or settings.STRIPE_SECRET_KEY),
        base_addresses={"api": stripe.api_base},
        max_network_retries=stripe.max_network_retries,
        http_client=stripe.default_http_client,
    )


def _stripe_get(client: stripe.StripeClient, path: str, **params: Any) -> dict[str, Any]:
    """One GET as plain JSON: turning a page into StripeObjects costs about 3 ms per
    subscription — ten times the HTTP round trip — and we keep only a few fields of each."""
    return client.raw_request("get", path, **params).data


def _stripe_pages() -> Iterator[dict[str, Any]]:
    """Every subscription (``status=all``), 100 per call, ``latest_invoice`` expanded inline."""
    client = _stripe_client()
    params: dict[str, Any] = {
        "status": "all",
        "limit": STRIPE_PAGE,
        "expand": ["data.latest_invoice"],
    }
    while True:
        page = _stripe_get(client, "/v1/subscriptions", **params)
        yield page
        if not page.get("has_more") or not page.get("data"):
            return
        params["starting_after"] = page["data"][-1]["id"]


def _read_stripe(state: _Run, world: _World) -> None:
    for page in _stripe_pages():
        state.counts["api_stripe_reads"] += 1
        for sub in page["data"]:
            _remember_subscription(state, world, sub)
        state.checkpoint("stripe", state.counts["subscriptions"])


def _remember_guild_member(state: _Run, world: _World, body: dict[str, Any], roles: dict) -> None:
    user_id = int(body["user"]["id"])
    world.in_guild.add(user_id)
    state.counts["guild_members"] += 1
    held = tuple(name for name, role_id in roles.items() if role_id in body.get("roles", ()))
    if held:
        world.held[user_id] = held


def _read_discord(state: _Run, world: _World) -> None:
    client = get_client()
    roles = managed_role_ids()
    after = "0"
    while True:
        page = client.request(
            "GET",
            f"/guilds/{client.guild_id}/members",
            params={"limit": DISCORD_PAGE, "after": after},
        )
        state.counts["api_discord_reads"] += 1
        for body in page or []:
            _remember_guild_member(state, world, body, roles)
        state.checkpoint("discord", state.counts["guild_members"])
        if not page or len(page) < DISCORD_PAGE:
            return
        after = page[-1]["user"]["id"]


def _read_one(state: _Run, world: _World, member: Member) -> None:
    """``--member``: one subscription, the member's own purchases and one guild member,
    nothing in bulk."""
    client = _stripe_client()
    sub_id = member.billing_subscription_id
    if sub_id:
        sub = _stripe_get(client, f"/v1/subscriptions/{sub_id}", expand=["latest_invoice"])
        state.counts["api_stripe_reads"] += 1
        _remember_subscription(state, world, sub)
    if member.stripe_customer_id:
        # What they bought on their own customer, a purchase nobody holds included.
        page = _stripe_get(
            client,
            "/v1/subscriptions",
            customer=member.stripe_customer_id,
            status="all",
            limit=STRIPE_PAGE,
        )
        state.counts["api_stripe_reads"] += 1
        for other in page["data"]:
            if other["id"] != sub_id:
                _remember_subscription(state, world, other)
    if member.discord_id:
        body = get_client().get_member(member.discord_id)
        state.counts["api_discord_reads"] += 1
        if body is not None:
            _remember_guild_member(state, world, body, managed_role_ids())


# --- diffing ----------------------------------------------------------------------------------


def _member_rows(member_id: int | None) -> Iterator[tuple[Any, ...]]:
    rows = Member.objects.filter(discord_id__isnull=False).exclude(discord_id="")
    if member_id is not None:
        rows = Member.objects.filter(pk=member_id)
    return rows.values_list(
        "pk",
        "discord_id",
        "subscription_id",
        "team_id",
        "team__subscription_id",
        "seat_tier",
        "introduced_at",
        "override",
        "forced_role",
        "in_guild",
    ).iterator(chunk_size=DB_CHUNK)


def _diff_members(state: _Run, world: _World, member_id: int | None) -> None:
    require_intro = introduction_required()
    # The entitlement facts besides the status (episodes, removals, disputes, complimentary
    # memberships): a few queries for the whole table; the status is Stripe's, read above.
    entitlement = FactsIndex.load(
        subscription_ids=None if member_id is None else {*world.db_status, *world.stripe_status},
        member_ids=None if member_id is None else [member_id],
        statuses=False,
    )
    known: set[int] = set()
    for done, row in enumerate(_member_rows(member_id), start=1):
        pk, discord_id, own_sub, team_id, team_sub, tier, introduced_at, override = row[:8]
        forced, marked_in_guild = row[8:]
        state.counts["members"] += 1
        sub_id = (team_sub or "") if team_id else own_sub
        status = world.stripe_status.get(sub_id, world.db_status.get(sub_id, ""))
        if not discord_id:
            continue
        did = int(discord_id)
        known.add(did)
        billing = entitlement.facts(member_id=pk, subscription_id=sub_id, status=status)
        facts = role_facts(
            linked=True,
            access=access(billing, state.now),
            introduced=introduced_at is not None,
            seat_tier=tier,
            override=override,
            forced_role=forced,
            introduction_required=require_intro,
        )
        expected = expected_role(facts)
        held = world.held.get(did, ())
        base = {
            "member_id": pk,
            "discord_id": discord_id,
            "subscription_id": sub_id,
            "stripe_status": status,
            "expected": str(expected or ""),
            "held": list(held),
        }
        if override in (Override.REVOKED, Override.FORCED):
            state.add("override", f"m{pk}", **base, detail=f"admin override: {override} {forced}")
        in_guild = did in world.in_guild
        kind = _role_drift(expected, held, in_guild=in_guild)
        if kind:
            state.add(kind, f"m{pk}", **base, detail=_describe(kind, expected, held))
        if kind == "linked_not_in_guild":
            state.absent.append(pk)
        elif in_guild and not marked_in_guild:
            state.present_again.append(pk)
        if done % DB_CHUNK == 0:
            state.checkpoint("members", done)
    if member_id is None:
        for did, held in world.held.items():
            if did not in known:
                state.add(
                    "unknown_discord_user_with_managed_roles",
                    f"d{did}",
                    discord_id=str(did),
                    held=list(held),
                    detail=f"Discord user {did} holds {', '.join(held)} but is no member",
                )


def _role_drift(expected: str | None, held: tuple[str, ...], *, in_guild: bool) -> str:
    """The one role finding for a linked member, most specific first ("" when in sync)."""
    if not in_guild:
        return "linked_not_in_guild" if expected else ""
    if len(held) > 1:
        return "multiple_managed_roles"
    if not held:
        return "missing_access" if expected else ""
    if expected is None:
        return "unauthorised_access"
    if held[0] == expected:
        return ""
    if "debtor" in (expected, held[0]):
        return "debtor_mismatch"
    return "wrong_role"


def _describe(kind: str, expected: str | None, held: tuple[str, ...]) -> str:
    has = ", ".join(held) or "no managed role"
    if kind == "linked_not_in_guild":
        return f"linked and entitled to {expected}, but not in the guild"
    return f"holds {has}; expected {expected or 'no managed role'}"


def _diff_subscriptions(state: _Run, world: _World) -> None:
    for sub_id, (ours, theirs) in world.seat_drift.items():
        state.add(
            "seat_counts_differ_from_stripe",
            f"c{sub_id}",
            subscription_id=sub_id,
            detail=f"team holds {ours[0]} owner / {ours[1]} team seats as paid, Stripe says "
            f"{theirs[0]} / {theirs[1]}",
        )
    for sub_id, sub in world.stale_objects.items():
        if world.db_status.get(sub_id) == str(sub.get("status") or ""):
            continue  # kept for its seat counts only
        state.add(
            "db_status_differs_from_stripe",
            f"s{sub_id}",
            subscription_id=sub_id,
            stripe_status=str(sub.get("status") or ""),
            db_status=world.db_status.get(sub_id, ""),
            detail=f"database says {world.db_status.get(sub_id)!r}, Stripe says "
            f"{sub.get('status')!r}",
        )
    for sub_id, invoice in world.paid_invoice.items():
        state.add(
            "stale_failure_episode",
            f"s{sub_id}",
            subscription_id=sub_id,
            episode_id=world.episodes[sub_id][0],
            invoice_id=str(invoice.get("id") or ""),
            detail="failure episode open, but Stripe shows the subscription active and paid",
        )


def _diff_holders(state: _Run, world: _World) -> None:
    """Live subscriptions of ours that nobody holds: a plan a move replaced that still bills,
    or a completion that never arrived (the buyer paid and has nothing)."""
    replaced: set[str] = set()
    for new, (old, buyer) in world.replaces.items():
        live = world.stripe_status.get(old, "") not in ("", *ENDED_STATUSES)
        if live and new in world.linked_live and old not in world.linked_live:
            replaced.add(old)
            state.add(
                "replaced_subscription_live",
                f"s{old}",
                subscription_id=old,
                replaced_by=new,
                **({"member_id": buyer} if buyer else {}),
                detail=f"replaced by {new} in a plan move, still billing",
            )
    unheld = [sub_id for sub_id in world.checkout_live if sub_id not in replaced]
    # Linked while the pages were read (a completion that arrived meanwhile): not drift.
    linked_since = set(
        Member.objects.filter(subscription_id__in=unheld).values_list("subscription_id", flat=True)
    ) | set(
        Team.objects.filter(subscription_id__in=unheld).values_list("subscription_id", flat=True)
    )
    for sub_id in unheld:
        if world.linked(sub_id) or sub_id in linked_since:
            continue
        state.add(
            "subscription_not_linked",
            f"s{sub_id}",
            subscription_id=sub_id,
            **world.checkout_live[sub_id],
            detail="paid through Checkout, held by no member or team (its completion never "
            "arrived)",
        )


def _diff_seats(state: _Run, world: _World, member: Member | None) -> None:
    teams = Team.objects.filter(subscription_id__isnull=False)
    if member is not None:
        teams = teams.filter(pk=member.team_id or 0)
    occupied = Counter(
        {
            (row["team_id"], row["seat_tier"]): row["n"]
            for row in Member.objects.filter(team__in=teams)
            .values("team_id", "seat_tier")
            .annotate(n=Count("id"))
        }
    )
    for team_id, sub_id in teams.values_list("pk", "subscription_id").iterator(chunk_size=DB_CHUNK):
        if sub_id not in world.stripe_status:
            continue
        paid = world.stripe_seats.get(sub_id, {})
        for tier in (SeatTier.OWNER, SeatTier.TEAM):
            used, bought = occupied[(team_id, tier)], paid.get(tier, 0)
            if used > bought:
                state.add(
                    "seats_over_paid",
                    f"t{team_id}:{tier}",
                    team_id=team_id,
                    subscription_id=sub_id,
                    tier=str(tier),
                    detail=f"{used} {tier} seats taken, {bought} paid",
                )


# --- guild presence -------------------------------------------------------------------------


def _note_guild_presence(state: _Run) -> None:
    """Record who is in the guild and who is missing; the missing get their way back in."""
    if state.present_again:
        state.counts["members_marked_in_guild"] += guild_presence_record(
            member_ids=state.present_again, now=state.now
        )
    for member_id in state.absent:
        if guild_absence_record(member_id=member_id, now=state.now):
            state.counts["guild_rejoin_emails"] += 1


# --- fixing -----------------------------------------------------------------------------------


def _planned_fixes(state: _Run) -> list[dict[str, Any]]:
    """What a fixing run would do (dry run), in the order it would do it."""
    planned = []
    for finding in state.findings:
        action = _fix_action(finding["kind"])
        if action:
            planned.append({**_subject(finding), "kind": finding["kind"], "action": action})
    return planned


def _fix_action(kind: str) -> str:
    if kind in ROLE_KINDS:
        return "sync_member_roles"
    return {
        "db_status_differs_from_stripe": "resync_subscription",
        "seat_counts_differ_from_stripe": "resync_subscription",
        "stale_failure_episode": "close_failure_episode",
        "unknown_discord_user_with_managed_roles": "remove_managed_roles",
        "subscription_not_linked": "link_subscription",
        "replaced_subscription_live": "end_replaced_subscription",
    }.get(kind, "")


def _subject(finding: dict[str, Any]) -> dict[str, Any]:
    keys = ("member_id", "discord_id", "subscription_id", "team_id", "replaced_by")
    return {k: finding[k] for k in keys if k in finding}


def _apply_fixes(state: _Run) -> list[dict[str, Any]]:
    """Database first (mirror, episodes), then Discord, so role syncs see the repaired state."""
    order = {
        "link_subscription": 0,
        "end_replaced_subscription": 0,
        "resync_subscription": 1,
        "close_failure_episode": 2,
        "sync_member_roles": 3,
        "remove_managed_roles": 4,
    }
    planned = sorted(_planned_fixes(state), key=lambda f: order[f["action"]])
    stale = state.world.stale_objects
    first_audit = AuditLog.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    synced: set[int] = set()
    resynced: set[str] = set()
    done: list[dict[str, Any]] = []
    for n, fix in enumerate(planned, start=1):
        action = fix["action"]
        outcome: dict[str, Any] = {**fix, "ok": True}
        try:
            if action == "resync_subscription":
                sub_id = fix["subscription_id"]
                if sub_id in resynced:
                    continue  # its status and its seat counts are one re-application
                resynced.add(sub_id)
                with transaction.atomic():
                    previous = (
                        Subscription.objects.filter(id=sub_id)
                        .values_list("stripe_data", flat=True)
                        .first()
                    )
                    synced_sub = Subscription.sync_from_stripe_data(
                        _without_expansions(stale[sub_id]), api_key=settings.STRIPE_SECRET_KEY
                    )
                    subscription_apply(
                        snapshot=SubscriptionSnapshot(
                            subscription=synced_sub, previous=previous or {}
                        ),
                        now=state.now,
                    )
            elif action == "link_subscription":
                # Decided from a fresh read: the page's copy must not be re-applied after it.
                resynced.add(fix["subscription_id"])
                outcome["session_id"] = checkout_recover(
                    subscription_id=fix["subscription_id"], now=state.now
                )
            elif action == "end_replaced_subscription":
                resynced.add(fix["subscription_id"])
                replaced_subscription_end(
                    subscription_id=fix["subscription_id"],
                    replaced_by=fix["replaced_by"],
                    target=Member.objects.filter(pk=fix.get("member_id") or 0).first(),
                )
            elif action == "close_failure_episode":
                sub_id = fix["subscription_id"]
                closed = payment_recovered(subscription_id=sub_id, now=state.now)
                if not closed:
                    outcome.update(ok=False, error="the paid invoice is not the failed renewal")
            elif action == "sync_member_roles":
                member_id = fix["member_id"]
                if member_id not in synced:
                    synced.add(member_id)
                    state.counts["api_discord_reads"] += 1  # the task re-reads the member
                    outcome["result"] = sync_member_roles(member_id)
                    outcome["ok"] = outcome["result"] != "failed"
            elif action == "remove_managed_roles":
                _remove_unknown_roles(state, fix["discord_id"])
        except (
            DiscordError,
            stripe.StripeError,
            ReconciliationError,
            BillingError,
            LifecycleError,
        ) as exc:
            outcome.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
            log.warning("reconciliation_fix_failed", action=action, error=type(exc).__name__)
        done.append(outcome)
        state.checkpoint("fixes", n)
    role_writes = AuditLog.objects.filter(
        pk__gt=first_audit,
        action__in=("discord_role_added", "discord_role_removed"),
        target_type="member",
        target_id__in=[str(m) for m in synced],
    ).count()
    state.counts["api_discord_writes"] += role_writes
    return done


def _without_expansions(sub: dict[str, Any]) -> stripe.Subscription:
    """The listed subscription as the StripeObject dj-stripe syncs from (only drifted ones are
    converted), without the expanded invoice, which the repair should not sync as a side
    effect."""
    data = dict(sub)
    invoice = data.get("latest_invoice")
    if _is_object(invoice):
        data["latest_invoice"] = invoice.get("id")
    return stripe.Subscription.construct_from(data, str(stripe.api_key or ""))


def _remove_unknown_roles(state: _Run, discord_id: str) -> None:
    """A stranger holding managed roles: take them away, with the reason in Discord's audit log.

    Re-reads the user first (it may have been linked or changed since the page was read).
    """
    if Member.objects.filter(discord_id=discord_id).exists():
        return
    client = get_client()
    body = client.get_member(discord_id)
    state.counts["api_discord_reads"] += 1
    if body is None:
        return
    held = set(body.get("roles") or ())
    reason = "Membership Gateway reconciliation: managed role on a user who is not a member"
    for name, role_id in managed_role_ids().items():
        if role_id in held:
            client.remove_role(discord_id, role_id, reason=reason)
            state.counts["api_discord_writes"] += 1
            audit_record(
                actor_type=AuditActor.SYSTEM,
                actor_label="reconciliation",
                action=AuditAction.DISCORD_ROLE_REMOVED_UNKNOWN_USER,
                details={"discord_id": discord_id, "role": name, "role_id": role_id},
                reason=reason,
            )


# --- finishing --------------------------------------------------------------------------------


def _finish(
    run: ReconciliationRun, state: _Run, *, fixes: list[dict[str, Any]], store: bool
) -> None:
    drift = [f for f in state.findings if f["kind"] in DRIFT_KINDS]
    counts = {"api_stripe_reads": 0, "api_discord_reads": 0, "api_discord_writes": 0}
    counts.update(state.counts)
    counts["findings"] = len(drift)
    counts["informational"] = len(state.findings) - len(drift)
    counts["fixes"] = sum(1 for f in fixes if f.get("ok", True))
    counts["fixes_failed"] = sum(1 for f in fixes if f.get("ok") is False)
    counts["api_calls"] = sum(v for k, v in counts.items() if k.startswith("api_"))
    run.counts = counts
    run.findings = state.findings[:MAX_STORED_FINDINGS]
    run.fixes = fixes[:MAX_STORED_FINDINGS]
    run.status = ReconciliationRun.Status.DRIFT if drift else ReconciliationRun.Status.CLEAN
    run.finished_at = timezone.now()
    if not store:
        return
    applied = state.fix and counts["fixes"] > 0
    with transaction.atomic():
        run.save()
        if drift:
            _report(run, drift, fixed=state.fix)
        if applied and not run.is_verification:
            _schedule_verification(run)


def _report(run: ReconciliationRun, drift: list[dict[str, Any]], *, fixed: bool) -> None:
    """To the admin channel and ADMIN_EMAIL, only when something was found (no all-clear)."""
    by_kind = Counter(f["kind"] for f in drift)
    lines = []
    for kind, count in by_kind.most_common():
        examples = [f["detail"] for f in drift if f["kind"] == kind][:REPORT_EXAMPLES]
        lines.append(f"{kind}: {count}")
        lines.extend(f"  - {example}" for example in examples)
    context = {
        "run_id": run.pk,
        "status": run.status,
        "findings_count": len(drift),
        "fixed": fixed,
        "summary": "\n".join(lines)[:1800],
    }
    for channel, recipient in (
        ("admin_channel", settings.DISCORD_ADMIN_CHANNEL_ID),
        ("email", settings.ADMIN_EMAIL),
    ):
        notification_enqueue(
            kind="reconciliation_report",
            channel=channel,
            recipient=recipient,
            episode=f"run:{run.pk}",
            context=context,
        )


def _schedule_verification(run: ReconciliationRun) -> ReconciliationRun:
    """A report-only re-run one hour later, stored so a restart cannot lose it."""
    due = (run.finished_at or timezone.now()) + VERIFY_AFTER
    verification = ReconciliationRun.objects.create(
        status=ReconciliationRun.Status.SCHEDULED,
        trigger="verification",
        fix=False,
        is_verification=True,
        scheduled_for=due,
    )
    # The one-off schedule fires it on time; reconcile_scheduled picks up anything overdue.
    _schedule_once(verification, due)
    log.info("reconciliation_verification_scheduled", run_id=verification.pk, due=due.isoformat())
    return verification


def _schedule_once(run: ReconciliationRun, due: datetime) -> None:
    Schedule.objects.update_or_create(
        name=f"reconciliation run {run.pk}",
        defaults={
            "func": "gateway.tasks.reconcile_verify",
            "args": repr((run.pk,)),
            "kwargs": repr({"q_options": {"timeout": RUN_TIMEOUT_SECONDS}}),
            "schedule_type": Schedule.ONCE,
            "repeats": 1,
            "next_run": due,
        },
    )


def run_postpone(*, run_id: int, delay: timedelta, now: datetime | None = None) -> None:
    """A due run met a busy lease: try again later instead of failing (verification runs)."""
    due = (now or timezone.now()) + delay
    run = ReconciliationRun.objects.filter(
        pk=run_id, status=ReconciliationRun.Status.SCHEDULED
    ).first()
    if run is None:
        return
    ReconciliationRun.objects.filter(pk=run_id).update(scheduled_for=due)
    _schedule_once(run, due)


def lease_busy(now: datetime | None = None) -> bool:
    """True while another process holds the reconciliation lease."""
    return _lease_busy(now or timezone.now())


def _fail(run: ReconciliationRun, error: str) -> None:
    run.status = ReconciliationRun.Status.FAILED
    run.error = error
    run.finished_at = timezone.now()
    if run.started_at is None:
        run.started_at = run.finished_at
    run.save()


def _lease_busy(now: datetime) -> bool:
    return Lease.objects.filter(name=LEASE_NAME, expires_at__gt=now).exclude(holder="").exists()


def _enqueue_run(run_id: int) -> None:
    async_task("gateway.tasks.reconcile_run", run_id, timeout=RUN_TIMEOUT_SECONDS)


def run_enqueue(*, run_id: int) -> None:
    """Hand a stored run to a worker with the run's own time limit."""
    _enqueue_run(run_id)
