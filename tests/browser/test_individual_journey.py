"""An individual member, from the landing page to Lord, in Chromium against the real processes."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import BrowserContext, expect

from fakes.discord.seed import ARTHUR_ID, ROLE_LORD_ID, ROLE_SQUIRE_ID
from tests.browser.audit import Auditor
from tests.browser.stack import Stack, wait_until
from tests.browser.steps import (
    INTRODUCTION,
    confirm_email,
    link_discord_as,
    pay_on_fake_checkout,
    post_introduction,
    reload_until,
    sign_up,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_individual_signs_up_pays_links_discord_and_becomes_lord_after_introduction(
    context: BrowserContext, stack: Stack, auditor: Auditor
) -> None:
    email = "ada.individual@example.org"
    page = context.new_page()

    page.goto("/")
    expect(page.get_by_role("heading", name="Plans")).to_be_visible()
    auditor.check(context, "Landing", f"{stack.url}/")
    page.get_by_role("link", name="Join as an individual").click()
    expect(page).to_have_url(re.compile(r"/signup/"))
    auditor.check(context, "Sign up", f"{stack.url}/signup/")

    sign_up(page, email)
    expect(page.get_by_text("You have no active membership yet.")).to_be_visible()
    confirm_email(page, stack.mailbox, email)
    auditor.check(context, "Dashboard (no membership)", f"{stack.url}/dashboard/")

    page.get_by_role("button", name="Join as an individual").click()
    pay_on_fake_checkout(page)
    # The webhook is stored by gunicorn and processed by the worker; the page catches up.
    reload_until(page, "Active", exact=True)
    expect(page.get_by_role("link", name="Link Discord")).to_be_visible()
    welcome = stack.mailbox.wait_for(email, "welcome")
    assert stack.url in stack.mailbox.body(welcome)

    page.get_by_role("link", name="Link Discord").click()
    auditor.check(context, "Link Discord", f"{stack.url}/claim/")
    link_discord_as(page, "Arthur Pendragon")
    expect(page.get_by_role("status")).to_contain_text("Discord linked — you are in the server.")
    expect(page.get_by_role("region", name="Discord")).to_contain_text("Linked as Arthur Pendragon")

    # The bot added Arthur to the guild with the Squire role (worker → fake Discord REST).
    assert wait_until(lambda: stack.discord_member_roles(ARTHUR_ID) == [ROLE_SQUIRE_ID])
    auditor.check(context, "Dashboard (Squire)", f"{stack.url}/dashboard/")

    intro_page = context.new_page()
    post_introduction(intro_page, stack.discord_url, ARTHUR_ID, INTRODUCTION)
    # runbot sees MESSAGE_CREATE, records the introduction; the worker promotes to Lord.
    assert wait_until(lambda: stack.discord_member_roles(ARTHUR_ID) == [ROLE_LORD_ID])
    # The fake's sandbox page shows the bot's 🎉 on the introduction.
    reload_until(intro_page, "🎉")

    reload_until(page, "Introduce yourself", present=False)
    auditor.check(context, "Dashboard (Lord)", f"{stack.url}/dashboard/")
    auditor.check(context, "Billing", f"{stack.url}/billing/")
