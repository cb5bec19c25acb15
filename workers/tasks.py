"""Thin tasks: unpack ids, call one dialer function, commit, publish follow-ups after commit."""

from __future__ import annotations

import datetime as dt
from functools import cache

import httpx
import redis
from celery import Task

from dialer.acefone import AcefoneClient
from dialer.acefone_auth import LoginToken
from dialer.config import get_settings
from dialer.db import new_session, pinned_sessions, session_scope
from dialer.dialing import place_call as dial
from dialer.embedded import resolve_urls
from dialer.limiter import RedisRateLimiter
from dialer.reconciler import reconcile as reconcile_calls
from dialer.reports import compact_counters
from dialer.webhooks import pending_events, process_event
from workers.app import app, publish_dial

# Retry-safe results come back within a minute; longer countdowns would sit in Redis as ETAs.
MAX_COUNTDOWN = 60.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@cache
def _client() -> AcefoneClient:
    s = get_settings()
    tokens = None
    if s.acefone_login_id:
        login_id, password = s.acefone_login_id, s.acefone_password
        cache_ = redis.Redis.from_url(resolve_urls().redis_url)

        def tokens(http: httpx.Client) -> LoginToken:
            return LoginToken(post=http.post, login_id=login_id, password=password, cache=cache_, prefix=s.redis_prefix)

    return AcefoneClient(
        base_url=s.acefone_base_url,
        token=s.acefone_token,
        tokens=tokens,
        connect_timeout=s.acefone_connect_timeout,
        read_timeout=s.acefone_read_timeout,
    )


@cache
def _limiter() -> RedisRateLimiter:
    s = get_settings()
    return RedisRateLimiter(redis_url=resolve_urls().redis_url, prefix=s.redis_prefix, max_cps=s.max_cps)


@app.task(name="dialer.place_call", bind=True, max_retries=None)
def place_call(self: Task, attempt_id: int) -> str:
    """Dial one attempt."""
    settings = get_settings()
    with pinned_sessions() as sessions:
        outcome = dial(
            attempt_id=attempt_id,
            sessions=sessions,
            client=_client(),
            limiter=_limiter(),
            wrapup_seconds=settings.agent_wrapup_seconds,
            rate_limit_pause=settings.rate_limit_pause,
        )
    if outcome.retry_in is not None:
        publish_dial(attempt_id, countdown=min(outcome.retry_in, MAX_COUNTDOWN))
    return outcome.status


@app.task(name="dialer.process_events")
def process_events() -> int:
    """Process stored events still pending (deferred mode, or a web process that died mid-request)."""
    s = get_settings()
    with session_scope() as session:
        ids = pending_events(session=session, older_than=_now(), limit=2000)
    for event_id in ids:
        with session_scope() as session:
            process_event(
                session=session,
                event_id=event_id,
                now=_now(),
                wrapup_seconds=s.agent_wrapup_seconds,
                account_tz=s.account_timezone,
            )
    return len(ids)


@app.task(name="dialer.reconcile")
def reconcile() -> dict[str, int]:
    """Settle overdue calls from the CDR (or as lost) and re-publish stranded dials."""
    s = get_settings()
    now = _now()
    result = reconcile_calls(
        sessions=new_session,
        source=_client(),
        now=now,
        grace_seconds=s.reconcile_grace,
        wrapup_seconds=s.agent_wrapup_seconds,
        account_tz=s.account_timezone,
        requeue_after=s.requeue_after,
    )
    for attempt_id in result.republish:
        publish_dial(attempt_id)
    with session_scope() as session:
        # Fold the report counters' delta rows so reports stay one small read.
        compact_counters(session=session)
    return {
        "settled_from_cdr": len(result.settled_from_cdr),
        "lost": len(result.lost),
        "waiting_for_cdr": len(result.waiting),
        "republished": len(result.republish),
    }


@app.task(name="dialer.noop")
def noop() -> None:
    """Do nothing: the baseline `make bench` compares a dial's CPU cost against."""
