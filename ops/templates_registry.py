"""The catalogue of every message the gateway sends: kind, channels, variables, defaults.

A kind is the unit of wording: its default subject and body live in
``templates/messages/<kind>.subject.txt`` and ``templates/messages/<kind>.txt`` (Django template
syntax, rendered without HTML escaping), and a staff edit stored in ``MessageTemplate`` replaces
them. The variables listed here are the contract between the code that enqueues a message and
the people who edit its wording: the admin flags any other variable, because it would render
empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

EMAIL = "email"
DM = "dm"
ADMIN_CHANNEL = "admin_channel"

# Provided by the renderer for every kind (from settings and the member row); callers may
# override any of them through the notification context.
COMMON_VARIABLES: dict[str, str] = {
    "community_name": "Community name (setting COMMUNITY_NAME)",
    "app_url": "Base address of the gateway (setting APP_URL)",
    "member_name": "How we address the member (Discord name, else the email's local part)",
    "team_name": "The member's company team, empty for individual members",
    "dashboard_link": "The member dashboard",
    "portal_link": "The billing page; it opens a fresh Stripe billing portal session",
    "claim_link": "The page that links a Discord account",
    "login_link": "The login page",
    "team_link": "The owner's seat dashboard",
    "support_email": "Where replies go (setting EMAIL_REPLY_TO)",
    "introductions_channel": "A mention of the #introductions channel",
    "billing_support_channel": "A mention of the #billing-support channel",
}


@dataclass(frozen=True)
class MessageKind:
    kind: str
    group: str
    description: str
    channels: tuple[str, ...]
    # Variables this kind adds to COMMON_VARIABLES, with what they mean.
    variables: dict[str, str] = field(default_factory=dict)
    # Values used for the admin preview and the tests.
    sample: dict[str, object] = field(default_factory=dict)

    @property
    def all_variables(self) -> dict[str, str]:
        return {**COMMON_VARIABLES, **self.variables}

    @property
    def subject_template(self) -> str:
        return f"messages/{self.kind}.subject.txt"

    @property
    def body_template(self) -> str:
        return f"messages/{self.kind}.txt"


_GRACE = {"grace_ends_at": "When full access ends unless payment succeeds (a date)"}
_REMOVAL = {"removal_at": "When the member will be removed (a date)"}

KINDS: dict[str, MessageKind] = {
    k.kind: k
    for k in (
        MessageKind(
            "welcome",
            "Welcome",
            "Sent to the purchaser once the first payment succeeds.",
            (EMAIL,),
        ),
        MessageKind(
            "magic_link",
            "Account",
            "A single-use login link.",
            (EMAIL,),
            {
                "link": "The single-use login link",
                "expires_minutes": "Minutes before the link expires",
            },
            {"link": "{app_url}/login/link/verify/?token=sample-token", "expires_minutes": 15},
        ),
        MessageKind(
            "email_verify",
            "Account",
            "Sent at sign-up and on request: the link that proves the member owns the address.",
            (EMAIL,),
            {
                "link": "The single-use confirmation link",
                "expires_hours": "Hours before the link expires",
            },
            {"link": "{app_url}/email/verify/?token=sample-token", "expires_hours": 48},
        ),
        MessageKind(
            "password_reset",
            "Account",
            "A password reset link.",
            (EMAIL,),
            {"link": "The password reset link"},
            {"link": "{app_url}/password/reset/MQ/sample-token/"},
        ),
        MessageKind(
            "claim_reminder",
            "Reminders",
            "Paid but Discord not linked: 48 hours and 7 days after payment.",
            (EMAIL,),
        ),
        MessageKind(
            "claim_reminder_late",
            "Reminders",
            "Paid but Discord not linked: every 30 days up to 180 days (friendlier).",
            (EMAIL,),
            {"days_since_payment": "Whole days since the first payment"},
            {"days_since_payment": 60},
        ),
        MessageKind(
            "trial_ending",
            "Billing",
            "A free trial ends in three days: to an individual member or a company's purchaser.",
            (EMAIL,),
            {
                "trial_end": "When the trial ends (a date)",
                "has_card": "Whether the subscription has a card to charge (true or false)",
            },
            {"trial_end": "2026-03-03T12:00:00+00:00", "has_card": True},
        ),
        MessageKind(
            "payment_failed",
            "Billing",
            "Renewal failed: to an individual member or a team owner, with billing detail.",
            (EMAIL, DM),
            {**_GRACE, "grace_hours": "Length of the grace period in hours"},
            {"grace_ends_at": "2026-03-03T12:00:00+00:00", "grace_hours": 48},
        ),
        MessageKind(
            "payment_failed_member",
            "Billing",
            "Renewal failed: short notice to a team-seat member (their company pays).",
            (EMAIL, DM),
            dict(_GRACE),
            {"grace_ends_at": "2026-03-03T12:00:00+00:00", "team_name": "Acme Ltd"},
        ),
        MessageKind(
            "grace_warning",
            "Billing",
            "Half-way through the grace period: access is restricted soon.",
            (DM, EMAIL),
            {**_GRACE, "hours_left": "Hours until access is restricted"},
            {"grace_ends_at": "2026-03-03T12:00:00+00:00", "hours_left": 24},
        ),
        MessageKind(
            "debtor_entered",
            "Billing",
            "Grace expired: access restricted to the billing-support channel.",
            (DM, EMAIL),
            {**_REMOVAL, "days_left": "Days until removal"},
            {"removal_at": "2026-04-02T12:00:00+00:00", "days_left": 30},
        ),
        MessageKind(
            "debtor_reminder",
            "Billing",
            "Reminder while restricted (days 7, 10, 15, 20, 25 by default).",
            (DM, EMAIL),
            {**_REMOVAL, "days_left": "Days until removal"},
            {"removal_at": "2026-04-02T12:00:00+00:00", "days_left": 15},
        ),
        MessageKind(
            "final_warning",
            "Billing",
            "Final warnings before removal (48, 24 and 12 hours by default).",
            (DM, EMAIL),
            {**_REMOVAL, "hours_left": "Hours until removal"},
            {"removal_at": "2026-04-02T12:00:00+00:00", "hours_left": 24},
        ),
        MessageKind(
            "removal",
            "Billing",
            "Billing unresolved for the whole restricted period: the member is removed.",
            (DM, EMAIL),
        ),
        MessageKind(
            "recovered_grace",
            "Billing",
            "Payment succeeded during the grace period: nothing changed.",
            (DM, EMAIL),
        ),
        MessageKind(
            "recovered_debtor",
            "Billing",
            "Payment succeeded while restricted: access restored.",
            (DM, EMAIL),
            {"role_name": "The role the member holds again"},
            {"role_name": "Lord"},
        ),
        MessageKind(
            "recovered_member",
            "Billing",
            "Payment succeeded: short notice to a team-seat member (their company pays).",
            (DM, EMAIL),
            {},
            {"team_name": "Acme Ltd"},
        ),
        MessageKind(
            "seat_invite",
            "Team",
            "An owner invited someone to a seat on their company plan.",
            (EMAIL,),
            {
                "link": "The invite page",
                "seat_tier": "Owner seat or team seat",
                "inviter_name": "Who created the invite",
            },
            {
                "link": "{app_url}/invite/sample-invite-token/",
                "seat_tier": "team seat",
                "team_name": "Acme Ltd",
                "inviter_name": "Grace Hopper",
            },
        ),
        MessageKind(
            "seat_revoked",
            "Team",
            "An owner revoked the member's seat.",
            (DM, EMAIL),
            {},
            {"team_name": "Acme Ltd"},
        ),
        MessageKind(
            "seat_released",
            "Team",
            "The company reduced its paid seats below the claimed ones; this seat was one of "
            "the most recent claims beyond the paid count.",
            (DM, EMAIL),
            {},
            {"team_name": "Acme Ltd"},
        ),
        MessageKind(
            "seats_released_owner",
            "Team",
            "Sent to each owner when reducing the paid seats released claimed seats.",
            (EMAIL,),
            {
                "released_names": "Who lost their seat, comma-separated",
                "released_count": "How many seats were released",
            },
            {"team_name": "Acme Ltd", "released_names": "ann, bob", "released_count": 2},
        ),
        MessageKind(
            "farewell",
            "Welcome",
            "The subscription ended (cancellation or expiry).",
            (DM, EMAIL),
        ),
        MessageKind(
            "guild_rejoin",
            "Discord",
            "A member entitled to be in the Discord server is not in it (left, or never "
            "joined): one email per absence with a way back in.",
            (EMAIL,),
        ),
        MessageKind(
            "intro_guidance",
            "Discord",
            "The introduction was too short (at most one per 24 hours).",
            (DM,),
            {"min_length": "Minimum characters of an introduction"},
            {"min_length": 100},
        ),
        MessageKind(
            "intro_welcome",
            "Discord",
            "The introduction was accepted and full access granted.",
            (DM,),
            {"role_name": "The role granted"},
            {"role_name": "Knight"},
        ),
        MessageKind(
            "bot_alert",
            "Operations",
            "Something needs staff attention (permissions, hierarchy, failed writes).",
            (ADMIN_CHANNEL, EMAIL),
            {"summary": "One-line description", "details": "What happened and what to check"},
            {
                "summary": "Cannot add role Knight",
                "details": "Discord answered 403 Missing Permissions for member 42.",
            },
        ),
        MessageKind(
            "dispute_opened",
            "Billing",
            "A payment was disputed with the bank: access is paused until it is resolved.",
            (DM, EMAIL),
        ),
        MessageKind(
            "dispute_won",
            "Billing",
            "A disputed payment was resolved in the community's favour: access is back.",
            (DM, EMAIL),
        ),
        MessageKind(
            "dispute_staff",
            "Operations",
            "A payment dispute was opened or closed (to staff).",
            (ADMIN_CHANNEL, EMAIL),
            {
                "dispute_id": "Stripe dispute id",
                "subscription_id": "The disputed subscription",
                "status": "Stripe's dispute status",
                "outcome": "open, won or lost",
                "amount": "Disputed amount and currency",
                "reason": "The bank's reason",
                "holder": "The member or team billed by the subscription",
            },
            {
                "dispute_id": "dp_123",
                "subscription_id": "sub_123",
                "status": "needs_response",
                "outcome": "open",
                "amount": "20.00 EUR",
                "reason": "fraudulent",
                "holder": "ada@example.com",
            },
        ),
        MessageKind(
            "reconciliation_report",
            "Operations",
            "A reconciliation run found drift.",
            (ADMIN_CHANNEL, EMAIL),
            {
                "run_id": "Reconciliation run number",
                "status": "Run outcome",
                "findings_count": "Number of findings",
                "fixed": "Whether fixes were applied",
                "summary": "Findings, one per line",
            },
            {
                "run_id": 7,
                "status": "drift",
                "findings_count": 2,
                "fixed": False,
                "summary": "member 4: wrong role (has Squire, expected Knight)\n"
                "discord 99: managed role on unknown user",
            },
        ),
    )
}


class UnknownKindError(ValueError):
    pass


def get_kind(kind: str) -> MessageKind:
    try:
        return KINDS[kind]
    except KeyError:
        raise UnknownKindError(
            f"Unknown message kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}"
        ) from None


def sample_context(kind: str) -> dict[str, object]:
    """Context a preview renders with: the kind's sample values, links under APP_URL."""
    values = get_kind(kind).sample
    return {
        "member_name": "Ada Lovelace",
        **{
            key: value.format(app_url=settings.APP_URL) if isinstance(value, str) else value
            for key, value in values.items()
        },
    }
