"""The global calls-per-second limit, shared by every worker through Redis (invariant 3).

A moving window (the `limits` library) guarantees no more than N calls in ANY one-second
window, so there is no burst at window edges. A campaign's own rate sits under the global one.
A 429 from Acefone sets a fleet-wide pause that every worker honours before taking a token.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import redis
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

_EXTEND_PAUSE = """
if redis.call('pttl', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('set', KEYS[1], '1', 'PX', ARGV[1])
end
"""


def rate_item(cps: float) -> RateLimitItem:
    """Express a calls-per-second figure as a moving-window item (0.5 cps = 1 per 2 s)."""
    if cps >= 1:
        return RateLimitItemPerSecond(int(cps), 1)
    return RateLimitItemPerSecond(1, max(1, math.ceil(1 / cps)))


class RedisRateLimiter:
    """Hand out call tokens under the global and per-campaign rates; honour fleet pauses."""

    def __init__(
        self,
        *,
        redis_url: str,
        prefix: str,
        max_cps: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._limiter = MovingWindowRateLimiter(RedisStorage(redis_url, key_prefix=f"{prefix}:rate"))
        self._global = rate_item(max_cps)
        self._pause_key = f"{prefix}:fleet-pause"
        self._extend_pause = self._redis.register_script(_EXTEND_PAUSE)
        self._clock = clock
        self._sleep = sleep

    def pause_fleet(self, seconds: float) -> None:
        """Stop every worker from dialling for `seconds` (Acefone said 429)."""
        ms = max(1, int(seconds * 1000))
        # Atomic, so a pause another worker sets at the same moment is never shortened.
        self._extend_pause(keys=[self._pause_key], args=[ms])

    def fleet_paused_for(self) -> float:
        """Return the seconds left on the fleet-wide pause (0 when not paused)."""
        ms = int(str(self._redis.pttl(self._pause_key)))
        return ms / 1000 if ms > 0 else 0.0

    def try_acquire(self, *, campaign_id: int, campaign_cps: float | None) -> float:
        """Take one token; return 0 on success, else the seconds to wait before trying again."""
        paused = self.fleet_paused_for()
        if paused:
            return paused
        campaign = rate_item(campaign_cps) if campaign_cps else None
        ids = ("campaign", str(campaign_id))
        # Test the campaign's window first without spending it, so a global refusal does not
        # cost the campaign its turn; then spend the global token, then the campaign's.
        if campaign is not None and not self._limiter.test(campaign, *ids):
            return self._wait(campaign, *ids)
        if not self._limiter.hit(self._global, "global"):
            return self._wait(self._global, "global")
        if campaign is not None and not self._limiter.hit(campaign, *ids):
            # Another worker took the campaign's last token in between: the global token is
            # lost (the fleet runs a little under its limit), never over it.
            return self._wait(campaign, *ids)
        return 0.0

    def acquire(self, *, campaign_id: int, campaign_cps: float | None, timeout: float) -> bool:
        """Block until a token is taken (True) or `timeout` seconds pass (False)."""
        deadline = self._clock() + timeout
        while True:
            wait = self.try_acquire(campaign_id=campaign_id, campaign_cps=campaign_cps)
            if wait == 0:
                return True
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            self._sleep(min(wait, remaining, 1.0))

    def _wait(self, item: RateLimitItem, *ids: str) -> float:
        stats = self._limiter.get_window_stats(item, *ids)
        return max(0.01, stats.reset_time - self._clock())
