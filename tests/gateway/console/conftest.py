"""Fixtures for the staff console: requests whose on-commit work runs, and member actions."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.gateway.console.pages import changelist


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
