"""The stateful model test's long run: many more sequences than CI, and the figure.

    .venv/bin/python -m bench.model_run --examples 400          # ~20 steps each
    .venv/bin/python -m bench.model_run --examples 50 --steps 40 --seed 7 --no-write

Runs ``tests/model/test_model.py`` (the hypothesis ``RuleBasedStateMachine`` in
``tests/model/machine.py``) in a child pytest with a random exploration seed instead of CI's
derandomized one, and writes what it did — sequences, steps, invariant checks, the outcome, and
the counterexamples found so far (each kept as a regression test in
``tests/model/test_regressions.py``) — into the "Stateful model test" section of
``docs/RELIABILITY.md``, leaving the other sections alone.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.docs import DOCS, replace_section

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = ROOT / "tests" / "model" / "test_regressions.py"
HEADING = "Stateful model test"
INTRO = """\
Written by `python -m bench.model_run`, never by hand. The model test
(`tests/model/machine.py`) drives the real gateway — views through the Django test client,
the fake Stripe and fake Discord over HTTP, the webhook endpoint with signed events, the
worker's task functions and the billing tick under a travelling clock — through random
sequences of member, Stripe, Discord, staff and clock actions, and after every step whose
deliveries have settled compares the gateway with a reference model written from SPEC §2/§2a
(roles in Discord, messages in the outbox, cancellations in Stripe). CI runs a bounded,
derandomized number of sequences; this run explores with a random seed.
"""


def regression_tests() -> list[tuple[str, str]]:
    """(name, first docstring line) of every counterexample kept as a regression test."""
    if not REGRESSIONS.exists():
        return []
    tree = ast.parse(REGRESSIONS.read_text())
    found = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            doc = (ast.get_docstring(node) or "").strip().splitlines()
            found.append((node.name, doc[0] if doc else ""))
    return found


def run(examples: int, steps: int, seed: int) -> tuple[bool, dict[str, object], float]:
    with tempfile.TemporaryDirectory() as tmp:
        stats_path = Path(tmp) / "stats.json"
        env = {
            **os.environ,
            "MODEL_EXAMPLES": str(examples),
            "MODEL_STEPS": str(steps),
            "MODEL_SEED": str(seed),
            "MODEL_STATS": str(stats_path),
        }
        started = time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "tests/model/test_model.py",
                "--nomigrations",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--hypothesis-seed={seed}",
            ],
            cwd=ROOT,
            env=env,
            check=False,
        )
        elapsed = time.monotonic() - started
        stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    return result.returncode == 0, stats, elapsed


def render(*, passed: bool, stats: dict[str, object], elapsed: float, seed: int, steps: int) -> str:
    rules = stats.get("rules") or {}
    assert isinstance(rules, dict)
    regressions = regression_tests()
    lines = [
        INTRO,
        "| Outcome | Sequences | Steps | Invariant checks | Max steps per sequence | Seed "
        "| Wall time | Date |",
        "|---|---|---|---|---|---|---|---|",
        f"| {'pass' if passed else 'FAIL'} | {stats.get('sequences', 0)} | "
        f"{stats.get('steps', 0)} | {stats.get('invariants_checked', 0)} | {steps} | {seed} | "
        f"{elapsed / 60:.1f} min | {datetime.now(UTC):%Y-%m-%d %H:%M UTC} |",
        "",
        "Actions taken: "
        + ", ".join(f"{name} {count}" for name, count in sorted(rules.items()))
        + ".",
        "",
        f"Counterexamples found and fixed, each kept as a regression test in "
        f"`tests/model/test_regressions.py`: {len(regressions)}.",
        "",
    ]
    lines += [f"- `{name}` — {doc}" for name, doc in regressions]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="sequences to run")
    parser.add_argument("--steps", type=int, default=20, help="maximum steps per sequence")
    parser.add_argument("--seed", type=int, default=None, help="exploration seed (random)")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch the docs")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    passed, stats, elapsed = run(args.examples, args.steps, seed)
    body = render(passed=passed, stats=stats, elapsed=elapsed, seed=seed, steps=args.steps)
    if args.no_write:
        print(body)
    else:
        replace_section(DOCS / "RELIABILITY.md", HEADING, body, title="Reliability")
        print(f"{HEADING}: {'pass' if passed else 'FAIL'} — written to docs/RELIABILITY.md")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
