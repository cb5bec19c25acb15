"""The pacer: each tick, claim only what free agents and the rate budget can take right now.

Runs on every beat tick (and after a hangup frees an agent). Leads and agents are claimed with
FOR UPDATE SKIP LOCKED, so two pacers running at once never claim one lead or one agent twice.
The caller commits, then publishes one dial task per returned attempt id (never before commit).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from dialer.campaigns import set_campaign_state
from dialer.dnc import listed
from dialer.identifiers import format_identifier
from dialer.models import Agent, CallAttempt, Campaign, CampaignAgent, Lead
from dialer.outcomes import set_lead_status
from dialer.policy import window_of
from dialer.states import ATTEMPT_LIVE, AttemptStatus, CampaignState, LeadStatus

# Claim what can be dialled within this many seconds; short queues make pause/cancel immediate.
HORIZON_SECONDS = 2.0
# How long an agent stays reserved when no hangup ever comes, beyond the call's own timeout.
LEASE_GRACE_SECONDS = 120


@dataclass
class PaceResult:
    attempt_ids: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)


def activate_scheduled(*, session: Session, now: dt.datetime) -> list[int]:
    """Start scheduled campaigns whose start time has come."""
    due = session.scalars(
        select(Campaign)
        .where(Campaign.state == CampaignState.SCHEDULED, Campaign.start_at <= now)
        .with_for_update(skip_locked=True)
    ).all()
    for campaign in due:
        set_campaign_state(session=session, campaign=campaign, state=CampaignState.RUNNING)
    return [c.id for c in due]


def _has_work(session: Session, campaign_id: int) -> bool:
    open_lead = exists().where(
        Lead.campaign_id == campaign_id, Lead.status.in_([LeadStatus.PENDING, LeadStatus.IN_CALL])
    )
    live = exists().where(
        CallAttempt.campaign_id == campaign_id,
        CallAttempt.status.in_([AttemptStatus.QUEUED, *ATTEMPT_LIVE]),
    )
    return bool(session.scalar(select(or_(open_lead, live))))


def _free_agents(session: Session, campaign_id: int, now: dt.datetime, limit: int) -> list[Agent]:
    stmt = (
        select(Agent)
        .join(CampaignAgent, CampaignAgent.agent_id == Agent.id)
        .where(
            CampaignAgent.campaign_id == campaign_id,
            or_(Agent.paused_until.is_(None), Agent.paused_until <= now),
            or_(Agent.reserved_attempt_id.is_(None), Agent.lease_until <= now),
            or_(Agent.available_at.is_(None), Agent.available_at <= now),
        )
        .order_by(Agent.available_at.asc().nulls_first(), Agent.id)
        .limit(limit)
        .with_for_update(of=Agent, skip_locked=True)
    )
    return list(session.scalars(stmt))


def pace_campaign(*, session: Session, campaign: Campaign, now: dt.datetime, max_cps: float) -> list[int]:
    """Claim due leads of one running campaign, create their attempts, reserve agents."""
    cps = min(max_cps, campaign.cps or max_cps)
    budget = max(1, math.ceil(cps * HORIZON_SECONDS))
    agents = _free_agents(session, campaign.id, now, budget)
    if not agents:
        return []
    window = window_of(campaign)
    attempt_ids: list[int] = []
    # Leads skipped for the window or DNC do not consume an agent, so look a little further.
    scan = len(agents) * 4
    leads = list(
        session.scalars(
            select(Lead)
            .where(
                and_(
                    Lead.campaign_id == campaign.id,
                    Lead.status == LeadStatus.PENDING,
                    Lead.next_attempt_at <= now,
                )
            )
            .order_by(Lead.priority.desc(), Lead.next_attempt_at, Lead.id)
            .limit(scan)
            .with_for_update(skip_locked=True)
        )
    )
    blocked = listed(session=session, numbers=[lead.phone_e164 for lead in leads])
    for lead in leads:
        if not agents:
            break
        zones = lead.timezones or [campaign.timezone]
        if lead.phone_e164 in blocked:
            set_lead_status(lead, LeadStatus.DNC)
            lead.blocked_reason = "dnc"
            continue
        if lead.attempts >= campaign.max_attempts:
            set_lead_status(lead, LeadStatus.EXHAUSTED)
            continue
        if not window.is_open(now, zones):
            opening = window.next_opening(now, zones)
            # No opening within a week (no allowed days): look again tomorrow, fail closed.
            lead.next_attempt_at = opening or now + dt.timedelta(days=1)
            lead.blocked_reason = "outside_window"
            continue
        agent = agents.pop(0)
        lead.attempt_seq += 1
        attempt = CallAttempt(
            campaign_id=campaign.id,
            lead_id=lead.id,
            agent_id=agent.id,
            attempt_no=lead.attempt_seq,
            custom_identifier=format_identifier(campaign_id=campaign.id, lead_id=lead.id, attempt_no=lead.attempt_seq),
            status=AttemptStatus.QUEUED,
            audit={
                "window": f"{campaign.window_start:%H:%M}-{campaign.window_end:%H:%M}",
                "days": list(campaign.days),
                "zones": zones,
                "local_times": [now.astimezone(_zone(z)).strftime("%a %H:%M") for z in zones],
                "attempt": lead.attempts + 1,
                "max_attempts": campaign.max_attempts,
                "claimed_at": now.isoformat(),
            },
        )
        session.add(attempt)
        set_lead_status(lead, LeadStatus.IN_CALL)
        lead.blocked_reason = None
        session.flush()
        agent.reserved_attempt_id = attempt.id
        agent.lease_until = now + dt.timedelta(seconds=campaign.call_timeout + LEASE_GRACE_SECONDS)
        attempt_ids.append(attempt.id)
    session.flush()
    return attempt_ids


def _zone(name: str) -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def pace_campaigns(
    *, session: Session, now: dt.datetime, max_cps: float, campaign_ids: list[int] | None = None
) -> PaceResult:
    """Run one pacer tick over every running campaign (or the given ones)."""
    result = PaceResult(started=activate_scheduled(session=session, now=now))
    stmt = select(Campaign).where(Campaign.state == CampaignState.RUNNING).order_by(Campaign.id)
    if campaign_ids:
        stmt = stmt.where(Campaign.id.in_(campaign_ids))
    # SKIP LOCKED: a campaign being paused or cancelled right now is simply skipped this tick.
    for campaign in session.scalars(stmt.with_for_update(skip_locked=True)).all():
        if not _has_work(session, campaign.id):
            set_campaign_state(session=session, campaign=campaign, state=CampaignState.COMPLETED)
            result.completed.append(campaign.id)
            continue
        result.attempt_ids += pace_campaign(session=session, campaign=campaign, now=now, max_cps=max_cps)
    return result
