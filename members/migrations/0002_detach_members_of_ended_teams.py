"""Members of teams that ended before ending detached them are detached now (SPEC §2a).

Until then an ended team kept its members attached, which left them unable to buy, start a
company or claim another seat. Each detachment is audited like the live one.
"""

from __future__ import annotations

from django.db import migrations
from django.utils import timezone


def detach(apps, schema_editor):
    Member = apps.get_model("members", "Member")
    AuditLog = apps.get_model("ops", "AuditLog")
    now = timezone.now()
    stranded = Member.objects.filter(team__cancelled_at__isnull=False).select_related("team")
    for member in stranded.iterator():
        team = member.team
        AuditLog.objects.create(
            actor_type="system",
            action="team_member_detached",
            target_type="member",
            target_id=str(member.pk),
            details={
                "team_id": team.pk,
                "tier": member.seat_tier,
                "discord_id": member.discord_id or "",
            },
            reason="team ended before members were detached (data migration)",
        )
        member.team = None
        member.seat_tier = "individual"
        member.introduced_at = None
        member.intro_message_id = ""
        member.cancelled_at = member.cancelled_at or team.cancelled_at or now
        member.save(
            update_fields=[
                "team",
                "seat_tier",
                "introduced_at",
                "intro_message_id",
                "cancelled_at",
                "updated_at",
            ]
        )


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0001_initial"),
        ("ops", "0003_staff_groups_and_feature_flags"),
    ]

    operations = [migrations.RunPython(detach, migrations.RunPython.noop)]
