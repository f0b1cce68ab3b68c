"""The stateful model test (``tests/model/machine.py``), bounded for CI.

``MODEL_EXAMPLES`` raises the number of sequences (``python -m bench.model_run`` does);
``MODEL_STATS`` names a file that receives what the run did.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.journeys import World
from tests.model.machine import Stats, bounded_examples, build

pytestmark = pytest.mark.django_db(transaction=True)


def test_gateway_follows_the_reference_model(world: World) -> None:
    stats = Stats()
    staff: dict[str, Any] = {}
    machine = build(world, staff, stats)
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=bounded_examples(8),
                stateful_step_count=int(os.environ.get("MODEL_STEPS", 20)),
                deadline=None,
                derandomize="MODEL_SEED" not in os.environ,
                database=None,
                suppress_health_check=list(HealthCheck),
                print_blob=True,
                # MODEL_SHRINK=0 reports the first counterexample as found (long runs).
                phases=list(Phase)
                if os.environ.get("MODEL_SHRINK", "1") == "1"
                else [Phase.explicit, Phase.reuse, Phase.generate],
            ),
        )
    finally:
        if os.environ.get("MODEL_STATS"):
            stats.dump(os.environ["MODEL_STATS"])
