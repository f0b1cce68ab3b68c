"""The outbox de-duplicates by the full key, whatever its length (issue: keys cut at 255)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ops.models import Notification
from ops.services import notification_enqueue

pytestmark = pytest.mark.django_db

# Episode names are built by the gateway from Stripe and Discord ids and step names: any
# printable text, but never NUL (PostgreSQL text cannot hold it) nor lone surrogates.
episode_chars = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))

# A valid address as long as the column allows: local part 64, domain up to the 254 total.
LONG_EMAIL = "a" * 64 + "@" + ".".join(["b" * 60, "c" * 60, "d" * 59]) + ".example"


def test_long_addresses_that_share_a_prefix_each_get_their_message():
    assert len(LONG_EMAIL) <= 254
    first = notification_enqueue(
        kind="welcome", channel="email", recipient=LONG_EMAIL, episode="sub_first"
    )
    second = notification_enqueue(
        kind="welcome", channel="email", recipient=LONG_EMAIL, episode="sub_second"
    )
    assert first is not None and second is not None
    assert Notification.objects.filter(recipient=LONG_EMAIL).count() == 2
    assert {first.episode, second.episode} == {"sub_first", "sub_second"}


def test_the_same_long_key_twice_is_still_one_message():
    episode = "x" * 400
    assert notification_enqueue(
        kind="welcome", channel="email", recipient=LONG_EMAIL, episode=episode
    )
    assert (
        notification_enqueue(kind="welcome", channel="email", recipient=LONG_EMAIL, episode=episode)
        is None
    )
    assert Notification.objects.count() == 1


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    # Long shared prefixes are what truncation got wrong; plain text rarely reaches them.
    common=st.builds(
        lambda n, text: "e" * n + text, st.integers(0, 400), st.text(episode_chars, max_size=10)
    ),
    tails=st.lists(st.text(episode_chars, max_size=20), min_size=1, max_size=4),
    recipient_pad=st.integers(min_value=0, max_value=200),
)
def test_distinct_keys_never_collide_and_equal_keys_always_do(db, common, tails, recipient_pad):
    """Any set of (recipient, episode) pairs: one row per distinct pair, never fewer or more."""
    Notification.objects.all().delete()
    recipient = "r" * recipient_pad + "@example.org"
    episodes = [common + tail for tail in tails]
    for episode in episodes + episodes:  # every key twice
        notification_enqueue(kind="welcome", channel="email", recipient=recipient, episode=episode)
    assert Notification.objects.count() == len(set(episodes))


def test_the_migration_keeps_existing_messages_de_duplicated(db):
    import importlib
    from datetime import timedelta

    from django.apps import apps
    from django.utils import timezone

    from billing.reminders import claim_cadence, claim_episode
    from members.models import Member, User
    from ops.models import GatewayConfig

    migration = importlib.import_module("ops.migrations.0004_notification_key_digest")
    member = Member.objects.create(
        user=User.objects.create_user("kay@example.org", None),
        subscription_id="sub_kay",
        paid_at=timezone.now() - timedelta(days=3),
    )
    step = claim_cadence(GatewayConfig.load())[0]
    old = [  # rows as the cut-off key stored them
        ("email", "kay@example.org", "welcome", "sub_kay", None),
        ("dm", "123", "farewell", "sub_kay", None),
        ("email", "kay@example.org", "claim_reminder", f"sub_kay:{step.name}", member),
    ]
    for channel, recipient, kind, episode, owner in old:
        Notification.objects.create(
            key=f"{channel}:{recipient}:{kind}:{episode}"[:255],
            channel=channel,
            kind=kind,
            recipient=recipient,
            member=owner,
        )

    migration.rekey(apps, None)

    for channel, recipient, kind, episode, _ in old[:2]:
        assert (
            notification_enqueue(kind=kind, channel=channel, recipient=recipient, episode=episode)
            is None
        )
    reminder = notification_enqueue(
        kind="claim_reminder",
        channel="email",
        recipient="kay@example.org",
        episode=claim_episode(member, step),
    )
    assert reminder is None  # already heard in this access period
    assert Notification.objects.get(kind="welcome").episode == "sub_kay"


def test_reversing_the_migration_gives_back_the_keys_the_older_release_computes(db):
    """A rollback to the release before: its code builds the key as the joined tuple cut at 255
    characters (claim reminders without the access period) and must find every message already
    sent."""
    import importlib
    from datetime import timedelta

    from django.apps import apps
    from django.utils import timezone

    from members.models import Member, User

    migration = importlib.import_module("ops.migrations.0004_notification_key_digest")
    member = Member.objects.create(
        user=User.objects.create_user("kay@example.org", None),
        subscription_id="sub_kay",
        paid_at=timezone.now() - timedelta(days=3),
    )
    # Two addresses of the column's full width that differ only past the 255th character of
    # the older key ("email:" + address + ...), so the older release's cut keys are equal.
    long = "x" * 241
    old = [  # (channel, recipient, kind, episode as the older release wrote it)
        ("email", "kay@example.org", "welcome", "sub_kay"),
        ("email", "kay@example.org", "claim_reminder", "sub_kay:first"),
        ("email", f"{long}@example.org", "welcome", "e1"),
        ("email", f"{long}@example.net", "welcome", "e2"),  # same cut key as the one above
    ]
    assert all(len(recipient) <= 255 for _, recipient, _, _ in old)
    assert f"email:{old[2][1]}:welcome:e1"[:255] == f"email:{old[3][1]}:welcome:e2"[:255]
    for channel, recipient, kind, episode in old[:3]:  # as the older release stored them
        Notification.objects.create(
            key=f"{channel}:{recipient}:{kind}:{episode}"[:255],
            channel=channel,
            kind=kind,
            recipient=recipient,
            member=member,
        )
    migration.rekey(apps, None)  # the upgrade
    channel, recipient, kind, episode = old[3]  # sent by the new release only
    notification_enqueue(kind=kind, channel=channel, recipient=recipient, episode=episode)

    migration.unkey(apps, None)

    keys = set(Notification.objects.values_list("key", flat=True))
    for channel, recipient, kind, episode in old[:3]:
        assert f"{channel}:{recipient}:{kind}:{episode}"[:255] in keys
    assert Notification.objects.count() == len(old)  # nothing deleted
