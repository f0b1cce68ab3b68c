"""Keyboard-only sign-up and login, visible focus, labelled forms and announced errors."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.audit import Auditor
from tests.browser.stack import Stack
from tests.browser.steps import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FOCUS_STYLE = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
  return {
    id: el.id, tag: el.tagName.toLowerCase(), text: (el.innerText || el.value || '').trim(),
    visible: outline || style.boxShadow !== 'none',
  };
}"""

UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => el.type !== 'hidden')
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby'))
  .map(el => el.name || el.id)"""


def tab_to(page: Page, *, element_id: str = "", text: str = "", limit: int = 25) -> None:
    """Press Tab until the element (by id or visible text) has focus; each stop must show it."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUS_STYLE)
        assert focused["visible"], f"focus is invisible on {focused} at {page.url}"
        if (element_id and focused["id"] == element_id) or (text and focused["text"] == text):
            return
    raise AssertionError(f"Tab never reached {element_id or text!r} on {page.url}")


def test_sign_up_and_log_in_with_the_keyboard_only(context: BrowserContext) -> None:
    email = "kim.keys@example.org"
    page = context.new_page()
    page.goto("/signup/")
    assert page.evaluate(UNLABELLED) == []
    tab_to(page, element_id="id_email")
    page.keyboard.type(email)
    tab_to(page, element_id="id_password")
    page.keyboard.type(PASSWORD)
    tab_to(page, element_id="id_password_confirm")
    page.keyboard.type(PASSWORD)
    tab_to(page, text="Sign up")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/dashboard/$"))

    tab_to(page, text="Log out")
    page.keyboard.press("Enter")
    expect(page.get_by_role("link", name="Log in")).to_be_visible()

    page.goto("/login/")
    assert page.evaluate(UNLABELLED) == []
    tab_to(page, element_id="id_email")
    page.keyboard.type(email)
    tab_to(page, element_id="id_password")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")  # Enter in a field submits the form
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    expect(page.get_by_role("heading", name="Your membership")).to_be_visible()


def error_id(described_by: str | None) -> str:
    """The error message among the ids a field is described by (help text comes along)."""
    ids = [i for i in (described_by or "").split() if i.endswith("_error")]
    assert ids, f"the field is not described by an error message: {described_by!r}"
    return ids[0]


def submit_bad_signup(page: Page) -> None:
    page.get_by_label("Email", exact=True).fill("not-an-address")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Confirm password").fill("different")
    page.get_by_role("button", name="Sign up").click()


def test_form_errors_are_announced_and_tied_to_their_fields(
    context: BrowserContext, stack: Stack, auditor: Auditor
) -> None:
    page = context.new_page()
    page.goto("/signup/")
    submit_bad_signup(page)

    email = page.get_by_label("Email", exact=True)
    expect(email).to_have_attribute("aria-invalid", "true")
    error = page.locator(f"#{error_id(email.get_attribute('aria-describedby'))}")
    expect(error).to_have_attribute("role", "alert")
    expect(error).to_contain_text(re.compile("valid email", re.I))
    password = page.get_by_label("Password", exact=True)
    expect(password).to_have_attribute("aria-invalid", "true")
    password_error = page.locator(f"#{error_id(password.get_attribute('aria-describedby'))}")
    expect(password_error).to_have_attribute("role", "alert")
    expect(password_error).to_contain_text("at least 8 characters")

    # A wrong password is announced too, and gives no hint which part was wrong.
    page.goto("/login/")
    page.get_by_label("Email", exact=True).fill("nobody@example.org")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert").first).to_be_visible()
    expect(page.get_by_label("Email", exact=True)).to_have_value("nobody@example.org")

    auditor.check(context, "Sign up (errors)", f"{stack.url}/signup/", prepare=submit_bad_signup)


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("Password reset", "/password/reset/"),
        ("Invite (invalid)", "/invite/not-a-real-token/"),
        ("Magic link sent", None),
    ],
)
def test_other_member_pages_pass_axe_and_fit_small_screens(
    context: BrowserContext, stack: Stack, auditor: Auditor, name: str, path: str | None
) -> None:
    if path is None:

        def request_link(page: Page) -> None:
            page.get_by_label("Email", exact=True).fill("someone@example.org")
            page.get_by_role("button", name="Send the link").click()
            expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

        auditor.check(context, name, f"{stack.url}/login/link/", prepare=request_link)
    else:
        auditor.check(context, name, f"{stack.url}{path}")
