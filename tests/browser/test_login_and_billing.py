"""Magic-link login from the emailed link, and a failed renewal recovered through the portal."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.browser.audit import Auditor
from tests.browser.stack import Stack
from tests.browser.steps import buy_individual, reload_until, sign_up

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_magic_link_from_the_email_logs_in_once(
    context: BrowserContext, stack: Stack, auditor: Auditor
) -> None:
    email = "mags.link@example.org"
    page = context.new_page()
    sign_up(page, email)
    page.get_by_role("button", name="Log out").click()

    page.goto("/login/")
    auditor.check(context, "Log in", f"{stack.url}/login/")
    page.get_by_role("link", name="Email me a login link instead").click()
    auditor.check(context, "Magic link request", f"{stack.url}/login/link/")
    page.get_by_label("Email", exact=True).fill(
        email.upper()
    )  # addresses are matched case-insensitively
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("main")).to_contain_text(re.compile("check your email", re.I))

    message = stack.mailbox.wait_for(email, "login link")
    link = stack.mailbox.link(message, "/login/link/verify/")
    page.goto(link)
    auditor.check(context, "Magic link confirm", link)
    page.get_by_role("button", name="Log me in").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    expect(page.get_by_role("heading", name="Your membership")).to_be_visible()

    # Single use: the same link again is refused.
    page.get_by_role("button", name="Log out").click()
    page.goto(link)
    page.get_by_role("button", name="Log me in").click()
    expect(page.get_by_role("main")).to_contain_text("This link no longer works")
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)


def test_failed_renewal_shows_banner_emails_and_recovers_through_the_portal(
    context: BrowserContext, stack: Stack, auditor: Auditor
) -> None:
    email = "rene.renewal@example.org"
    page = context.new_page()
    buy_individual(page, email, stack.mailbox)
    subscription = stack.subscription_for(email)

    stack.stripe("POST", f"subscriptions/{subscription['id']}/fail_renewal")
    reload_until(page, "Payment problem")
    banner = page.get_by_role("alert").filter(has_text="Payment problem")
    expect(banner).to_contain_text("You keep full access until")
    auditor.check(context, "Dashboard (payment problem)", f"{stack.url}/dashboard/")
    failed = stack.mailbox.wait_for(email, "payment")
    assert "failed" in failed["Subject"].lower()

    banner.get_by_role("button", name="Update payment method").click()
    expect(page).to_have_url(re.compile(r"/portal/bps_"))
    page.get_by_label("New card number").fill("4242 4242 4242 4242")
    page.get_by_role("button", name="Update card").click()
    stack.mailbox.wait_for(email, "payment received")
    page.get_by_role("link", name="Return to the site").click()
    expect(page).to_have_url(re.compile(r"/billing/$"))

    page.goto("/dashboard/")
    reload_until(page, "Payment problem", present=False)
    expect(page.get_by_text("Active", exact=True)).to_be_visible()
