"""A company owner buys seats, invites a colleague by email, and takes the seat back."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from fakes.discord.seed import GUINEVERE_ID, ROLE_KNIGHT_ID, ROLE_SQUIRE_ID
from tests.browser.audit import Auditor
from tests.browser.stack import Stack, wait_until
from tests.browser.steps import (
    INTRODUCTION,
    confirm_email,
    pay_on_fake_checkout,
    post_introduction,
    reload_until,
    sign_up,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def seat_row(page: Page, tier: str) -> Locator:
    """The row of the seats table for one tier: used, paid, free."""
    return page.get_by_role("table").filter(has_text="Seats").get_by_role("row", name=tier)


def test_owner_buys_seats_invites_by_email_and_revokes_the_knight(
    context: BrowserContext, browser: Browser, stack: Stack, auditor: Auditor
) -> None:
    owner_email = "olive.owner@example.org"
    invitee_email = "gwen.colleague@example.org"
    owner = context.new_page()

    sign_up(owner, owner_email)
    confirm_email(owner, stack.mailbox, owner_email)
    owner.get_by_role("link", name="Set up a company plan").click()
    auditor.check(context, "Company plan", f"{stack.url}/company/")
    owner.get_by_label("Company name").fill("Camelot Consulting")
    owner.get_by_label("Owner seats").fill("2")
    owner.get_by_label("Team seats").fill("3")
    owner.get_by_role("button", name="Continue to payment").click()
    pay_on_fake_checkout(owner)

    # The webhook makes Olive the primary owner; the dashboard then links the seat page.
    reload_until(owner, "Manage your team")
    owner.get_by_role("link", name="Manage your team").click()
    expect(owner.get_by_role("heading", name="Camelot Consulting", level=1)).to_be_visible()
    expect(seat_row(owner, "Owner seat")).to_contain_text(re.compile(r"1\s*2\s*1"))
    expect(seat_row(owner, "Team seat")).to_contain_text(re.compile(r"0\s*3\s*3"))

    owner.get_by_role("group", name="Create an invite").get_by_label("Team seat").check()
    owner.get_by_label("Email the invite to (optional)").fill(invitee_email)
    owner.get_by_role("button", name="Create invite").click()
    expect(owner.get_by_role("status")).to_contain_text("Invite created")
    auditor.check(context, "Team dashboard", f"{stack.url}/team/")

    # Guinevere follows the emailed link in her own browser and claims with Discord.
    invite_mail = stack.mailbox.wait_for(invitee_email, "invited")
    link = stack.mailbox.link(invite_mail, "/invite/")
    colleague_context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        colleague = colleague_context.new_page()
        colleague.goto(link)
        expect(colleague.get_by_role("heading", name="Join Camelot Consulting")).to_be_visible()
        expect(colleague.get_by_text("3 seats available")).to_be_visible()
        auditor.check(colleague_context, "Invite", link)
        colleague.get_by_role("button", name="Claim with Discord").click()
        colleague.get_by_role("button", name="Authorize as Guinevere").click()
        expect(colleague).to_have_url(re.compile(r"/dashboard/$"))
        expect(colleague.get_by_role("status")).to_contain_text("Discord linked")
        expect(colleague.get_by_text("Billing for your seat is managed by")).to_be_visible()

        assert wait_until(lambda: stack.discord_member_roles(GUINEVERE_ID) == [ROLE_SQUIRE_ID])
        post_introduction(colleague, stack.discord_url, GUINEVERE_ID, INTRODUCTION)
        assert wait_until(lambda: stack.discord_member_roles(GUINEVERE_ID) == [ROLE_KNIGHT_ID])
        auditor.check(colleague_context, "Dashboard (Knight)", f"{stack.url}/dashboard/")
    finally:
        colleague_context.close()

    owner.reload()
    row = owner.get_by_role("row").filter(has_text="Guinevere")
    expect(row).to_contain_text("Introduced")
    expect(seat_row(owner, "Team seat")).to_contain_text(re.compile(r"1\s*3\s*2"))
    row.get_by_role("button", name="Revoke seat").click()
    expect(owner.get_by_role("status")).to_contain_text("The seat is free again.")
    expect(seat_row(owner, "Team seat")).to_contain_text(re.compile(r"0\s*3\s*3"))
    expect(owner.get_by_role("row").filter(has_text="Guinevere")).to_have_count(0)
    # Removed from the guild by the worker (roles gone, kicked).
    assert wait_until(lambda: stack.discord_member_roles(GUINEVERE_ID) is None)
