"""The beat process's pacer thread: the pacer tick, and due refill requests paced at once.

Every `DIALER_PACER_INTERVAL` seconds it runs the pacer tick (schedules, then every running
campaign). Between ticks it blocks on Redis for refill requests (`dialer.refill`: an agent freed
by a hangup, after its wrap-up gap), so an idle dialer costs nothing. Both pace in this process
rather than through a pacer task, which would wait in the queue behind the very dials it is
meant to feed (and for a free worker); the dials are published after the commit. With two beats,
the pacer's advisory lock makes one of them the leader for each tick. If Redis or the database
is away, the thread logs it and tries again a second later.
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
from dialer.pacing import pace_campaigns, refill_campaigns
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
    tick: Callable[[], object] | None = None,
    interval: float = 1.0,
    clock: Callable[[], float] = time.time,
) -> None:
    """Until `stop` is set: `tick` every `interval` s; between ticks pop what is due, send it,
    and wait for the next request."""
    next_tick = clock() + interval
    while not stop.is_set():
        try:
            now = clock()
            if tick is not None and now >= next_tick:
                # Every interval on the dot; when more than an interval late (a tick that overran),
                # the next one an interval from now rather than a burst to catch up.
                next_tick += interval
                if next_tick <= now:
                    next_tick = now + interval
                tick()
            campaigns, next_at = queue.pop_due(clock())
            if campaigns:
                send(campaigns)
                stop.wait(GATHER_SECONDS)
                continue
            due = [next_tick] if tick is not None else []
            if next_at is not None:
                due.append(next_at)
            queue.wait(min([MAX_WAIT_SECONDS] + [at - clock() for at in due]))
        except (redis.RedisError, OSError, SQLAlchemyError) as exc:
            log.warning("pacer_unavailable", error=str(exc))
            stop.wait(MAX_WAIT_SECONDS)
        except Exception:
            # Whatever went wrong in one pace, the next tick must still come.
            log.exception("pacer_failed")
            stop.wait(MAX_WAIT_SECONDS)


def pace_now(campaign_ids: list[int] | None, publish: Callable[[int], None]) -> int:
    """Pace in this process, then publish one dial per claimed attempt after the commit.

    `campaign_ids`: a refill of just these campaigns; None: a full pacer tick (schedules first).
    """
    now, max_cps = dt.datetime.now(dt.UTC), get_settings().max_cps
    with session_scope() as session:
        if campaign_ids is None:
            attempt_ids = pace_campaigns(session=session, now=now, max_cps=max_cps).attempt_ids
        else:
            attempt_ids = refill_campaigns(session=session, now=now, max_cps=max_cps, campaign_ids=campaign_ids)
    for attempt_id in attempt_ids:
        publish(attempt_id)
    return len(attempt_ids)


def start(*, queue: RefillQueue, publish: Callable[[int], None]) -> tuple[threading.Thread, threading.Event]:
    """Run the pacer loop on a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=run,
        kwargs={
            "queue": queue,
            "send": lambda campaign_ids: pace_now(campaign_ids, publish),
            "tick": lambda: pace_now(None, publish),
            "interval": get_settings().pacer_interval,
            "stop": stop,
        },
        name="pacer",
        daemon=True,
    )
    thread.start()
    return thread, stop
