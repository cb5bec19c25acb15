"""Settling a call: idempotent, frees the agent, decides the lead's next step once."""

from __future__ import annotations

import datetime as dt

import pytest
from factories import WED_NOON_LONDON, add_leads, agents_of, make_attempt, make_campaign
from sqlalchemy.orm import Session

from dialer.models import Agent, CallAttempt, Lead
from dialer.outcomes import settle_attempt
from dialer.states import AttemptStatus, LeadStatus

NOW = WED_NOON_LONDON


def _call(session: Session, **campaign_args: object) -> tuple[Lead, Agent, CallAttempt]:
    campaign = make_campaign(session, **campaign_args)  # type: ignore[arg-type]
    (lead,) = add_leads(session, campaign)
    (agent,) = agents_of(campaign)
    return lead, agent, make_attempt(session, campaign=campaign, lead=lead, agent=agent)


def _snapshot(session: Session, lead: Lead, agent: Agent, attempt: CallAttempt) -> tuple[object, ...]:
    session.flush()
    for obj in (lead, agent, attempt):
        session.refresh(obj)
    return (
        attempt.status,
        attempt.charged,
        attempt.ended_at,
        lead.status,
        lead.attempts,
        lead.next_attempt_at,
        lead.last_outcome,
        agent.reserved_attempt_id,
        agent.available_at,
    )


@pytest.mark.parametrize(
    "status", [AttemptStatus.NO_ANSWER, AttemptStatus.COMPLETED, AttemptStatus.AGENT_MISSED, AttemptStatus.LOST]
)
def test_settle_attempt_is_idempotent(session: Session, status: AttemptStatus) -> None:
    lead, agent, attempt = _call(session)
    assert settle_attempt(session=session, attempt=attempt, status=status, now=NOW, wrapup_seconds=5) is True
    first = _snapshot(session, lead, agent, attempt)

    later = NOW + dt.timedelta(minutes=10)
    assert (
        settle_attempt(session=session, attempt=attempt, status=AttemptStatus.BUSY, now=later, wrapup_seconds=60)
        is False
    )
    assert settle_attempt(session=session, attempt=attempt, status=status, now=later, wrapup_seconds=60) is False
    assert _snapshot(session, lead, agent, attempt) == first
    assert first[0] == status


def test_settle_counts_once_per_call(session: Session) -> None:
    lead, _, attempt = _call(session)
    for _ in range(3):
        settle_attempt(session=session, attempt=attempt, status=AttemptStatus.NO_ANSWER, now=NOW, wrapup_seconds=0)
    assert lead.attempts == 1


def test_charge_false_overrides_the_policy(session: Session) -> None:
    lead, _, attempt = _call(session)
    settle_attempt(
        session=session, attempt=attempt, status=AttemptStatus.FAILED, now=NOW, wrapup_seconds=0, charge=False
    )
    assert attempt.status == AttemptStatus.FAILED
    assert attempt.charged is False
    assert lead.attempts == 0
    assert lead.status == LeadStatus.PENDING


def test_lost_follows_the_policy(session: Session) -> None:
    lead, _, attempt = _call(session, retry_policy={"lost": {"delay": "5m", "counts": False}})
    settle_attempt(session=session, attempt=attempt, status=AttemptStatus.LOST, now=NOW, wrapup_seconds=0)
    assert lead.attempts == 0
    assert lead.next_attempt_at == NOW + dt.timedelta(minutes=5)


def test_final_closes_the_lead_whatever_attempts_are_left(session: Session) -> None:
    lead, _, attempt = _call(session, max_attempts=5)
    settle_attempt(
        session=session,
        attempt=attempt,
        status=AttemptStatus.FAILED,
        now=NOW,
        wrapup_seconds=0,
        charge=True,
        final=LeadStatus.INVALID,
    )
    assert lead.status == LeadStatus.INVALID
    assert lead.attempts == 1
    assert attempt.charged is True


def test_a_per_outcome_max_exhausts_the_lead_before_max_attempts(session: Session) -> None:
    campaign = make_campaign(session, max_attempts=10, retry_policy={"busy": {"max": 2, "delay": "1m"}})
    (lead,) = add_leads(session, campaign)
    (agent,) = agents_of(campaign)
    for expected in (LeadStatus.PENDING, LeadStatus.EXHAUSTED):
        lead.status = LeadStatus.IN_CALL
        attempt = make_attempt(session, campaign=campaign, lead=lead, agent=agent)
        settle_attempt(session=session, attempt=attempt, status=AttemptStatus.BUSY, now=NOW, wrapup_seconds=0)
        assert lead.status == expected
    assert lead.attempts == 2
