"""What both fakes promise about their configured latency (`fakes.latency`), checked the same
way for each: every API call waits at least the configured round trip, concurrent calls wait
side by side rather than in a queue, bad settings are refused and change nothing, and zero
(the default) is restored for the tests that follow."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests

DELAY_S = 0.5  # large against scheduling noise, so the overlap check holds on a busy machine


def check_latency(latency_url: str, api_call: Callable[[], requests.Response]) -> None:
    assert requests.get(latency_url, timeout=10).json() == {"ms": 0.0, "jitter_ms": 0.0}
    for bad in ({"ms": -1}, {"ms": 10, "jitter_ms": 20}, {"ms": "slow"}):
        refused = requests.post(latency_url, json=bad, timeout=10)
        assert refused.status_code == 400, bad
    assert requests.get(latency_url, timeout=10).json() == {"ms": 0.0, "jitter_ms": 0.0}

    configured = requests.post(latency_url, json={"ms": 600, "jitter_ms": 100}, timeout=10)
    assert configured.json() == {"ms": 600.0, "jitter_ms": 100.0}
    try:
        spans: list[tuple[float, float]] = []
        start = threading.Barrier(4)

        def one_call() -> None:
            start.wait()
            began = time.monotonic()
            assert api_call().status_code < 300
            spans.append((began, time.monotonic()))

        threads = [threading.Thread(target=one_call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(spans) == 4
        assert all(end - began >= DELAY_S for began, end in spans)  # 600 ± 100 ms each
        # All four were in flight at once: the last to start began before the first ended.
        assert max(began for began, _ in spans) < min(end for _, end in spans)
    finally:
        requests.post(latency_url, json={"ms": 0, "jitter_ms": 0}, timeout=10)
    assert api_call().status_code < 300
    assert requests.get(latency_url, timeout=10).json() == {"ms": 0.0, "jitter_ms": 0.0}
