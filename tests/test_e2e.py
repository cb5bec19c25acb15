"""End to end: real simulator, web, Celery worker and beat processes against the test database."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.campaigns import create_campaign, start_campaign
from dialer.db import session_scope
from dialer.fleet import Fleet, fleet_env, free_port, wait_http
from dialer.models import CallAttempt, Lead
from dialer.pacing import pace_campaigns
from dialer.policy import retry_delay_policy

pytestmark = pytest.mark.integration

# Ground truth outcome (simulator) -> the attempt's end state in our database.
EXPECTED_STATUS = {
    "answered": "completed",
    "busy": "busy",
    "no_answer": "no_answer",
    "agent_missed": "agent_missed",
    "failed": "failed",
}


@pytest.fixture
def fleet(clean_db: sa.Engine, service_urls: tuple[str, str], tmp_path: Path) -> Iterator[tuple[Fleet, dict[str, str]]]:
    db_url, redis_url = service_urls
    sim_port, web_port = free_port(), free_port()
    env = fleet_env(database_url=db_url, redis_url=redis_url, sim_port=sim_port, web_port=web_port, var_dir=tmp_path)
    env["DIALER_MAX_CPS"] = "20"
    env["DIALER_SIM_PORT"] = str(sim_port)
    fleet = Fleet(tmp_path, env)
    fleet.start(
        "simulator",
        "simulate",
        "--port",
        str(sim_port),
        "--seed",
        "3",
        "--speed",
        "0.01",
        "--answer-rate",
        "0.4",
        "--busy-rate",
        "0.2",
        "--no-answer-rate",
        "0.2",
        "--agent-miss-rate",
        "0.1",
        "--form-rate",
        "0.3",
        "--record",
        str(tmp_path / "truth.jsonl"),
    )
    fleet.start("web", "web", "--port", str(web_port))
    try:
        wait_http(f"http://127.0.0.1:{sim_port}/healthz", fleet)
        wait_http(f"http://127.0.0.1:{web_port}/healthz", fleet)
        yield fleet, env
    finally:
        fleet.stop()


def _numbers(n: int) -> list[str]:
    # Ofcom's drama range: numbers that can never ring anyone.
    return [f"+4477009000{i:02d}" for i in range(n)]


def _campaign(session: Session, leads: int, agents: int, max_attempts: int) -> int:
    campaign = create_campaign(
        session=session,
        name="e2e",
        caller_id="+441134960000",
        agents=[f"+4420794600{i:02d}" for i in range(agents)],
        window=(dt.time(0), dt.time(23, 59, 59, 999999)),
        days=[1, 2, 3, 4, 5, 6, 7],
        max_attempts=max_attempts,
        call_timeout=60,
        retry_policy=retry_delay_policy(1),
    )
    for i, phone in enumerate(_numbers(leads)):
        session.add(Lead(campaign_id=campaign.id, phone_e164=phone, timezones=["Europe/London"], source_row=i + 2))
    session.flush()
    return campaign.id


def _wait_for(predicate, timeout: float, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fleet.check()
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"condition not met within {timeout} s; logs in {fleet.log_dir}")


def _truth(env: dict[str, str]) -> list[dict]:  # type: ignore[type-arg]
    return list(httpx.get(f"http://127.0.0.1:{env['DIALER_SIM_PORT']}/sim/calls", timeout=10).json())


def test_campaign_runs_to_completion_and_matches_the_simulator(fleet: tuple[Fleet, dict[str, str]]) -> None:
    procs, env = fleet
    with session_scope() as s:
        campaign_id = _campaign(s, leads=24, agents=4, max_attempts=2)
        start_campaign(session=s, campaign_id=campaign_id, now=dt.datetime.now(dt.UTC))
    procs.start("worker-1", "worker", "--concurrency", "3", "--loglevel", "WARNING")
    procs.start("worker-2", "worker", "--concurrency", "2", "--loglevel", "WARNING")
    procs.start("beat", "beat", "--loglevel", "WARNING")

    def done() -> bool:
        with session_scope() as s:
            state = s.scalar(sa.text("SELECT state FROM campaigns WHERE id = :id"), {"id": campaign_id})
        return state == "completed"

    _wait_for(done, 180, procs)
    truth = {c["custom_identifier"]: c for c in _truth(env)}
    calls = _truth(env)
    assert len(calls) == len(truth), "an attempt was placed twice"
    assert not [c for c in calls if c["agent_was_busy"]], "an agent was rung while on a call"

    with session_scope() as s:
        attempts = s.scalars(sa.select(CallAttempt).where(CallAttempt.campaign_id == campaign_id)).all()
        leads = {lead.id: lead for lead in s.scalars(sa.select(Lead).where(Lead.campaign_id == campaign_id))}
        placed = [a for a in attempts if a.status.value != "cancelled"]
        assert {a.custom_identifier for a in placed} == set(truth), "our attempts and the simulator's calls differ"
        for a in placed:
            assert a.status.value == EXPECTED_STATUS[truth[a.custom_identifier]["outcome"]], a.custom_identifier
        for lead in leads.values():
            mine = sorted((a for a in placed if a.lead_id == lead.id), key=lambda a: a.attempt_no)
            outcomes = [truth[a.custom_identifier]["outcome"] for a in mine]
            charged = sum(1 for o in outcomes if o != "agent_missed")
            if "answered" in outcomes:
                assert lead.status.value == "contacted"
                assert outcomes[-1] == "answered", "a contacted lead was dialled again"
            else:
                assert lead.status.value == "exhausted", (lead.id, outcomes)
                assert charged == 2
            assert lead.attempts == charged
    procs.stop()
    # Secrets never reach a log, and no log line carries a whole phone number.
    logs = "".join(p.read_text(errors="replace") for p in procs.log_dir.glob("*.log"))
    for name in ("DIALER_ACEFONE_TOKEN", "DIALER_WEBHOOK_TOKEN", "DIALER_API_TOKEN"):
        assert env[name] not in logs, f"{name} leaked into a log"
    assert "+4477009000" not in logs


def test_a_redelivered_dial_task_places_one_call(fleet: tuple[Fleet, dict[str, str]]) -> None:
    procs, env = fleet
    with session_scope() as s:
        campaign_id = _campaign(s, leads=1, agents=1, max_attempts=1)
        start_campaign(session=s, campaign_id=campaign_id, now=dt.datetime.now(dt.UTC))
    with session_scope() as s:
        [attempt_id] = pace_campaigns(session=s, now=dt.datetime.now(dt.UTC), max_cps=5).attempt_ids
    # The same message three times, as a broker redelivery or a double publish would do.
    from workers.app import app

    for _ in range(3):
        app.send_task("dialer.place_call", args=[attempt_id], queue=env["DIALER_REDIS_PREFIX"])
    procs.start("worker-1", "worker", "--concurrency", "3", "--loglevel", "WARNING")

    def settled() -> bool:
        with session_scope() as s:
            status = s.scalar(sa.select(CallAttempt.status).where(CallAttempt.id == attempt_id))
        return status is not None and status.value in EXPECTED_STATUS.values()

    _wait_for(settled, 60, procs)
    time.sleep(1)  # give a (wrong) second dial the chance to reach the simulator
    calls = [c for c in _truth(env) if c["custom_identifier"].startswith(f"c{campaign_id}-")]
    assert len(calls) == 1, json.dumps(calls, indent=1)
