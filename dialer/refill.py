"""Event-driven refill: an agent freed by a hangup gets its campaign paced at once, not at the next tick.

Whoever frees an agent (the hangup webhook, the reconciler, the dial task's own failure paths:
all through `outcomes.release_agent`) notes the campaign and the moment the agent is free again
(after its wrap-up gap) in the session. When that session commits, the notes go to Redis: a
sorted set of `campaign@due` members scored by their due time, and a one-item wake list. The
beat process's pacer thread (`workers/refill.py`) blocks on the wake list, pops every due
member in one atomic step and paces those campaigns there, at once.

Nothing here is needed for correctness: a lost note (Redis down, a process killed between commit
and push) only means that agent waits for the pacer's regular tick.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from typing import Any

import redis
import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

log = structlog.get_logger("dialer.refill")

_INFO_KEY = "dialer.refill"
# After a failed push, this long without trying (each try could wait for Redis's timeout).
PUSH_BACKOFF_SECONDS = 5.0
# Notes for one campaign within this many ms share one member (one pace serves them all).
_BUCKET_MS = 50

# KEYS: the sorted set, the wake list. ARGV: score, member, score, member, ...
# A member already present keeps its earlier due time; then wake the consumer.
_PUSH = """
for i = 1, #ARGV, 2 do
  local current = redis.call('zscore', KEYS[1], ARGV[i + 1])
  if (not current) or tonumber(current) > tonumber(ARGV[i]) then
    redis.call('zadd', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('lpush', KEYS[2], '1')
redis.call('ltrim', KEYS[2], 0, 0)
"""

# KEYS: the sorted set. ARGV: now. Pops every member due by now; returns them and the next due time.
_POP_DUE = """
local due = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1])
if #due > 0 then
  redis.call('zrem', KEYS[1], unpack(due))
end
local nxt = redis.call('zrange', KEYS[1], 0, 0, 'WITHSCORES')
return {due, nxt[2] or ''}
"""


class RefillQueue:
    """The Redis side of refill requests: campaigns to pace, each from a due time (epoch seconds)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._due_key = f"{prefix}:refill"
        self._wake_key = f"{prefix}:refill-wake"
        self._push = client.register_script(_PUSH)
        self._pop_due = client.register_script(_POP_DUE)

    def push(self, requests: Iterable[tuple[int, float]]) -> None:
        """Ask for each (campaign_id, due) campaign to be paced at `due`."""
        args: list[Any] = []
        for campaign_id, due in requests:
            bucket = int(due * 1000) // _BUCKET_MS
            args += [due, f"{campaign_id}@{bucket}"]
        if args:
            self._push(keys=[self._due_key, self._wake_key], args=args)

    def pop_due(self, now: float) -> tuple[list[int], float | None]:
        """Take every request due by `now`; return their campaign ids and the next due time, if any."""
        due, next_at = self._pop_due(keys=[self._due_key], args=[now])
        campaigns = sorted({int(member.split(b"@", 1)[0]) for member in due})
        return campaigns, float(next_at) if next_at else None

    def wait(self, timeout: float) -> None:
        """Block until a request is pushed or `timeout` seconds pass."""
        self._redis.blpop([self._wake_key], timeout=max(0.01, timeout))


def note_freed_agent(session: Session, *, campaign_id: int, available_at: dt.datetime) -> None:
    """Remember, until this session commits, that the campaign has an agent free from `available_at`."""
    session.info.setdefault(_INFO_KEY, []).append((campaign_id, available_at.timestamp()))


class RefillPublisher:
    """After each commit, push the session's notes; after a rollback, forget them."""

    def __init__(self, queue_factory: Any, clock: Any = time.monotonic) -> None:
        self._queue_factory = queue_factory
        self._queue: RefillQueue | None = None
        self._clock = clock
        self._quiet_until = 0.0

    def after_commit(self, session: Session) -> None:
        notes = session.info.pop(_INFO_KEY, None)
        if not notes or self._clock() < self._quiet_until:
            return
        try:
            if self._queue is None:
                self._queue = self._queue_factory()
            self._queue.push(notes)
        except (redis.RedisError, OSError) as exc:
            # The pacer's tick picks the agent up instead; nothing else depends on this. While
            # Redis is away, commits do not each wait for its timeout: skip pushes for a while.
            self._quiet_until = self._clock() + PUSH_BACKOFF_SECONDS
            log.warning("refill_push_failed", error=str(exc), campaigns=len(notes), retry_in=PUSH_BACKOFF_SECONDS)

    def after_rollback(self, session: Session) -> None:
        session.info.pop(_INFO_KEY, None)


def default_queue() -> RefillQueue:
    """The refill queue of this deployment (its Redis and key prefix)."""
    from dialer.config import get_settings
    from dialer.embedded import resolve_urls

    # The read timeout stays above the pacer thread's longest blocking wait (1 s).
    client = redis.Redis.from_url(resolve_urls().redis_url, socket_timeout=3, socket_connect_timeout=1)
    return RefillQueue(client, get_settings().redis_prefix)


def publish_after_commit(target: sessionmaker[Session], queue_factory: Any = default_queue) -> None:
    """Make sessions from `target` push their refill notes to Redis when they commit."""
    publisher = RefillPublisher(queue_factory)
    event.listen(target, "after_commit", publisher.after_commit)
    event.listen(target, "after_rollback", publisher.after_rollback)
