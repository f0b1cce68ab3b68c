"""What a person does in the browser, step by step, shared by the journeys."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Page, expect

from tests.browser.stack import Mailbox, Stack

PASSWORD = "correct horse battery staple"
INTRODUCTION = (
    "Hello everyone! I run revenue operations for a mid-sized software company and I am here "
    "to trade notes on pricing, forecasting and building a calm, honest sales process."
)


def sign_up(page: Page, email: str, *, password: str = PASSWORD) -> None:
    page.goto("/signup/")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Confirm password").fill(password)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))


def confirm_email(page: Page, mailbox: Mailbox, email: str) -> None:
    """Open the confirmation link from the sign-up email (linking Discord, the team page and
    billing wait for it), in the browser that signed up."""
    message = mailbox.wait_for(email, "confirm your email")
    page.goto(mailbox.link(message, "/email/verify/"))
    page.get_by_role("button", name="Confirm my email").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    expect(page.get_by_role("main")).to_contain_text("Your email is confirmed.")


def pay_on_fake_checkout(
    page: Page,
    *,
    card: str = "4242 4242 4242 4242",
    promotion_code: str | None = None,
    button: str = "Pay",
) -> None:
    """The fake Stripe Checkout page: promotion code (when asked for), card number, ``button``
    (*Start trial* when the plan has a trial), back to the gateway."""
    expect(page).to_have_url(re.compile(r"/checkout/cs_"))
    if promotion_code is not None:
        page.get_by_label("Promotion code").fill(promotion_code)
    page.get_by_label("Card number").fill(card)
    page.get_by_label("Name on card").fill("Test Member")
    page.get_by_role("button", name=button, exact=True).click()
    expect(page).to_have_url(re.compile(r"/dashboard/\?checkout=success"))


def reload_until(
    page: Page, text: str, *, timeout: float = 30.0, present: bool = True, exact: bool = False
) -> None:
    """Reload until ``text`` appears (or disappears) — the worker processes in the background."""
    deadline = time.monotonic() + timeout
    while True:
        found = page.get_by_text(text, exact=exact).count() > 0
        if found == present:
            return
        if time.monotonic() > deadline:
            state = "appear" if present else "disappear"
            raise AssertionError(f"{text!r} did not {state} on {page.url} within {timeout}s")
        time.sleep(0.5)
        page.reload()


def buy_individual(page: Page, email: str, mailbox: Mailbox) -> None:
    sign_up(page, email)
    confirm_email(page, mailbox, email)
    page.get_by_role("button", name="Join as an individual").click()
    pay_on_fake_checkout(page)
    reload_until(page, "Active", exact=True)


def link_discord_as(page: Page, display_name: str) -> None:
    """From a page with a "Link Discord" link or button, through the fake's consent chooser."""
    page.goto("/claim/")
    page.get_by_role("button", name="Link Discord").click()
    page.get_by_role("button", name=f"Authorize as {display_name}").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))


def post_introduction(page: Page, discord_url: str, author_id: str, content: str) -> None:
    """The fake Discord's sandbox page: post in #introductions as a Discord user."""
    page.goto(discord_url + "/")
    page.get_by_label("Post as", exact=True).select_option(value=author_id)
    page.get_by_label("Channel", exact=True).select_option(label="#introductions")
    page.get_by_label("Message", exact=True).fill(content)
    page.get_by_role("button", name="Post message").click()


def admin_login(page: Page, stack: Stack) -> None:
    page.goto("/admin/")
    page.get_by_label(re.compile(r"^Email")).fill(stack.staff_email)
    page.get_by_label("Password").fill(stack.staff_password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))
