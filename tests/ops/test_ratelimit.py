"""The token bucket paces calls to a rate-limited API, from any number of threads."""

from __future__ import annotations

import threading
import time

import pytest

from ops.ratelimit import TokenBucket


def test_threads_sharing_a_bucket_never_exceed_its_rate():
    bucket = TokenBucket(50)
    stamps: list[float] = []
    lock = threading.Lock()

    def call() -> None:
        for _ in range(15):
            bucket.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stamps.sort()
    assert len(stamps) == 60
    # Any one-second window holds at most rate + burst (a tenth of the rate) calls.
    for i, start in enumerate(stamps):
        in_window = sum(1 for stamp in stamps[i:] if stamp - start < 1.0)
        assert in_window <= 55
    # And the bucket does not hold calls back beyond its rate: 60 calls at 50/s.
    assert stamps[-1] - stamps[0] < 1.6


def test_an_empty_bucket_says_how_long_to_wait():
    bucket = TokenBucket(10)  # a burst of one
    assert bucket.try_acquire() == 0.0
    wait = bucket.try_acquire()
    assert 0.05 < wait <= 0.1


def test_a_rate_must_be_positive():
    with pytest.raises(ValueError, match="STRIPE_API_RATE must be positive"):
        TokenBucket(0, name="STRIPE_API_RATE")
