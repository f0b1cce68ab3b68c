"""Staff personas, the fake Discord and seeded billing state for the console suite."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from members.models import User

STAFF_PASSWORD = "a long staff passphrase 42"
SUPPORT_MIGRATION = "ops.migrations.0003_staff_groups_and_feature_flags"


@pytest.fixture
def support_group(db) -> Group:
    """The group the data migration creates (created here too under ``--nomigrations``)."""
    if not Group.objects.filter(name="Support").exists():
        from django.apps import apps

        importlib.import_module(SUPPORT_MIGRATION).create_groups_and_flags(apps, None)
    return Group.objects.get(name="Support")


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("root@example.com", STAFF_PASSWORD)


@pytest.fixture
def support_user(support_group) -> User:
    user = User.objects.create_user("support@example.com", STAFF_PASSWORD, is_staff=True)
    user.groups.add(support_group)
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_web(superuser) -> Client:
    return client_for(superuser)


@pytest.fixture
def support_web(support_user) -> Client:
    return client_for(support_user)


def changelist(model: str) -> str:
    return reverse(f"admin:{model.replace('.', '_')}_changelist")


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a request and then its on-commit work (role syncs), as a real commit would."""

    def run(call, *args: Any, **kwargs: Any):
        with django_capture_on_commit_callbacks(execute=True):
            return call(*args, **kwargs)

    return run


@pytest.fixture
def bulk_action(committed):
    """Submit a member action from the changelist, confirming it with ``fields``."""

    def submit(client: Client, action: str, pks: list[int], **fields: Any):
        data = {"action": action, "_selected_action": [str(pk) for pk in pks], "confirm": "yes"}
        data.update(fields)
        return committed(client.post, changelist("members.member"), data)

    return submit
