"""The pacer: one lead per free agent, windows and DNC at claim time, order, lifecycle, concurrency."""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from factories import (
    ALWAYS,
    WED_NOON_LONDON,
    add_leads,
    agents_of,
    make_attempt,
    make_campaign,
)
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from dialer.dnc import add_numbers
from dialer.models import Agent, CallAttempt, Campaign, Lead
from dialer.pacing import HORIZON_SECONDS, LEASE_GRACE_SECONDS, pace_campaign, pace_campaigns
from dialer.states import AttemptStatus, CampaignState, LeadStatus

NOW = WED_NOON_LONDON  # Wednesday 12:00 in London, 07:00 in New York
MAX_CPS = 10.0


def pace(session: Session, now: dt.datetime = NOW, **kwargs: Any) -> list[CallAttempt]:
    result = pace_campaigns(session=session, now=now, max_cps=kwargs.pop("max_cps", MAX_CPS), **kwargs)
    return [session.get_one(CallAttempt, i) for i in result.attempt_ids]


def test_claims_one_lead_per_free_agent_and_reserves_it(session: Session) -> None:
    campaign = make_campaign(session, agents=2, call_timeout=240)
    leads = add_leads(session, campaign, 5)

    attempts = pace(session)

    assert len(attempts) == 2
    assert len({a.agent_id for a in attempts}) == 2
    assert len({a.lead_id for a in attempts}) == 2
    for attempt in attempts:
        lead = session.get_one(Lead, attempt.lead_id)
        agent = session.get_one(Agent, attempt.agent_id)
        assert attempt.status == AttemptStatus.QUEUED
        assert attempt.attempt_no == 1
        assert attempt.custom_identifier == f"c{campaign.id}-l{lead.id}-a1"
        assert agent.reserved_attempt_id == attempt.id
        assert agent.lease_until == NOW + dt.timedelta(seconds=240 + LEASE_GRACE_SECONDS)
        assert lead.status == LeadStatus.IN_CALL
        assert lead.attempts == 0  # charged when the call ends, not when it is claimed
        assert attempt.audit["zones"] == ["Europe/London"]
        assert attempt.audit["local_times"] == ["Wed 2026-04-08 12:00"]
    untouched = [lead for lead in leads if lead.id not in {a.lead_id for a in attempts}]
    assert [lead.status for lead in untouched] == [LeadStatus.PENDING] * 3

    assert pace(session) == []  # every agent is busy now


def test_next_attempt_of_a_lead_gets_the_next_number(session: Session) -> None:
    campaign = make_campaign(session)
    (lead,) = add_leads(session, campaign, attempts=1)
    (attempt,) = pace(session)
    assert attempt.attempt_no == 2
    assert attempt.custom_identifier == f"c{campaign.id}-l{lead.id}-a2"


def test_an_agent_shared_by_two_campaigns_gets_one_call(session: Session) -> None:
    first = make_campaign(session)
    shared = agents_of(first)[0].number
    second = make_campaign(session, agents=[shared])
    add_leads(session, first, 2)
    add_leads(session, second, 2)

    attempts = pace(session)

    assert len(attempts) == 1
    assert session.scalar(select(sa.func.count()).select_from(CallAttempt)) == 1


def test_busy_paused_and_wrapping_up_agents_are_not_used(session: Session) -> None:
    campaign = make_campaign(session, agents=4)
    paused, wrapping, leased, expired = agents_of(campaign)
    paused.paused_until = NOW + dt.timedelta(minutes=5)
    wrapping.available_at = NOW + dt.timedelta(seconds=3)
    leased.reserved_attempt_id, leased.lease_until = 999_999, NOW + dt.timedelta(minutes=1)
    # A lease that ran out (the hangup never came) frees the agent.
    expired.reserved_attempt_id, expired.lease_until = 999_998, NOW - dt.timedelta(seconds=1)
    add_leads(session, campaign, 4)

    attempts = pace(session)

    assert [a.agent_id for a in attempts] == [expired.id]


def test_lead_outside_its_window_waits_for_the_next_opening(session: Session) -> None:
    campaign = make_campaign(session)
    (far,) = add_leads(session, campaign, timezones=["Europe/London", "America/New_York"], priority=9)
    (near,) = add_leads(session, campaign)

    attempts = pace(session)

    assert [a.lead_id for a in attempts] == [near.id]  # the closed lead did not take the agent
    assert far.status == LeadStatus.PENDING
    assert far.blocked_reason == "outside_window"
    # 09:00 in New York (EDT) is 13:00 UTC; London is open then too.
    assert far.next_attempt_at == dt.datetime(2026, 4, 8, 13, 0, tzinfo=dt.UTC)
    assert session.scalar(select(sa.func.count()).where(CallAttempt.lead_id == far.id)) == 0


def test_lead_without_zone_uses_the_campaign_zone(session: Session) -> None:
    campaign = make_campaign(session, timezone="America/New_York")
    (lead,) = add_leads(session, campaign, timezones=[])
    assert pace(session) == []
    assert lead.blocked_reason == "outside_window"
    assert lead.next_attempt_at == dt.datetime(2026, 4, 8, 13, 0, tzinfo=dt.UTC)


