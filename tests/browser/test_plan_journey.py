"""Plans the way communities sell them: staff add the yearly price, a free trial and promotion
codes to the individual plan in the admin; a member buys yearly with the code WELCOME20."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from fakes.stripe.catalogue import (
    DEMO_PROMOTION,
    INDIVIDUAL_PRICE_ID,
    INDIVIDUAL_YEARLY_PRICE_ID,
)
from tests.browser.audit import Auditor
from tests.browser.stack import Stack
from tests.browser.steps import (
    admin_login,
    confirm_email,
    pay_on_fake_checkout,
    reload_until,
    sign_up,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PLANS = "/admin/billing/plan/"
YEARLY = "Individual membership — $990.00 / year"  # how the admin labels the Stripe price
CODE = DEMO_PROMOTION["promotion_code"]["code"]
DAY = 24 * 3600


def open_individual_plan(page: Page) -> str:
    page.goto(PLANS)
    page.locator("#result_list").get_by_role("link", name="Individual membership").click()
    expect(page.get_by_role("heading", name="Change plan")).to_be_visible()
    return page.url


def fact(region: Locator, term: str) -> Locator:
    """The value shown next to ``term`` in a list of facts (``<dt>``/``<dd>``)."""
    return region.locator("dt", has_text=re.compile(f"^{re.escape(term)}$")).locator(
        "xpath=following-sibling::dd[1]"
    )


def set_offer(page: Page, *, trial_days: int, promotion_codes: bool) -> None:
    """On the plan's change form: the trial and the promotion code box, then Save."""
    page.get_by_label("Trial days").fill(str(trial_days))
    page.get_by_label("Allow promotion codes").set_checked(promotion_codes)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(PLANS) + "$"))
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")


def test_staff_sell_the_plan_yearly_with_a_trial_and_a_member_buys_it_with_a_code(
    context: BrowserContext, browser: Browser, stack: Stack, auditor: Auditor
) -> None:
    staff = context.new_page()
    admin_login(staff, stack)
    try:
        staff.goto(PLANS)
        staff.get_by_role("button", name="Sync prices from Stripe").click()
        expect(staff.locator(".messagelist")).to_contain_text("6 price(s) synced from Stripe.")

        plan_url = open_individual_plan(staff)
        # The empty row under the plan's prices: the yearly price, picked by its label.
        row = staff.locator("#prices-group tbody tr.form-row:not(.empty-form)").last
        expect(row.locator("select[name$='-stripe_price_id']")).to_have_value("")
        row.locator("select[name$='-role']").select_option(label="Individual")
        row.locator("select[name$='-stripe_price_id']").select_option(label=YEARLY)
        set_offer(staff, trial_days=14, promotion_codes=True)

        listed = staff.locator("#result_list tbody tr").filter(has_text="Individual membership")
        expect(listed.locator(".field-trial_days")).to_have_text("14")
        expect(listed.locator(".field-allow_promotion_codes img")).to_have_attribute("alt", "True")
        auditor.check(context, "Admin plans", f"{stack.url}{PLANS}", strict=False)
        staff.goto(plan_url)
        expect(staff.locator("#prices-group")).to_contain_text(YEARLY)
        auditor.check(context, "Admin plan change", plan_url, strict=False)

        buy_yearly_with_the_code(browser, stack, auditor)
    finally:
        # The other journeys buy the monthly plan without a trial: take the offer back.
        open_individual_plan(staff)
        set_offer(staff, trial_days=0, promotion_codes=False)


def buy_yearly_with_the_code(browser: Browser, stack: Stack, auditor: Auditor) -> None:
    email = "yusuf.yearly@example.org"
    member = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 900})
    member.set_default_timeout(15_000)
    try:
        page = member.new_page()
        page.goto("/")
        plan = page.locator(".plan-individual")
        expect(plan).to_contain_text("$99.00 per month")
        expect(plan).to_contain_text("$990.00 per year")
        auditor.check(member, "Landing (monthly or yearly)", f"{stack.url}/")
        plan.get_by_role("link", name="Join as an individual").click()
        sign_up(page, email)
        confirm_email(page, stack.mailbox, email)

        yearly = page.get_by_label("Individual membership: $990.00 per year")
        expect(yearly).to_have_value(INDIVIDUAL_YEARLY_PRICE_ID)
        auditor.check(member, "Dashboard (plan choice)", f"{stack.url}/dashboard/")
        yearly.check()
        page.get_by_role("button", name="Join as an individual").click()

        # The fake Checkout: nothing due today, then the yearly price after the trial.
        expect(page).to_have_url(re.compile(r"/checkout/cs_"))
        expect(page.get_by_text("14 days free, then $990.00 every year.")).to_be_visible()
        pay_on_fake_checkout(page, promotion_code=CODE, button="Start trial")

        reload_until(page, "Trial", exact=True)
        subscription = stack.subscription_for(email)
        assert subscription["items"]["data"][0]["price"]["id"] == INDIVIDUAL_YEARLY_PRICE_ID
        assert subscription["trial_end"] - subscription["trial_start"] == 14 * DAY
        trial_end = datetime.fromtimestamp(subscription["trial_end"], UTC)
        assert 13 * DAY < subscription["trial_end"] - time.time() <= 14 * DAY

        facts = page.get_by_role("region", name="Subscription")
        expect(fact(facts, "Plan")).to_have_text("Individual membership")
        expect(fact(facts, "Price")).to_have_text("$990.00 per year")
        expect(fact(facts, "Trial until")).to_have_text(f"{trial_end.day} {trial_end:%B %Y}")
        expect(fact(facts, "Discount")).to_have_text(f"{CODE}: 20% off on one invoice")
        # Trialing is a membership: Discord is open to link.
        expect(page.get_by_role("link", name="Link Discord")).to_be_visible()
        auditor.check(member, "Dashboard (trial with a discount)", f"{stack.url}/dashboard/")

        # Back to monthly from the dashboard: one subscription update, the trial goes on.
        change = page.get_by_role("region", name="Change your plan")
        expect(change.get_by_label("Individual membership: $990.00 per year")).to_be_checked()
        change.get_by_label("Individual membership: $99.00 per month").check()
        change.get_by_role("button", name="Change plan").click()
        expect(page.locator(".messages")).to_contain_text(
            "Your plan is now Individual membership, $99.00 per month."
        )
        subscription = stack.subscription_for(email)
        assert subscription["items"]["data"][0]["price"]["id"] == INDIVIDUAL_PRICE_ID
        assert subscription["status"] == "trialing"
        # The dashboard follows once the worker has applied Stripe's update.
        for _ in range(60):
            if fact(facts, "Price").inner_text() == "$99.00 per month":
                break
            time.sleep(0.5)
            page.reload()
        expect(fact(facts, "Price")).to_have_text("$99.00 per month")
        expect(fact(facts, "Status")).to_have_text("Trial")
        expect(change.get_by_label("Individual membership: $99.00 per month")).to_be_checked()
        auditor.check(member, "Dashboard (plan changed)", f"{stack.url}/dashboard/")
    finally:
        member.close()
