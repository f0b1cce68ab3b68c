"""Staff in the admin: find a member, revoke access with a reason, read the audit trail, and
start a reconciliation run."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.browser.audit import Auditor
from tests.browser.stack import Stack, wait_until
from tests.browser.steps import admin_login, buy_individual

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_staff_revokes_access_sees_the_audit_entry_and_runs_reconciliation(
    context: BrowserContext, browser: Browser, stack: Stack, auditor: Auditor
) -> None:
    member_email = "sam.revoked@example.org"
    member_context = browser.new_context(base_url=stack.url)
    try:
        buy_individual(member_context.new_page(), member_email, stack.mailbox)
    finally:
        member_context.close()

    page = context.new_page()
    auditor.check(context, "Admin login", f"{stack.url}/admin/login/", strict=False)
    admin_login(page, stack)
    auditor.check(context, "Admin home", f"{stack.url}/admin/", strict=False)

    page.goto("/admin/members/member/")
    page.locator("#searchbar").fill("sam.revoked")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"q=sam.revoked"))
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    auditor.check(context, "Admin members", page.url, strict=False)
    page.get_by_role("link", name=re.compile("sam.revoked@example.org")).first.click()
    expect(page.get_by_role("heading", level=2).first).to_be_visible()
    detail_path = re.compile(r"/admin/members/member/\d+/change/")
    detail_url = page.url
    auditor.check(context, "Admin member detail", detail_url, strict=False)

    page.get_by_role("link", name="Revoke access").click()
    expect(page.get_by_text("Removes every managed role")).to_be_visible()
    # A reason is required: the browser refuses to send an empty one.
    action_url = page.url
    page.get_by_role("button", name="Revoke access").click()
    assert page.get_by_label("Reason").evaluate("el => el.validity.valueMissing")
    assert page.url == action_url
    page.get_by_label("Reason").fill("Chargeback opened on the card; access paused.")
    page.get_by_role("button", name="Revoke access").click()

    expect(page).to_have_url(detail_path)
    trail = page.locator("fieldset").filter(has_text="Audit trail")
    expect(trail).to_contain_text("Chargeback opened on the card; access paused.")
    expect(trail).to_contain_text(stack.staff_email)

    # The same entry in the audit log, which staff can search by member.
    page.goto("/admin/ops/auditlog/")
    expect(page.locator("#result_list")).to_contain_text(
        "Chargeback opened on the card; access paused."
    )
    auditor.check(context, "Admin audit log", f"{stack.url}/admin/ops/auditlog/", strict=False)
    auditor.check(context, "Admin dashboard", f"{stack.url}/admin/dashboard/", strict=False)

    page.goto("/admin/ops/reconciliationrun/")
    page.get_by_role("link", name="Run now").click()
    auditor.check(context, "Admin reconciliation run now", page.url, strict=False)
    page.get_by_role("button", name="Start run").click()
    expect(page.locator(".messagelist")).to_contain_text("was queued")
    auditor.check(
        context,
        "Admin reconciliation runs",
        f"{stack.url}/admin/ops/reconciliationrun/",
        strict=False,
    )
    # The worker runs it; the list shows it finished, started by staff from the admin.
    newest = page.locator("#result_list tbody tr").first
    wait_until(lambda: page.reload() and re.search(r"Clean|Drift found", newest.inner_text()))
    expect(newest).to_contain_text("admin")