def test_dnc_lead_becomes_dnc_and_is_not_called(session: Session) -> None:
    campaign = make_campaign(session)
    (blocked,) = add_leads(session, campaign, priority=5)
    (ok,) = add_leads(session, campaign)
    add_numbers(session=session, numbers=[blocked.phone_e164], reason="asked")

    attempts = pace(session)

    assert [a.lead_id for a in attempts] == [ok.id]
    assert blocked.status == LeadStatus.DNC
    assert blocked.blocked_reason == "dnc"


def test_lead_at_its_cap_is_exhausted_not_called(session: Session) -> None:
    campaign = make_campaign(session, max_attempts=2)
    (capped,) = add_leads(session, campaign, attempts=2)
    assert pace(session) == []
    assert capped.status == LeadStatus.EXHAUSTED


def test_priority_then_next_attempt_at_order(session: Session) -> None:
    campaign = make_campaign(session, agents=1)
    jan, feb, mar = (dt.datetime(2026, m, 1, tzinfo=dt.UTC) for m in (1, 2, 3))
    (low,) = add_leads(session, campaign, priority=0, next_attempt_at=jan)
    (high_late,) = add_leads(session, campaign, priority=5, next_attempt_at=mar)
    (high_early,) = add_leads(session, campaign, priority=5, next_attempt_at=feb)
    add_leads(session, campaign, priority=99, next_attempt_at=NOW + dt.timedelta(seconds=1))  # not due yet

    order = []
    (agent,) = agents_of(campaign)
    for _ in range(3):
        (attempt,) = pace(session)
        order.append(attempt.lead_id)
        agent.reserved_attempt_id = agent.lease_until = None
        session.flush()
    assert order == [high_early.id, high_late.id, low.id]
    assert pace(session) == []


def test_claims_are_bounded_by_the_rate_budget(session: Session) -> None:
    campaign = make_campaign(session, agents=6, cps=1)
    add_leads(session, campaign, 10)
    assert len(pace(session, max_cps=MAX_CPS)) == math.ceil(1 * HORIZON_SECONDS)


def test_paused_and_draft_campaigns_are_not_paced(session: Session) -> None:
    for state in (CampaignState.PAUSED, CampaignState.DRAFT, CampaignState.CANCELLED):
        add_leads(session, make_campaign(session, state=state), 2)
    assert pace(session) == []


def test_running_campaign_with_no_open_lead_completes(session: Session) -> None:
    done = make_campaign(session)
    add_leads(session, done, status=LeadStatus.CONTACTED)
    add_leads(session, done, status=LeadStatus.EXHAUSTED)
    waiting = make_campaign(session)
    add_leads(session, waiting, next_attempt_at=NOW + dt.timedelta(hours=1))
    in_call = make_campaign(session)
    (lead,) = add_leads(session, in_call)
    make_attempt(session, campaign=in_call, lead=lead, agent=agents_of(in_call)[0])

    result = pace_campaigns(session=session, now=NOW, max_cps=MAX_CPS)

    assert result.completed == [done.id]
    assert done.state == CampaignState.COMPLETED
    assert done.finished_at is not None
    assert waiting.state == CampaignState.RUNNING
    assert in_call.state == CampaignState.RUNNING


def test_scheduled_campaign_starts_when_its_time_has_come(session: Session) -> None:
    due = make_campaign(session, state=CampaignState.SCHEDULED, start_at=NOW - dt.timedelta(minutes=1))
    (lead,) = add_leads(session, due)
    later = make_campaign(session, state=CampaignState.SCHEDULED, start_at=NOW + dt.timedelta(minutes=1))
    add_leads(session, later)

    result = pace_campaigns(session=session, now=NOW, max_cps=MAX_CPS)

    assert result.started == [due.id]
    assert due.state == CampaignState.RUNNING
    assert later.state == CampaignState.SCHEDULED
    assert [session.get_one(CallAttempt, i).lead_id for i in result.attempt_ids] == [lead.id]


# ---- two pacers at once ---------------------------------------------------------------------------


def run_two_pacers(
    engine: sa.Engine, first: Callable[[Session], list[int]], second: Callable[[Session], list[int]]
) -> tuple[list[int], list[int]]:
    """Run `first` in a thread and keep its transaction (and locks) open until `second` has committed."""
    first_ran, second_done = threading.Event(), threading.Event()
    out: dict[str, Any] = {}

    def run_first() -> None:
        try:
            with Session(engine, expire_on_commit=False) as s, s.begin():
                out["first"] = first(s)
                first_ran.set()
                if not second_done.wait(30):
                    raise TimeoutError("the second pacer never finished")
        except BaseException as exc:  # re-raised in the test thread
            out["error"] = exc
            first_ran.set()

    thread = threading.Thread(target=run_first)
    thread.start()
    try:
        assert first_ran.wait(30)
        if "error" in out:
            raise out["error"]
        with Session(engine, expire_on_commit=False) as s, s.begin():
            # Waiting on the first pacer's locks would be a bug (SKIP LOCKED): fail instead of hanging.
            s.execute(text("SET LOCAL lock_timeout = '5s'"))
            out["second"] = second(s)
    finally:
        second_done.set()
        thread.join(30)
    if "error" in out:
        raise out["error"]
    return out["first"], out["second"]


