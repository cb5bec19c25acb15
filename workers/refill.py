"""The beat process's refill thread: due refill requests are paced here, at once.

Requests come from `dialer.refill` (an agent freed by a hangup, after its wrap-up gap). The
thread blocks on Redis, so an idle dialer costs nothing. It paces the campaigns itself rather
than sending a pacer task, which would wait in the queue behind the dial tasks it is meant to
feed; it publishes the dials after its commit, as the tick does. The beat's regular pacer tick
stays the floor if this thread, Redis or the database is ever missing.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

import redis
import structlog
from sqlalchemy.exc import SQLAlchemyError

from dialer.config import get_settings
from dialer.db import session_scope
from dialer.pacing import refill_campaigns
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
        except (redis.RedisError, OSError, SQLAlchemyError) as exc:
            log.warning("refill_unavailable", error=str(exc))
            stop.wait(MAX_WAIT_SECONDS)


def pace_now(campaign_ids: list[int], publish: Callable[[int], None]) -> int:
    """Pace these campaigns in this process; publish one dial per claimed attempt after the commit."""
    with session_scope() as session:
        attempt_ids = refill_campaigns(
            session=session, now=dt.datetime.now(dt.UTC), max_cps=get_settings().max_cps, campaign_ids=campaign_ids
        )
    for attempt_id in attempt_ids:
        publish(attempt_id)
    return len(attempt_ids)


def start(*, queue: RefillQueue, send: Callable[[list[int]], None]) -> tuple[threading.Thread, threading.Event]:
    """Run the refill loop on a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=run, kwargs={"queue": queue, "send": send, "stop": stop}, name="refill", daemon=True
    )
    thread.start()
    return thread, stop
