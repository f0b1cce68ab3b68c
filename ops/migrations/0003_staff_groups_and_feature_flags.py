"""The Support staff group and the known feature flags.

Superusers (Django's flag) hold settings, feature flags, message wording and staff accounts.
Support works with members and teams (including the audited member actions, gated by
``members.change_member``) and reads logs, the outbox, Stripe events and reconciliation runs.
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db import migrations

SUPPORT_GROUP = "Support"

SUPPORT_PERMISSIONS = [
    ("members", "view_member"),
    ("members", "change_member"),  # the member actions (revoke, restore, force, reset, resync)
    ("members", "view_team"),
    ("members", "view_invite"),
    ("ops", "view_auditlog"),
    ("ops", "view_notification"),
    ("ops", "view_messagetemplate"),
    ("ops", "view_reconciliationrun"),
    ("ops", "view_heartbeat"),
    ("ops", "view_featureflag"),
    ("ops", "view_gatewayconfig"),
    ("billing", "view_stripeeventinbox"),
    ("billing", "view_failureepisode"),
]

FLAGS = [
    (
        "require_introduction",
        True,
        "Paid members stay Squire until they post an introduction. Off: they get their seat "
        "role (Knight/Lord) as soon as they are linked and paid.",
    ),
]


def create_groups_and_flags(apps, schema_editor) -> None:
    # Permissions are normally created after all migrations; make sure they exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    FeatureFlag = apps.get_model("ops", "FeatureFlag")
    group, _ = Group.objects.get_or_create(name=SUPPORT_GROUP)
    for app_label, codename in SUPPORT_PERMISSIONS:
        group.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    for key, enabled, description in FLAGS:
        FeatureFlag.objects.get_or_create(
            key=key, defaults={"enabled": enabled, "description": description}
        )


def remove_groups(apps, schema_editor) -> None:
    apps.get_model("auth", "Group").objects.filter(name=SUPPORT_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("ops", "0002_reconciliationrun_skipped_and_daily_claim"),
        ("members", "0001_initial"),
        ("billing", "0003_stripe_event_inbox"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups_and_flags, remove_groups)]
