"""The admin's query string is no oracle: no filter lookup reaches a secret.

Django's admin turns query-string parameters into ORM lookups and, by default, allows any
lookup on a model's own fields. ``?token__startswith=a`` then answers "1 invite" or
"0 invites", and a few dozen requests recover a token; the same works for API keys, webhook
secrets, password hashes and outbox links (``?context__link__startswith=``), also across
relations (``?user__password__startswith=``). Every admin therefore derives from
``GuardedAdminMixin`` (``GuardedModelAdmin`` for a plain one); ``guard_every_admin`` applies
it to third-party admins (dj-stripe, django-q) when the gateway app is ready, so a page that
is not ours is covered too. A refused lookup is Django's ``DisallowedModelAdminLookup``: a 400.
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest

# Field names whose values are secrets or carry them (raw webhook bodies, outbox contexts), and
# ``key`` / ``*_key``: one-time-password devices keep their seed in a field named ``key``.
SECRET_FIELD_NAME = re.compile(r"password|token|secret|body|context|(^|_)key$")
# Regular expressions run inside the database: a bad pattern is a 500 on SQLite and a slow
# one ties up PostgreSQL; the admin's own filters never produce them.
REFUSED_LOOKUPS = frozenset({"regex", "iregex"})


def is_secret_field(field: Any) -> bool:
    """A secret by name, or a JSON document (contexts, Stripe objects with client secrets,
    audit details): no filter reaches into those."""
    return bool(SECRET_FIELD_NAME.search(field.name)) or isinstance(field, models.JSONField)


def mask_secret(value: str) -> str:
    """Enough to tell two secrets apart, never enough to use one."""
    return f"…{value[-4:]}" if value else "—"


def lookup_refused(model: type[models.Model], lookup: str) -> bool:
    """Whether ``lookup`` (a query-string key) touches a secret field or runs a regex."""
    current: type[models.Model] | None = model
    for part in lookup.split(LOOKUP_SEP):
        if part in REFUSED_LOOKUPS:
            return True
        if current is None:
            continue  # past a plain field: the rest are transforms and lookups
        try:
            field = current._meta.pk if part == "pk" else current._meta.get_field(part)
        except FieldDoesNotExist:
            current = None
            continue
        if is_secret_field(field):
            return True
        current = field.related_model if field.is_relation else None
    return False


class GuardedAdminMixin:
    """Every admin of this site derives from this (first in the bases)."""

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if lookup_refused(self.model, lookup):  # type: ignore[attr-defined]
            return False
        return super().lookup_allowed(lookup, value, request)  # type: ignore[misc]


class GuardedModelAdmin(GuardedAdminMixin, admin.ModelAdmin):
    """The base for a plain admin."""


class ReadOnlyAdmin(GuardedModelAdmin):
    """A record of what happened, or a mirror of elsewhere: staff read it, nobody adds, edits
    or deletes it here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def guard_every_admin(site: admin.AdminSite = admin.site) -> None:
    """Re-register every admin that does not derive from ``GuardedAdminMixin`` with a
    subclass that does (third-party admins; ours derive from it already)."""
    for model, model_admin in list(site._registry.items()):
        if isinstance(model_admin, GuardedAdminMixin):
            continue
        cls = type(model_admin)
        guarded = type(f"Guarded{cls.__name__}", (GuardedAdminMixin, cls), {})
        site.unregister(model)
        site.register(model, guarded)
