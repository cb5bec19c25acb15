"""The global rate limiter on real Redis: moving window, per-campaign rates, fleet-wide pauses."""

from __future__ import annotations

import math
import time
import types
import uuid
from collections.abc import Callable, Iterator

import limits.storage.redis
import pytest
import redis

from dialer.limiter import RedisRateLimiter, rate_item


class FakeClock:
    """The time seen by the limiter and by the `limits` Redis storage, moved by hand."""

    def __init__(self) -> None:
        # A whole second, so "t + 0.9" and "t + 1.05" fall in different fixed windows.
        self.now = float(math.floor(time.time()))
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    # `limits` stamps moving-window entries with time.time() on the client side.
    monkeypatch.setattr(limits.storage.redis, "time", types.SimpleNamespace(time=fake))
    return fake


@pytest.fixture
def make_limiter(service_urls: tuple[str, str], clock: FakeClock) -> Iterator[Callable[[float], RedisRateLimiter]]:
    _, redis_url = service_urls
    prefix = f"dialer-test-limiter-{uuid.uuid4().hex[:12]}"

    def build(max_cps: float) -> RedisRateLimiter:
        return RedisRateLimiter(redis_url=redis_url, prefix=prefix, max_cps=max_cps, clock=clock, sleep=clock.sleep)

    yield build
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_rate_item_whole_and_fractional() -> None:
    half = rate_item(0.5)
    assert (half.amount, half.get_expiry()) == (1, 2)
    three = rate_item(3)
    assert (three.amount, three.get_expiry()) == (3, 1)
    slow = rate_item(0.3)  # never faster than asked: 1 per 4 s (0.25 cps)
    assert slow.amount / slow.get_expiry() <= 0.3


