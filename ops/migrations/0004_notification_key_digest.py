"""Outbox keys become a digest of the full (channel, recipient, kind, episode) tuple.

The old key was that tuple joined with ``:`` and cut at 255 characters, so long addresses or
episode names sharing a prefix collided. Existing rows keep their de-duplication: the episode
is read back from the old key and the row gets the digest the service now computes for it. A
key that had been cut keeps its cut episode (what was cut is gone); at worst such a message
is sent once more.

Claim reminders are now keyed per access period as well (``members.reminders.claim_episode``);
the ones already sent are moved to that form with the member's current ``paid_at``, so the
step a member already heard is not sent again.

Reversed (a rollback to the release before), every row gets back the key that release computes
— the tuple joined with ``:`` and cut at 255 characters, claim reminders without the access
period — so the older code still finds what was already sent and sends nothing twice.
"""

from __future__ import annotations

from django.db import migrations, models

from ops.services import notification_key


CLAIM_KINDS = ("claim_reminder", "claim_reminder_late")


def rekey(apps, schema_editor):
    Notification = apps.get_model("ops", "Notification")
    rows = Notification.objects.select_related("member").only(
        "pk", "key", "channel", "recipient", "kind", "member__paid_at"
    )
    for row in rows.iterator():
        prefix = f"{row.channel}:{row.recipient}:{row.kind}:"
        episode = row.key[len(prefix) :] if row.key.startswith(prefix) else row.key
        owner, sep, step = episode.partition(":")
        if row.kind in CLAIM_KINDS and sep and row.member is not None:
            paid_at = row.member.paid_at
            episode = f"{owner}:{int(paid_at.timestamp()) if paid_at else 0}:{step}"
        Notification.objects.filter(pk=row.pk).update(
            episode=episode,
            key=notification_key(
                channel=row.channel, recipient=row.recipient, kind=row.kind, episode=episode
            ),
        )


def unkey(apps, schema_editor):
    Notification = apps.get_model("ops", "Notification")
    rows = Notification.objects.only("pk", "channel", "recipient", "kind", "episode")
    taken: set[str] = set()
    for row in rows.order_by("pk").iterator():
        episode = row.episode
        if row.kind in CLAIM_KINDS:
            owner, _, rest = episode.partition(":")
            _, sep, step = rest.partition(":")
            episode = f"{owner}:{step}" if sep else episode
        key = f"{row.channel}:{row.recipient}:{row.kind}:{episode}"[:255]
        if key in taken:
            # Two messages the older release cannot tell apart (the cut key): the first keeps
            # it, and the older code, finding it, sends neither again.
            continue
        taken.add(key)
        Notification.objects.filter(pk=row.pk).update(key=key)


class Migration(migrations.Migration):
    dependencies = [
        ("ops", "0003_staff_groups_and_feature_flags"),
        ("members", "0002_detach_members_of_ended_teams"),
    ]

    operations = [
        migrations.AddField(
            model_name="notification",
            name="episode",
            field=models.TextField(blank=True),
        ),
        migrations.RunPython(rekey, unkey),
    ]
