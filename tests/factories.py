"""Test factories: campaigns with agents and leads, and attempts shaped like the pacer's, via the ORM."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from dialer.campaigns import create_campaign, set_campaign_state
from dialer.identifiers import format_identifier
from dialer.models import Agent, CallAttempt, Campaign, Lead
from dialer.policy import END_OF_DAY
from dialer.states import AttemptStatus, CampaignState, LeadStatus

UTC = dt.UTC
# Wednesday 8 April 2026: 12:00 in London (BST), 07:00 in New York (EDT).
WED_NOON_LONDON = dt.datetime(2026, 4, 8, 11, 0, tzinfo=UTC)
# Saturday 11 April 2026, 12:00 in London: outside a mon-fri window.
SAT_NOON_LONDON = dt.datetime(2026, 4, 11, 11, 0, tzinfo=UTC)
LONG_AGO = dt.datetime(2026, 1, 1, tzinfo=UTC)
OFFICE_HOURS = (dt.time(9, 0), dt.time(20, 0))
ALWAYS = (dt.time(0, 0), END_OF_DAY)
MON_FRI = [1, 2, 3, 4, 5]
ALL_DAYS = [1, 2, 3, 4, 5, 6, 7]

_serial = itertools.count(1)

# The path from draft to each state through the campaign state machine.
_STATE_PATH: dict[CampaignState, list[CampaignState]] = {
    CampaignState.DRAFT: [],
    CampaignState.SCHEDULED: [CampaignState.SCHEDULED],
    CampaignState.RUNNING: [CampaignState.RUNNING],
    CampaignState.PAUSED: [CampaignState.RUNNING, CampaignState.PAUSED],
    CampaignState.COMPLETED: [CampaignState.RUNNING, CampaignState.COMPLETED],
    CampaignState.CANCELLED: [CampaignState.CANCELLED],
}


def agent_number() -> str:
    """Return an agent number no other test object uses."""
    return f"+4420700{next(_serial):05d}"


def phone_number() -> str:
    """Return a lead number (E.164) no other test object uses."""
    return f"+4477009{next(_serial):05d}"


def make_campaign(
    session: Session,
    *,
    agents: int | Sequence[str] = 1,
    state: CampaignState = CampaignState.RUNNING,
    window: tuple[dt.time, dt.time] = OFFICE_HOURS,
    days: list[int] | None = None,
    timezone: str = "Europe/London",
    max_attempts: int = 3,
    call_timeout: int = 300,
    retry_policy: dict[str, Any] | None = None,
    cps: float | None = None,
    start_at: dt.datetime | None = None,
    caller_id: str = "+442071234567",
) -> Campaign:
    """Create a campaign with its agents, moved through the state machine to `state`."""
    numbers = [agent_number() for _ in range(agents)] if isinstance(agents, int) else list(agents)
    campaign = create_campaign(
        session=session,
        name=f"campaign {next(_serial)}",
        caller_id=caller_id,
        agents=numbers,
        window=window,
        days=days or list(MON_FRI),
        timezone=timezone,
        cps=cps,
        max_attempts=max_attempts,
        call_timeout=call_timeout,
        retry_policy=retry_policy,
        start_at=start_at,
    )
    for step in _STATE_PATH[state]:
        set_campaign_state(session=session, campaign=campaign, state=step)
    session.flush()
    return campaign


def add_leads(
    session: Session,
    campaign: Campaign,
    count: int = 1,
    *,
    timezones: list[str] | None = None,
    priority: int = 0,
    next_attempt_at: dt.datetime = LONG_AGO,
    status: LeadStatus = LeadStatus.PENDING,
    attempts: int = 0,
    phones: Sequence[str] | None = None,
) -> list[Lead]:
    """Add `count` leads (or one per phone in `phones`) to the campaign."""
    numbers = list(phones) if phones is not None else [phone_number() for _ in range(count)]
    leads = [
        Lead(
            campaign_id=campaign.id,
            phone_e164=number,
            timezones=list(timezones) if timezones is not None else ["Europe/London"],
            priority=priority,
            next_attempt_at=next_attempt_at,
            status=status,
            attempts=attempts,
            attempt_seq=attempts,
        )
        for number in numbers
    ]
    session.add_all(leads)
    session.flush()
    return leads


def agents_of(campaign: Campaign) -> list[Agent]:
    """Return the campaign's agents, ordered by id."""
    return sorted(campaign.agents, key=lambda a: a.id)


def make_attempt(
    session: Session,
    *,
    campaign: Campaign,
    lead: Lead,
    agent: Agent | None,
    status: AttemptStatus = AttemptStatus.ORIGINATED,
    now: dt.datetime = WED_NOON_LONDON,
    ref_id: str | None = None,
) -> CallAttempt:
    """Create an attempt as the pacer (and, for later statuses, the dial task) would have left it."""
    lead.attempt_seq += 1
    attempt = CallAttempt(
        campaign_id=campaign.id,
        lead_id=lead.id,
        agent_id=agent.id if agent is not None else None,
        attempt_no=lead.attempt_seq,
        custom_identifier=format_identifier(campaign_id=campaign.id, lead_id=lead.id, attempt_no=lead.attempt_seq),
        status=status,
        ref_id=ref_id,
        send_count=0 if status == AttemptStatus.QUEUED else 1,
        dialed_at=None if status == AttemptStatus.QUEUED else now,
    )
    session.add(attempt)
    lead.status = LeadStatus.IN_CALL
    session.flush()
    if agent is not None:
        agent.reserved_attempt_id = attempt.id
        agent.lease_until = now + dt.timedelta(seconds=campaign.call_timeout + 120)
    session.flush()
    return attempt
