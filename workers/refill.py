"""The beat process's refill thread: due refill requests become one pacer task at once.

Requests come from `dialer.refill` (an agent freed by a hangup, after its wrap-up gap). The
thread blocks on Redis, so an idle dialer costs nothing; the beat's regular pacer tick stays the
floor if this thread, or Redis, is ever missing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis
import structlog

from dialer.refill import RefillQueue

log = structlog.get_logger("workers.refill")

# After sending a refill, gather the next hangups this long so one pace serves several agents
# (at 50 calls a second, about a dozen) rather than one pace task per hangup.
GATHER_SECONDS = 0.25
# Longest single wait on Redis, so a stop request is noticed promptly.
MAX_WAIT_SECONDS = 1.0


def run(
    *,
    queue: RefillQueue,
    send: Callable[[list[int]], None],
    stop: threading.Event,
    clock: Callable[[], float] = time.time,
) -> None:
    """Until `stop` is set: pop what is due, send it, and wait for the next request."""
    while not stop.is_set():
        try:
            campaigns, next_at = queue.pop_due(clock())
            if campaigns:
                send(campaigns)
                stop.wait(GATHER_SECONDS)
                continue
            wait = MAX_WAIT_SECONDS if next_at is None else min(MAX_WAIT_SECONDS, next_at - clock())
            queue.wait(wait)
        except (redis.RedisError, OSError) as exc:
            log.warning("refill_unavailable", error=str(exc))
            stop.wait(MAX_WAIT_SECONDS)


def start(*, queue: RefillQueue, send: Callable[[list[int]], None]) -> tuple[threading.Thread, threading.Event]:
    """Run the refill loop on a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=run, kwargs={"queue": queue, "send": send, "stop": stop}, name="refill", daemon=True
    )
    thread.start()
    return thread, stop