def test_max_cps_three_allows_three_then_asks_to_wait(
    make_limiter: Callable[[float], RedisRateLimiter], clock: FakeClock
) -> None:
    limiter = make_limiter(3)
    assert [limiter.try_acquire(campaign_id=1, campaign_cps=None) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.try_acquire(campaign_id=1, campaign_cps=None)
    assert 0 < wait <= 1.0
    clock.advance(0.5)
    assert limiter.try_acquire(campaign_id=2, campaign_cps=None) > 0  # the limit is global, not per campaign
    clock.advance(0.51)
    assert limiter.try_acquire(campaign_id=1, campaign_cps=None) == 0.0


def test_no_burst_at_window_edges(make_limiter: Callable[[float], RedisRateLimiter], clock: FakeClock) -> None:
    limiter = make_limiter(3)
    clock.advance(0.9)
    assert all(limiter.try_acquire(campaign_id=1, campaign_cps=None) == 0 for _ in range(3))
    # A fixed window would hand out three more at the next whole second; a moving window does not.
    clock.advance(0.15)
    assert limiter.try_acquire(campaign_id=1, campaign_cps=None) > 0
    clock.advance(0.86)
    assert limiter.try_acquire(campaign_id=1, campaign_cps=None) == 0


def test_every_worker_shares_one_limit(make_limiter: Callable[[float], RedisRateLimiter]) -> None:
    worker_a, worker_b = make_limiter(2), make_limiter(2)
    assert worker_a.try_acquire(campaign_id=1, campaign_cps=None) == 0
    assert worker_b.try_acquire(campaign_id=2, campaign_cps=None) == 0
    assert worker_a.try_acquire(campaign_id=3, campaign_cps=None) > 0
    assert worker_b.try_acquire(campaign_id=3, campaign_cps=None) > 0


def test_campaign_rate_sits_under_the_global_one(
    make_limiter: Callable[[float], RedisRateLimiter], clock: FakeClock
) -> None:
    limiter = make_limiter(10)
    assert limiter.try_acquire(campaign_id=1, campaign_cps=1) == 0
    wait = limiter.try_acquire(campaign_id=1, campaign_cps=1)
    assert 0 < wait <= 1.0
    # Another campaign is not held back by the first one's rate.
    assert limiter.try_acquire(campaign_id=2, campaign_cps=1) == 0
    assert limiter.try_acquire(campaign_id=3, campaign_cps=None) == 0
    clock.advance(0.9)
    assert limiter.try_acquire(campaign_id=1, campaign_cps=1) > 0
    clock.advance(0.11)
    assert limiter.try_acquire(campaign_id=1, campaign_cps=1) == 0


def test_half_a_call_per_second_is_one_per_two_seconds(
    make_limiter: Callable[[float], RedisRateLimiter], clock: FakeClock
) -> None:
    limiter = make_limiter(10)
    assert limiter.try_acquire(campaign_id=7, campaign_cps=0.5) == 0
    clock.advance(1.9)
    wait = limiter.try_acquire(campaign_id=7, campaign_cps=0.5)
    assert 0 < wait <= 0.11
    clock.advance(0.11)
    assert limiter.try_acquire(campaign_id=7, campaign_cps=0.5) == 0


def test_fleet_pause_stops_every_campaign(make_limiter: Callable[[float], RedisRateLimiter]) -> None:
    limiter, other_worker = make_limiter(10), make_limiter(10)
    limiter.pause_fleet(2)
    for worker in (limiter, other_worker):
        for campaign_id, cps in ((1, None), (2, 1.0), (3, 0.5)):
            wait = worker.try_acquire(campaign_id=campaign_id, campaign_cps=cps)
            assert 0 < wait <= 2.0
    assert 0 < other_worker.fleet_paused_for() <= 2.0


def test_a_shorter_pause_never_shortens_a_longer_one(make_limiter: Callable[[float], RedisRateLimiter]) -> None:
    limiter = make_limiter(10)
    assert limiter.fleet_paused_for() == 0.0
    limiter.pause_fleet(30)
    limiter.pause_fleet(1)
    assert limiter.fleet_paused_for() > 20
    limiter.pause_fleet(60)
    assert limiter.fleet_paused_for() > 50


def test_acquire_waits_for_a_token(make_limiter: Callable[[float], RedisRateLimiter], clock: FakeClock) -> None:
    limiter = make_limiter(1)
    assert limiter.acquire(campaign_id=1, campaign_cps=None, timeout=5) is True
    assert clock.slept == []
    assert limiter.acquire(campaign_id=1, campaign_cps=None, timeout=5) is True
    assert 0.99 <= sum(clock.slept) <= 1.1


def test_acquire_gives_up_after_the_timeout(
    make_limiter: Callable[[float], RedisRateLimiter], clock: FakeClock
) -> None:
    limiter = make_limiter(1)
    assert limiter.acquire(campaign_id=1, campaign_cps=None, timeout=5) is True
    assert limiter.acquire(campaign_id=1, campaign_cps=None, timeout=0.3) is False
    assert sum(clock.slept) <= 0.3 + 1e-9


def test_a_global_refusal_does_not_spend_the_campaigns_token(
    make_limiter: Callable[[float], RedisRateLimiter], clock: FakeClock
) -> None:
    # Regression: the campaign window was hit before the global one, so a global refusal spent it.
    limiter = make_limiter(1)
    assert limiter.try_acquire(campaign_id=99, campaign_cps=None) == 0  # the global token is gone
    clock.advance(0.5)
    assert limiter.try_acquire(campaign_id=1, campaign_cps=1) > 0  # refused by the global limit
    clock.advance(0.51)
    # The global token is back and campaign 1 has made no call in the last second: it may dial.
    assert limiter.try_acquire(campaign_id=1, campaign_cps=1) == 0


def test_concurrent_pauses_keep_the_longest(make_limiter: Callable[[float], RedisRateLimiter]) -> None:
    import random
    import threading

    workers = [make_limiter(10) for _ in range(8)]
    seconds = list(range(1, 41))
    random.Random(5).shuffle(seconds)
    # Many workers hit 429 at once, each with its own Retry-After: the longest pause survives.
    threads = [threading.Thread(target=workers[i % len(workers)].pause_fleet, args=(s,)) for i, s in enumerate(seconds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert workers[0].fleet_paused_for() > 38
