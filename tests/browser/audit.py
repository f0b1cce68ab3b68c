"""Accessibility and layout checks run on every page the journeys visit.

axe-core is injected with ``add_script_tag``; the gateway's CSP forbids that, so the audit
runs in a separate browser context opened with ``bypass_csp=True`` that carries the journey's
cookies — the journeys themselves run with the CSP on. Each audited page is also captured at
375 px and 1280 px and checked for horizontal overflow. Results are collected for
``docs/ACCESSIBILITY.md``, which the session writes at the end.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page

from tests.processes import ROOT

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = (375, 1280)
BLOCKING = ("serious", "critical")
IMPACTS = ("critical", "serious", "moderate", "minor")


@dataclass
class PageResult:
    name: str
    path: str
    violations: list[dict[str, Any]]
    overflow: dict[int, tuple[int, int]]  # width -> (scrollWidth, innerWidth)
    screenshots: dict[int, Path]

    def by_impact(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = {impact: [] for impact in IMPACTS}
        for violation in self.violations:
            grouped.setdefault(violation.get("impact") or "minor", []).append(violation)
        return grouped

    def blocking(self) -> list[str]:
        return [
            f"{v['id']} ({v['impact']}): {v['help']} — "
            + "; ".join(node["target"][0] for node in v["nodes"][:5])
            for v in self.violations
            if v.get("impact") in BLOCKING
        ]

    def overflowing(self) -> dict[int, tuple[int, int]]:
        return {w: sizes for w, sizes in self.overflow.items() if sizes[0] > sizes[1]}


@dataclass
class Auditor:
    browser: Browser
    artifacts: Path
    results: dict[str, PageResult] = field(default_factory=dict)

    def audit(
        self,
        source: BrowserContext | Page,
        name: str,
        url: str,
        *,
        prepare: Callable[[Page], None] | None = None,
    ) -> PageResult:
        """Open ``url`` as the ``source`` context's user, run axe, capture both widths.

        ``prepare`` brings the page into the state to audit (e.g. submit a form with errors).
        """
        context = source.context if isinstance(source, Page) else source
        audit_context = self.browser.new_context(
            bypass_csp=True, storage_state=context.storage_state()
        )
        try:
            page = audit_context.new_page()
            page.set_viewport_size({"width": WIDTHS[-1], "height": 900})
            page.goto(url)
            if prepare is not None:
                prepare(page)
            page.add_script_tag(path=str(AXE))
            report = page.evaluate(
                "async () => await axe.run(document, {resultTypes: ['violations']})"
            )
            overflow: dict[int, tuple[int, int]] = {}
            shots: dict[int, Path] = {}
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                sizes = page.evaluate(
                    "() => [document.documentElement.scrollWidth, window.innerWidth]"
                )
                overflow[width] = (int(sizes[0]), int(sizes[1]))
                shot = self.artifacts / f"{slug}-{width}.png"
                page.screenshot(path=str(shot), full_page=True)
                shots[width] = shot
            path = page.url.split("://", 1)[-1].split("/", 1)[-1]
        finally:
            audit_context.close()
        result = PageResult(
            name=name,
            path=stable_path("/" + path.split("?", 1)[0]),
            violations=report["violations"],
            overflow=overflow,
            screenshots=shots,
        )
        self.results[name] = result
        return result

    def check(
        self,
        source: BrowserContext | Page,
        name: str,
        url: str,
        *,
        strict: bool = True,
        **kwargs: Any,
    ) -> None:
        """Audit and fail on serious/critical violations or horizontal overflow.

        ``strict`` (our own member pages) fails on any violation at all; Django's admin keeps
        a few moderate/minor ones of its own (they are listed in the report).
        """
        result = self.audit(source, name, url, **kwargs)
        assert not result.blocking(), f"{name}: " + "\n".join(result.blocking())
        if strict:
            assert not result.violations, f"{name}: " + ", ".join(
                f"{v['id']} ({v['impact']})" for v in result.violations
            )
        assert not result.overflowing(), f"{name} overflows horizontally: {result.overflowing()}"

    def write_report(self, target: Path) -> None:
        lines = [
            "# Accessibility",
            "",
            "Written by the browser suite (`tests/browser/`, `make test`): axe-core "
            f"{axe_version()} on every member page and the main admin pages, in Chromium, as "
            "the journeys leave them. The suite fails on any serious or critical violation "
            "and on horizontal overflow at 375 px or 1280 px; on the member pages it fails on "
            "any violation at all (Django's admin keeps a few moderate or minor ones of its "
            "own). Besides axe it checks that errors are announced (`role=alert`, "
            "`aria-invalid`, `aria-describedby`), that focus is visible, and that sign-up and "
            "login can be completed with Tab and Enter only.",
            "",
            "| Page | Path | critical | serious | moderate | minor | overflow at 375 / 1280 |",
            "|---|---|---|---|---|---|---|",
        ]
        for result in sorted(self.results.values(), key=lambda r: r.name):
            grouped = result.by_impact()
            overflow = " / ".join(
                "yes" if result.overflow[w][0] > result.overflow[w][1] else "no" for w in WIDTHS
            )
            counts = " | ".join(str(len(grouped[impact])) for impact in IMPACTS)
            lines.append(f"| {result.name} | `{result.path}` | {counts} | {overflow} |")
        details = [
            f"- **{result.name}** — {v['impact']}: `{v['id']}` {v['help']} "
            f"({len(v['nodes'])} element{'s' if len(v['nodes']) != 1 else ''})"
            for result in sorted(self.results.values(), key=lambda r: r.name)
            for v in result.violations
        ]
        lines += ["", "## Violations found", ""]
        lines += details or ["None."]
        lines.append("")
        target.write_text("\n".join(lines))


def stable_path(path: str) -> str:
    """The path with ids and tokens generalised, so the report is the same run after run."""
    path = re.sub(r"/\d+/", "/<id>/", path)
    return re.sub(r"/[A-Za-z0-9_-]{20,}/", "/<token>/", path)


def axe_version() -> str:
    match = re.search(r"axe v([0-9.]+)", AXE.read_text()[:500])
    return match.group(1) if match else "4"
