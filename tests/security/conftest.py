"""Personas, and the hook that writes the fuzz tally into the docs."""

from __future__ import annotations

from typing import Any

import pytest

from bench.docs import DOCS, replace_section
from tests import personas
from tests.security import fuzzing


@pytest.fixture
def percival(db):
    """An individual member with an active subscription, not linked to Discord yet."""
    return personas.member("percival")


@pytest.fixture
def camelot(db):
    """Camelot Ltd: a company plan (2 owner, 2 team seats) whose primary owner is logged in
    elsewhere; its members and invites must stay invisible to everyone else."""
    return personas.company("Camelot Ltd")


@pytest.fixture
def avalon(db):
    """A second company, owned by someone else."""
    return personas.company("Avalon Inc")


def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    if fuzzing.CASES:
        replace_section(DOCS / "RELIABILITY.md", "Bad input", fuzzing.report(), title="Reliability")
