"""``docs/RELIABILITY.md``: the outcome of every shutdown and fault drill, as last measured.

Each drill in ``tests/drills/`` calls :func:`record` with what it counted; the figures land in
``docs/reliability.json`` (one entry per drill) and the Markdown table is rendered from it.
``python -m bench.reliability`` re-renders the table without running anything.
"""

from __future__ import annotations

import fcntl
import json
from datetime import UTC, datetime
from typing import Any

from bench.docs import DOCS, atomic_write, read_json, replace_section

RESULTS = DOCS / "reliability.json"
REPORT = DOCS / "RELIABILITY.md"

TITLE = "Reliability"
HEADING = "Shutdown and fault drills"
INTRO = """\
Written by the drills in `tests/drills/` (`pytest -m slow tests/drills`), never by hand: each
drill starts the real processes (gunicorn, `qcluster`, `runbot`) against the fake Stripe and
fake Discord over HTTP, injects the stop or fault, and records what it counted. "In flight" is
the number of webhook requests or tasks that were running when the signal or fault hit; "lost"
is how many of them never reached the database (the bar is 0).
"""


def record(
    drill: str,
    *,
    title: str,
    passed: bool,
    in_flight: int | None,
    lost: int | None,
    unit: str,
    details: str,
) -> None:
    """Store one drill's outcome and re-render ``docs/RELIABILITY.md``."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with (DOCS / ".reliability.lock").open("w") as lock:
        # Drills may run in parallel (pytest-xdist): one writer at a time.
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = read_json(RESULTS)
        results[drill] = {
            "title": title,
            "outcome": "pass" if passed else "FAIL",
            "in_flight": in_flight,
            "lost": lost,
            "unit": unit,
            "details": details,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        }
        atomic_write(RESULTS, json.dumps(results, indent=2, sort_keys=True) + "\n")
        # Only this section: other suites write their own sections of the same file.
        replace_section(REPORT, HEADING, render(results), title=TITLE)


def _cell(value: Any) -> str:
    return "–" if value is None else str(value).replace("|", "\\|")


def render(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| Drill | Outcome | In flight | Lost | Unit | What was measured | Date |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sorted(results):
        entry = results[name]
        rows.append(
            "| "
            + " | ".join(
                _cell(v)
                for v in (
                    entry["title"],
                    entry["outcome"],
                    entry["in_flight"],
                    entry["lost"],
                    entry["unit"],
                    entry["details"],
                    entry["date"],
                )
            )
            + " |"
        )
    return INTRO + "\n" + "\n".join(rows) + "\n"


def main() -> None:
    replace_section(REPORT, HEADING, render(read_json(RESULTS)), title=TITLE)


if __name__ == "__main__":
    main()
