"""Campaigns: creation with their agents and rules, and the lifecycle (start, pause, resume, cancel)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dialer.models import Agent, Campaign, Lead
from dialer.policy import check_country, check_zone, merge_rules
from dialer.states import CAMPAIGN_TRANSITIONS, CampaignState, LeadStatus, transition


class CampaignNotFound(LookupError):
    """No campaign has that id."""


def get_campaign(*, session: Session, campaign_id: int, lock: bool = False) -> Campaign:
    """Return the campaign or raise CampaignNotFound."""
    stmt = select(Campaign).where(Campaign.id == campaign_id)
    if lock:
        stmt = stmt.with_for_update()
    campaign = session.scalars(stmt).first()
    if campaign is None:
        raise CampaignNotFound(f"campaign {campaign_id} does not exist")
    return campaign


# An Acefone agent is an extension (101) or a phone number (+442071234567).
_AGENT_NUMBER = re.compile(r"\+?[0-9]{1,20}")


def ensure_agents(*, session: Session, numbers: list[str]) -> list[Agent]:
    """Return the agents with these numbers, creating the missing ones."""
    cleaned = [n.strip() for n in numbers if n.strip()]
    if not cleaned:
        raise ValueError("a campaign needs at least one agent number (--agents 101,102)")
    for number in cleaned:
        if not _AGENT_NUMBER.fullmatch(number):
            raise ValueError(
                f"agent number {number[:40]!r} is neither an extension nor a phone number:"
                " use up to 20 digits, with an optional leading +"
            )
    existing = {a.number: a for a in session.scalars(select(Agent).where(Agent.number.in_(cleaned)))}
    agents = []
    for number in dict.fromkeys(cleaned):
        agent = existing.get(number)
        if agent is None:
            agent = Agent(number=number)
            session.add(agent)
        agents.append(agent)
    session.flush()
    return agents


def create_campaign(
    *,
    session: Session,
    name: str,
    caller_id: str,
    agents: list[str],
    window: tuple[dt.time, dt.time] = (dt.time(9), dt.time(20)),
    days: list[int] | None = None,
    timezone: str = "Europe/London",
    region: str = "GB",
    cps: float | None = None,
    max_attempts: int = 3,
    call_timeout: int = 300,
    retry_policy: dict[str, Any] | None = None,
    start_at: dt.datetime | None = None,
    end_at: dt.datetime | None = None,
    schedule_cron: str | None = None,
    schedule_hours: float | None = None,
    holidays_country: str | None = None,
    daily_cap_per_number: int | None = None,
    min_gap_seconds: int = 0,
) -> Campaign:
    """Create a draft campaign with its agents and rules."""
    if not name.strip():
        raise ValueError("campaign name must not be empty")
    if not caller_id.strip():
        raise ValueError("--caller-id must not be empty")
    if max_attempts < 1:
        raise ValueError("--max-attempts must be at least 1")
    if cps is not None and cps <= 0:
        raise ValueError("--cps must be above 0")
    merge_rules(retry_policy)  # validate now, not at the first hangup
    if start_at and end_at and end_at <= start_at:
        raise ValueError("--end-at must be after --start-at")
    if schedule_cron:
        from dialer.schedules import check_cron

        check_cron(schedule_cron)
        if schedule_hours is None or not 0 < schedule_hours <= 24:
            raise ValueError("a recurring --schedule needs --schedule-hours between 0 and 24")
    if daily_cap_per_number is not None and daily_cap_per_number < 1:
        raise ValueError("--daily-cap must be at least 1")
    if min_gap_seconds < 0:
        raise ValueError("--min-gap must not be negative")
    campaign = Campaign(
        name=name.strip(),
        caller_id=caller_id.strip(),
        window_start=window[0],
        window_end=window[1],
        days=days or [1, 2, 3, 4, 5],
        timezone=check_zone(timezone),
        region=region.upper(),
        cps=cps,
        max_attempts=max_attempts,
        call_timeout=call_timeout,
        retry_policy=retry_policy or {},
        start_at=start_at,
        end_at=end_at,
        schedule_cron=schedule_cron,
        schedule_hours=schedule_hours,
        holidays_country=check_country(holidays_country) if holidays_country else None,
        daily_cap_per_number=daily_cap_per_number,
        min_gap_seconds=min_gap_seconds,
        state=CampaignState.DRAFT,
    )
    campaign.agents = ensure_agents(session=session, numbers=agents)
    session.add(campaign)
    session.flush()
    return campaign


def set_campaign_state(
    *,
    session: Session,
    campaign: Campaign,
    state: CampaignState,
    reason: str | None = None,
    now: dt.datetime | None = None,
) -> Campaign:
    """Move a campaign through its state machine; raises IllegalTransition on a wrong move.

    `now` is the caller's clock (the pacer's tick), stamped as `finished_at` when the campaign
    ends; the wall clock when None.
    """
    campaign.state = transition(CAMPAIGN_TRANSITIONS, CampaignState(campaign.state), state)
    campaign.state_reason = reason
    if state in (CampaignState.COMPLETED, CampaignState.CANCELLED):
        campaign.finished_at = now or dt.datetime.now(dt.UTC)
    session.flush()
    return campaign


def start_campaign(*, session: Session, campaign_id: int, now: dt.datetime) -> Campaign:
    """Start a campaign now, or schedule it when its start time is still ahead."""
    campaign = get_campaign(session=session, campaign_id=campaign_id, lock=True)
    later = (campaign.start_at is not None and campaign.start_at > now) or campaign.schedule_cron is not None
    # A recurring campaign waits for the beat to open its batch (which may be right away).
    target = CampaignState.SCHEDULED if later else CampaignState.RUNNING
    return set_campaign_state(session=session, campaign=campaign, state=target, now=now)


def pause_campaign(*, session: Session, campaign_id: int, reason: str | None = None) -> Campaign:
    """Stop new dials at once; calls in progress go on."""
    campaign = get_campaign(session=session, campaign_id=campaign_id, lock=True)
    return set_campaign_state(session=session, campaign=campaign, state=CampaignState.PAUSED, reason=reason)


def resume_campaign(*, session: Session, campaign_id: int) -> Campaign:
    """Let a paused campaign dial again (a recurring one waits for its batch)."""
    campaign = get_campaign(session=session, campaign_id=campaign_id, lock=True)
    target = CampaignState.SCHEDULED if campaign.schedule_cron else CampaignState.RUNNING
    return set_campaign_state(session=session, campaign=campaign, state=target)


def cancel_campaign(*, session: Session, campaign_id: int) -> Campaign:
    """End a campaign for good: waiting leads are cancelled, calls in progress go on."""
    campaign = get_campaign(session=session, campaign_id=campaign_id, lock=True)
    set_campaign_state(session=session, campaign=campaign, state=CampaignState.CANCELLED)
    session.execute(
        update(Lead)
        .where(Lead.campaign_id == campaign.id, Lead.status == LeadStatus.PENDING)
        .values(status=LeadStatus.CANCELLED, blocked_reason=None)
    )
    # Attempts already queued are left to their dial task: it re-checks the campaign, drops out,
    # cancels the attempt and its lead and frees the agent in one transaction.
    return campaign


def list_campaigns(*, session: Session) -> list[Campaign]:
    """Return every campaign, newest first."""
    return list(session.scalars(select(Campaign).order_by(Campaign.id.desc())))
