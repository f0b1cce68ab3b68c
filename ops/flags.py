"""Feature flags: switches staff flip in the admin, each with a real consumer in the code.

v1 stored flags that nothing read. Here a flag exists only if it is
listed in ``KNOWN_FLAGS`` with the code that reads it; the admin refuses any other key, and a
missing row means the documented default, so a fresh database behaves sensibly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from ops.models import AuditAction, FeatureFlag
from ops.services import audit_actor, audit_record


@dataclass(frozen=True)
class FlagSpec:
    key: str
    default: bool
    description: str
    consumer: str  # where the flag is read, so staff (and reviewers) can find its effect


REQUIRE_INTRODUCTION = "require_introduction"

KNOWN_FLAGS: dict[str, FlagSpec] = {
    spec.key: spec
    for spec in (
        FlagSpec(
            key=REQUIRE_INTRODUCTION,
            default=True,
            description=(
                "Paid members stay Squire until they post an introduction. Off: they get "
                "their seat role (Knight/Lord) as soon as they are linked and paid."
            ),
            consumer="billing.roles.introduction_required",
        ),
    )
}


class UnknownFlagError(ValueError):
    """A flag key nothing in the code reads."""


def flag_enabled(key: str, default: bool) -> bool:
    """The flag's stored value, or ``default`` when staff never created its row."""
    value = FeatureFlag.objects.filter(key=key).values_list("enabled", flat=True).first()
    return default if value is None else bool(value)


@transaction.atomic
def flag_set(*, key: str, enabled: bool, actor: Any, reason: str = "") -> FeatureFlag:
    """Turn a known flag on or off, audited with the previous value."""
    spec = KNOWN_FLAGS.get(key)
    if spec is None:
        raise UnknownFlagError(f"Unknown feature flag {key!r}: no code reads it")
    flag = FeatureFlag.objects.select_for_update().filter(key=key).first()
    previous = flag.enabled if flag is not None else None
    if flag is None:
        flag = FeatureFlag.objects.create(key=key, enabled=enabled, description=spec.description)
    elif flag.enabled != enabled:
        flag.enabled = enabled
        flag.save(update_fields=["enabled", "updated_at"])
    audit_record(
        **audit_actor(actor),
        action=AuditAction.FEATURE_FLAG_SET,
        target=flag,
        details={"key": key, "previous": previous, "enabled": enabled},
        reason=reason,
    )
    return flag
