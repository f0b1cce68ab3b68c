"""Fixtures for the browser suite: the running stack, Chromium, and the accessibility auditor."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from tests.browser.audit import AXE, Auditor
from tests.browser.stack import Stack, start_stack, stop_stack
from tests.processes import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# The screenshots worth showing in the README (copied from the run's artifacts).
KEY_SCREENSHOTS = (
    "admin-plans-1280.png",
    "admin-plan-change-1280.png",
    "landing-375.png",
    "landing-1280.png",
    "dashboard-lord-1280.png",
    "dashboard-lord-375.png",
    "team-dashboard-1280.png",
    "dashboard-payment-problem-375.png",
    "admin-member-detail-1280.png",
)


@pytest.fixture(scope="package")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-artifacts")


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    process, running = start_stack(tmp_path_factory.mktemp("stack"))
    try:
        yield running
    finally:
        stop_stack(process)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() or not AXE.exists():
        pytest.fail("Chromium or axe-core is missing: run `make browser-deps`.")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="package")
def auditor(browser: Browser, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Auditor]:
    running = Auditor(browser=browser, artifacts=artifacts)
    yield running
    # Only a complete, green run of every browser test rewrites the committed report.
    here = Path(__file__).parent
    ran = {Path(str(item.path)).name for item in request.session.items if item.path.parent == here}
    complete = ran == {path.name for path in here.glob("test_*.py")}
    if not running.results or request.session.testsfailed or not complete:
        return
    docs = ROOT / "docs"
    running.write_report(docs / "ACCESSIBILITY.md")
    shots = docs / "screenshots"
    shots.mkdir(exist_ok=True)
    for name in KEY_SCREENSHOTS:
        if (artifacts / name).exists():
            shutil.copyfile(artifacts / name, shots / name)


@pytest.fixture
def context(browser: Browser, stack: Stack) -> Iterator[BrowserContext]:
    """A fresh browser profile (one person), with the CSP enforced."""
    ctx = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()
