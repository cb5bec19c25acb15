"""Event-driven refill: a freed agent's campaign is asked to be paced at once, and is."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from factories import ALL_DAYS, ALWAYS, WED_NOON_LONDON, add_leads, make_attempt, make_campaign
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session
from test_e2e import _campaign, _wait_for

from dialer import pacing
from dialer.campaigns import start_campaign
from dialer.config import get_settings
from dialer.db import new_session, session_scope
from dialer.fleet import Fleet, fleet_env, free_port, wait_http
from dialer.models import Agent, CallAttempt
from dialer.outcomes import settle_attempt
from dialer.pacing import PACER_LOCK_KEY, refill_campaigns
from dialer.refill import PUSH_BACKOFF_SECONDS, RefillPublisher, RefillQueue, default_queue, note_freed_agent
from dialer.states import AttemptStatus, CampaignState
from workers.refill import run

NOW = WED_NOON_LONDON
T0 = 1_800_000_000.0


@pytest.fixture
def queue(service_urls: tuple[str, str]) -> Iterator[RefillQueue]:
    """A queue under a key prefix of its own, emptied afterwards."""
    client = redis.Redis.from_url(service_urls[1])
    prefix = f"refill-test-{uuid.uuid4().hex[:8]}"
    yield RefillQueue(client, prefix)
    client.delete(f"{prefix}:refill", f"{prefix}:refill-wake")


@pytest.fixture
def refills(clean_db: sa.Engine) -> RefillQueue:
    """The deployment's own queue, emptied of what earlier tests' commits asked for."""
    queue = default_queue()
    queue.pop_due(float("inf"))
    return queue


def _drain(queue: RefillQueue, now: float) -> list[int]:
    campaigns, _ = queue.pop_due(now)
    return campaigns


# ---- the queue ----------------------------------------------------------------------------------------


def test_a_due_request_is_popped_once(queue: RefillQueue) -> None:
    queue.push([(7, T0)])
    assert queue.pop_due(T0) == ([7], None)
    assert queue.pop_due(T0 + 60) == ([], None)


def test_a_request_is_not_due_before_its_agent_has_wrapped_up(queue: RefillQueue) -> None:
    queue.push([(7, T0 + 5)])
    assert queue.pop_due(T0) == ([], T0 + 5)
    assert queue.pop_due(T0 + 5) == ([7], None)


def test_agents_freed_together_ask_for_one_pace_and_later_ones_for_another(queue: RefillQueue) -> None:
    queue.push([(7, T0), (7, T0 + 0.01), (8, T0)])
    queue.push([(7, T0 + 3)])
    assert _drain(queue, T0 + 1) == [7, 8]
    # The agent free from T0+3 is not forgotten because the campaign was paced at T0.
    assert _drain(queue, T0 + 3) == [7]


def test_wait_returns_when_a_request_is_pushed(queue: RefillQueue) -> None:
    timer = threading.Timer(0.2, lambda: queue.push([(3, T0)]))
    timer.start()
    queue.wait(30)  # returns on the push, long before the timeout
    timer.join()
    assert _drain(queue, T0) == [3]


# ---- publishing after commit ---------------------------------------------------------------------------


def _reserved_call(engine: sa.Engine) -> tuple[int, int]:
    with Session(engine, expire_on_commit=False) as s, s.begin():
        campaign = make_campaign(s, agents=1, window=ALWAYS, days=ALL_DAYS)
        (lead,) = add_leads(s, campaign, 1)
        attempt = make_attempt(s, campaign=campaign, lead=lead, agent=campaign.agents[0])
        s.get_one(Agent, attempt.agent_id).reserved_attempt_id = attempt.id
        return campaign.id, attempt.id


def test_a_committed_hangup_asks_for_its_campaign_to_be_paced_when_the_agent_is_free(
    clean_db: sa.Engine, refills: RefillQueue
) -> None:
    campaign_id, attempt_id = _reserved_call(clean_db)
    with new_session() as session, session.begin():
        attempt = session.get_one(CallAttempt, attempt_id)
        settle_attempt(session=session, attempt=attempt, status=AttemptStatus.BUSY, now=NOW, wrapup_seconds=5)
    ready = (NOW + dt.timedelta(seconds=5)).timestamp()
    assert refills.pop_due(ready - 1) == ([], ready)
    assert refills.pop_due(ready) == ([campaign_id], None)


def test_a_rolled_back_hangup_asks_for_nothing(clean_db: sa.Engine, refills: RefillQueue) -> None:
    _, attempt_id = _reserved_call(clean_db)
    with new_session() as session:
        attempt = session.get_one(CallAttempt, attempt_id)
        settle_attempt(session=session, attempt=attempt, status=AttemptStatus.BUSY, now=NOW, wrapup_seconds=0)
        session.rollback()
        # The next commit of the same session must not carry the forgotten note either.
        session.execute(text("SELECT 1"))
        session.commit()
    assert refills.pop_due(NOW.timestamp() + 3600) == ([], None)


def test_the_hangup_webhook_asks_for_a_refill(
    clean_db: sa.Engine, refills: RefillQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id, attempt_id = _reserved_call(clean_db)
    with new_session() as s:
        identifier = s.get_one(CallAttempt, attempt_id).custom_identifier
    monkeypatch.setenv("DIALER_WEBHOOK_TOKEN", "hook-token")
    monkeypatch.setenv("DIALER_AGENT_WRAPUP_SECONDS", "0")
    get_settings.cache_clear()
    from dialer.web.app import create_app

    with TestClient(create_app()) as client:
        response = client.post(
            "/webhooks/acefone",
            json={"custom_identifier": identifier, "call_status": "answered", "billsec": "9", "uuid": "u-1"},
            headers={"x-webhook-token": "hook-token"},
        )
    get_settings.cache_clear()
    assert response.status_code == 200
    assert refills.pop_due(dt.datetime.now(dt.UTC).timestamp() + 1)[0] == [campaign_id]


# ---- the beat's pacer thread ----------------------------------------------------------------------------


def test_the_refill_thread_sends_due_campaigns_and_stops(queue: RefillQueue) -> None:
    sent: list[list[int]] = []
    stop = threading.Event()

    def send(campaigns: list[int]) -> None:
        sent.append(campaigns)
        stop.set()

    queue.push([(4, T0), (9, T0)])
    thread = threading.Thread(target=run, kwargs={"queue": queue, "send": send, "stop": stop, "clock": lambda: T0})
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert sent == [[4, 9]]


def test_the_refill_thread_holds_back_what_is_not_due(queue: RefillQueue) -> None:
    sent: list[list[int]] = []
    stop = threading.Event()
    clock = iter([T0, T0, T0 + 5, T0 + 5])

    def tick() -> float:
        try:
            return next(clock)
        except StopIteration:
            stop.set()
            return T0 + 5

    queue.push([(4, T0 + 5)])
    run(queue=queue, send=sent.append, stop=stop, clock=tick)
    assert sent == [[4]]


class _QuietQueue:
    """No refill requests; waiting moves the fake clock on instead of blocking on Redis."""

    def __init__(self, now: list[float]) -> None:
        self.now = now

    def pop_due(self, now: float) -> tuple[list[int], float | None]:
        return [], None

    def wait(self, timeout: float) -> None:
        self.now[0] += timeout


def test_the_pacer_thread_ticks_every_interval_with_no_refill_requests() -> None:
    now, ticks, stop = [T0], [], threading.Event()

    def tick() -> None:
        ticks.append(now[0])
        if len(ticks) == 3:
            stop.set()

    run(queue=_QuietQueue(now), send=lambda _: None, stop=stop, tick=tick, interval=2.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert ticks == [T0 + 2, T0 + 4, T0 + 6]


def test_a_tick_that_fails_does_not_stop_the_next_one() -> None:
    now, ticks, stop = [T0], [], threading.Event()

    def tick() -> None:
        ticks.append(now[0])
        if len(ticks) == 1:
            raise RuntimeError("a bug in one pace")
        stop.set()

    run(queue=_QuietQueue(now), send=lambda _: None, stop=stop, tick=tick, interval=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert ticks == [T0 + 1, T0 + 2]


# ---- the refill pace ------------------------------------------------------------------------------------


def test_refill_paces_only_the_campaigns_named(session: Session) -> None:
    freed = make_campaign(session, agents=1, window=ALWAYS, days=ALL_DAYS)
    other = make_campaign(session, agents=1, window=ALWAYS, days=ALL_DAYS)
    add_leads(session, freed, 2)
    add_leads(session, other, 2)
    ids = refill_campaigns(session=session, now=NOW, max_cps=10, campaign_ids=[freed.id])
    assert [session.get_one(CallAttempt, i).campaign_id for i in ids] == [freed.id]


def test_refill_does_not_pace_a_paused_campaign(session: Session) -> None:
    campaign = make_campaign(session, agents=1, window=ALWAYS, days=ALL_DAYS, state=CampaignState.PAUSED)
    add_leads(session, campaign, 1)
    assert refill_campaigns(session=session, now=NOW, max_cps=10, campaign_ids=[campaign.id]) == []


def test_refill_waits_for_a_pacer_holding_the_lock_instead_of_skipping(clean_db: sa.Engine) -> None:
    with Session(clean_db) as s, s.begin():
        campaign = make_campaign(s, agents=1, window=ALWAYS, days=ALL_DAYS)
        add_leads(s, campaign, 1)
        campaign_id = campaign.id
    holder = clean_db.connect()
    holder.begin()
    holder.execute(sa.select(sa.func.pg_advisory_xact_lock(PACER_LOCK_KEY)))
    out: list[list[int]] = []

    def refill() -> None:
        with Session(clean_db) as s, s.begin():
            out.append(refill_campaigns(session=s, now=NOW, max_cps=10, campaign_ids=[campaign_id]))

    thread = threading.Thread(target=refill)
    thread.start()
    with clean_db.connect() as watcher:
        # Let go only once the refill is queued behind the lock (a skipping pacer never would be).
        for _ in range(300):
            waiting = watcher.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar()
            if waiting or not thread.is_alive():
                break
            threading.Event().wait(0.1)
    holder.rollback()
    holder.close()
    thread.join(30)
    assert len(out) == 1 and len(out[0]) == 1


def test_refill_gives_up_on_a_lock_held_too_long(clean_db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pacing, "REFILL_LOCK_WAIT", 0.1)
    with Session(clean_db) as s, s.begin():
        campaign = make_campaign(s, agents=1, window=ALWAYS, days=ALL_DAYS)
        add_leads(s, campaign, 1)
        campaign_id = campaign.id
    with clean_db.connect() as holder, holder.begin():
        holder.execute(sa.select(sa.func.pg_advisory_xact_lock(PACER_LOCK_KEY)))
        with Session(clean_db) as s, s.begin():
            assert refill_campaigns(session=s, now=NOW, max_cps=10, campaign_ids=[campaign_id]) == []


# ---- the whole chain, with real processes ---------------------------------------------------------------


@pytest.mark.integration
def test_each_hangup_brings_the_next_call_with_no_pacer_tick(
    clean_db: sa.Engine, service_urls: tuple[str, str], tmp_path: Path
) -> None:
    """One agent, three leads and a pacer tick an hour away: only refills can dial leads 2 and 3."""
    db_url, redis_url = service_urls
    sim_port, web_port = free_port(), free_port()
    env = fleet_env(database_url=db_url, redis_url=redis_url, sim_port=sim_port, web_port=web_port, var_dir=tmp_path)
    env["DIALER_PACER_INTERVAL"] = "3600"
    fleet = Fleet(tmp_path, env)
    try:
        fleet.start("simulator", "simulate", "--port", str(sim_port), "--seed", "5", "--speed", "0.01")
        fleet.start("web", "web", "--port", str(web_port))
        wait_http(f"http://127.0.0.1:{sim_port}/healthz", fleet)
        wait_http(f"http://127.0.0.1:{web_port}/healthz", fleet)
        with session_scope() as s:
            campaign_id = _campaign(s, leads=3, agents=1, max_attempts=1)
            start_campaign(session=s, campaign_id=campaign_id, now=dt.datetime.now(dt.UTC))
        fleet.start("worker", "worker", "--concurrency", "2", "--loglevel", "WARNING")
        fleet.start("beat", "beat", "--loglevel", "WARNING")
        # The first call: as if an agent had just been freed.
        RefillQueue(redis.Redis.from_url(redis_url), env["DIALER_REDIS_PREFIX"]).push([(campaign_id, time.time())])

        def all_dialled() -> bool:
            with session_scope() as s:
                dialled = s.scalar(
                    sa.select(sa.func.count()).where(
                        CallAttempt.campaign_id == campaign_id, CallAttempt.dialed_at.is_not(None)
                    )
                )
                return int(dialled or 0) >= 3

        _wait_for(all_dialled, 180, fleet)
    finally:
        fleet.stop()


def test_while_redis_is_away_commits_do_not_each_wait_for_it() -> None:
    attempts: list[int] = []
    now = [100.0]

    class Down:
        def push(self, requests: object) -> None:
            attempts.append(1)
            raise redis.ConnectionError("refused")

    publisher = RefillPublisher(lambda: Down(), clock=lambda: now[0])
    session = Session()
    for _ in range(3):
        note_freed_agent(session, campaign_id=1, available_at=NOW)
        publisher.after_commit(session)
    assert len(attempts) == 1  # one try, then quiet for a while
    now[0] += PUSH_BACKOFF_SECONDS
    note_freed_agent(session, campaign_id=1, available_at=NOW)
    publisher.after_commit(session)
    assert len(attempts) == 2
