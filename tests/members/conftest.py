"""Personas for member-page tests."""

from __future__ import annotations

import pytest

from members.models import Member, User
from tests.personas import SIGNUP_PASSWORD


@pytest.fixture
def alice(db) -> User:
    """An individual member with a password and no subscription yet."""
    user = User.objects.create_user("alice@example.org", SIGNUP_PASSWORD)
    Member.objects.create(user=user)
    return user
