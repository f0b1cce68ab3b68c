"""The bot suite's Squire: paid, linked, not yet introduced."""

from __future__ import annotations

import pytest

from members.models import Member
from tests import personas


@pytest.fixture
def squire(db) -> Member:
    """Paid, linked, not yet introduced: an individual member waiting at Squire."""
    return personas.squire()