def _claims(engine: sa.Engine) -> list[tuple[int, int, int]]:
    with Session(engine) as s:
        return [(a.id, a.lead_id, a.agent_id or 0) for a in s.scalars(select(CallAttempt).order_by(CallAttempt.id))]


def _assert_no_double_claims(engine: sa.Engine) -> None:
    claims = _claims(engine)
    assert len({lead for _, lead, _ in claims}) == len(claims)
    assert len({agent for _, _, agent in claims}) == len(claims)
    with Session(engine) as s:
        for attempt_id, _, agent_id in claims:
            assert s.get_one(Agent, agent_id).reserved_attempt_id == attempt_id


def test_two_pacers_on_one_campaign_never_claim_the_same_lead_or_agent(clean_db: sa.Engine) -> None:
    with Session(clean_db) as s, s.begin():
        campaign_id = make_campaign(s, agents=4, window=ALWAYS, days=[1, 2, 3, 4, 5, 6, 7]).id
        add_leads(s, s.get_one(Campaign, campaign_id), 12)

    def tick(s: Session) -> list[int]:
        # max_cps=1: each pacer takes two agents, so the second still has agents and leads to claim.
        return pace_campaign(session=s, campaign=s.get_one(Campaign, campaign_id), now=NOW, max_cps=1)

    first, second = run_two_pacers(clean_db, tick, tick)

    assert len(first) == 2
    assert len(second) == 2
    assert len(_claims(clean_db)) == 4
    _assert_no_double_claims(clean_db)


def test_two_pacer_ticks_on_one_campaign_do_not_double_claim(clean_db: sa.Engine) -> None:
    with Session(clean_db) as s, s.begin():
        campaign_id = make_campaign(s, agents=3, window=ALWAYS, days=[1, 2, 3, 4, 5, 6, 7]).id
        add_leads(s, s.get_one(Campaign, campaign_id), 6)

    def tick(s: Session) -> list[int]:
        return pace_campaigns(session=s, now=NOW, max_cps=MAX_CPS).attempt_ids

    first, second = run_two_pacers(clean_db, tick, tick)

    assert len(first) == 3
    assert second == []  # the campaign row is locked by the first tick: skipped, not waited for
    _assert_no_double_claims(clean_db)


def test_two_pacers_on_campaigns_sharing_an_agent_reserve_it_once(clean_db: sa.Engine) -> None:
    with Session(clean_db) as s, s.begin():
        a = make_campaign(s, agents=1, window=ALWAYS, days=[1, 2, 3, 4, 5, 6, 7])
        shared = agents_of(a)[0]
        b = make_campaign(s, agents=[shared.number, "+442079999999"], window=ALWAYS, days=[1, 2, 3, 4, 5, 6, 7])
        add_leads(s, a, 2)
        add_leads(s, b, 2)
        a_id, b_id, shared_id = a.id, b.id, shared.id

    # Below the leader lock: even two pacers ticking different campaigns at once share agents safely.
    first, second = run_two_pacers(
        clean_db,
        lambda s: pace_campaign(session=s, campaign=s.get(Campaign, a_id), now=NOW, max_cps=MAX_CPS),
        lambda s: pace_campaign(session=s, campaign=s.get(Campaign, b_id), now=NOW, max_cps=MAX_CPS),
    )

    assert len(first) == 1
    assert len(second) == 1
    claims = {attempt_id: agent_id for attempt_id, _, agent_id in _claims(clean_db)}
    assert claims[first[0]] == shared_id
    assert claims[second[0]] != shared_id
    _assert_no_double_claims(clean_db)


@pytest.mark.parametrize("campaign_ids", [None, []])
def test_empty_campaign_filter_means_every_campaign(session: Session, campaign_ids: list[int] | None) -> None:
    add_leads(session, make_campaign(session), 1)
    assert len(pace(session, campaign_ids=campaign_ids)) == 1


def test_a_second_pacer_ticking_at_once_is_not_the_leader(clean_db: sa.Engine) -> None:
    with Session(clean_db) as s, s.begin():
        add_leads(s, make_campaign(s, agents=2, window=ALWAYS, days=[1, 2, 3, 4, 5, 6, 7]), 4)

    first, second = run_two_pacers(
        clean_db,
        lambda s: pace_campaigns(session=s, now=NOW, max_cps=MAX_CPS),
        lambda s: pace_campaigns(session=s, now=NOW, max_cps=MAX_CPS),
    )
    assert (first.leader, len(first.attempt_ids)) == (True, 2)
    assert (second.leader, second.attempt_ids) == (False, [])
    _assert_no_double_claims(clean_db)
