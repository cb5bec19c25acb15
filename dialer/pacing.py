"""The pacer: each tick, claim only what free agents and the rate budget can take right now.

Runs on every beat tick. Leads and agents are claimed with FOR UPDATE SKIP LOCKED, so two pacers
running at once never claim one lead or one agent twice; an advisory lock makes one of them the
leader for the tick, so the normal case is one pacer doing the work. The caller commits, then
publishes one dial task per returned attempt id (never before the commit).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from psycopg.errors import LockNotAvailable
from sqlalchemy import exists, func, or_, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from dialer.campaigns import set_campaign_state
from dialer.compliance import evaluate
from dialer.identifiers import format_identifier
from dialer.leads import CALLBACK_PRIORITY
from dialer.models import Agent, CallAttempt, Campaign, CampaignAgent, Lead
from dialer.outcomes import set_lead_status
from dialer.schedules import apply_schedules
from dialer.states import ATTEMPT_LIVE, AttemptStatus, CampaignState, LeadStatus

# Claim what can be dialled within this many seconds; short queues make pause/cancel immediate.
HORIZON_SECONDS = 2.0
# How long an agent stays reserved when no hangup ever comes, beyond the call's own timeout.
LEASE_GRACE_SECONDS = 120
# pg advisory lock key for "the pacer" (any constant shared by every pacer process).
PACER_LOCK_KEY = 0x6469616C  # "dial"
# How long a refill waits for a pacer holding the lock before it gives up (the tick covers it).
REFILL_LOCK_WAIT = 2.0


@dataclass
class PaceResult:
    attempt_ids: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)
    leader: bool = True


def _has_work(session: Session, campaign_id: int) -> bool:
    open_lead = exists().where(
        Lead.campaign_id == campaign_id, Lead.status.in_([LeadStatus.PENDING, LeadStatus.IN_CALL])
    )
    live = exists().where(
        CallAttempt.campaign_id == campaign_id,
        CallAttempt.status.in_([AttemptStatus.QUEUED, *ATTEMPT_LIVE]),
    )
    return bool(session.scalar(select(or_(open_lead, live))))


def _queued(session: Session, campaign_id: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(CallAttempt)
            .where(CallAttempt.campaign_id == campaign_id, CallAttempt.status == AttemptStatus.QUEUED)
        )
        or 0
    )


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


def _take_agent(agents: list[Agent], lead: Lead) -> Agent | None:
    if lead.agent_id is None:
        return agents.pop(0)
    for i, agent in enumerate(agents):
        if agent.id == lead.agent_id:
            return agents.pop(i)
    return None


def pace_campaign(*, session: Session, campaign: Campaign, now: dt.datetime, max_cps: float) -> list[int]:
    """Claim due leads of one running campaign, create their attempts, reserve agents."""
    cps = min(max_cps, campaign.cps or max_cps)
    # What the rate can take over the horizon, less what is already queued for a token.
    budget = math.ceil(cps * HORIZON_SECONDS) - _queued(session, campaign.id)
    if budget <= 0:
        return []
    agents = _free_agents(session, campaign.id, now, budget)
    if not agents:
        return []
    # Leads skipped for compliance do not consume an agent, so look a little further.
    leads = list(
        session.scalars(
            select(Lead)
            .where(Lead.campaign_id == campaign.id, Lead.status == LeadStatus.PENDING, Lead.next_attempt_at <= now)
            .order_by(Lead.priority.desc(), Lead.next_attempt_at, Lead.id)
            .limit(len(agents) * 4)
            .with_for_update(skip_locked=True)
        )
    )
    verdicts = evaluate(session=session, campaign=campaign, leads=leads, now=now)
    claimed: list[tuple[CallAttempt, Agent]] = []
    for lead in leads:
        if not agents:
            break
        verdict = verdicts[lead.id]
        if not verdict.allowed:
            lead.blocked_reason = verdict.reason
            if verdict.final is not None:
                set_lead_status(lead, verdict.final)
            elif verdict.retry_at is not None:
                lead.next_attempt_at = verdict.retry_at
            continue
        agent = _take_agent(agents, lead)
        if agent is None:
            lead.blocked_reason = "agent_busy"
            continue
        lead.attempt_seq += 1
        attempt = CallAttempt(
            campaign_id=campaign.id,
            lead_id=lead.id,
            agent_id=agent.id,
            attempt_no=lead.attempt_seq,
            custom_identifier=format_identifier(campaign_id=campaign.id, lead_id=lead.id, attempt_no=lead.attempt_seq),
            status=AttemptStatus.QUEUED,
            audit={
                **verdict.audit,
                "callback_at": lead.callback_at.isoformat() if lead.callback_at else None,
            },
        )
        if lead.callback_at is not None:
            # Honoured: this attempt is the callback. Its lead's later retries wait their turn.
            lead.callback_at = None
            lead.priority -= CALLBACK_PRIORITY
        session.add(attempt)
        set_lead_status(lead, LeadStatus.IN_CALL)
        lead.blocked_reason = None
        claimed.append((attempt, agent))
    session.flush()  # one INSERT ... RETURNING for every attempt: their ids, for the agents
    lease_until = now + dt.timedelta(seconds=campaign.call_timeout + LEASE_GRACE_SECONDS)
    for attempt, agent in claimed:
        agent.reserved_attempt_id = attempt.id
        agent.lease_until = lease_until
    session.flush()
    return [attempt.id for attempt, _ in claimed]


def refill_campaigns(*, session: Session, now: dt.datetime, max_cps: float, campaign_ids: list[int]) -> list[int]:
    """Pace just these campaigns now, because agents of theirs became free (dialer/refill.py).

    Unlike the tick, it waits (briefly) for a pacer running at the same moment rather than
    skipping, so the agents it was called for are not left to the next tick; schedules and
    completion stay the tick's work.
    """
    if not campaign_ids:
        return []
    session.execute(text(f"SET LOCAL lock_timeout = '{int(REFILL_LOCK_WAIT * 1000)}ms'"))
    try:
        # In a savepoint, so giving up leaves the caller's transaction usable; the lock itself
        # is held to the end of the transaction like the tick's.
        with session.begin_nested():
            session.execute(select(func.pg_advisory_xact_lock(PACER_LOCK_KEY)))
    except OperationalError as exc:
        if not isinstance(exc.orig, LockNotAvailable):
            raise
        return []  # a pacer has held the lock for seconds: its tick, or the next, serves these agents
    finally:
        session.execute(text("SET LOCAL lock_timeout = 0"))
    attempt_ids: list[int] = []
    for campaign in _running_campaigns(session, campaign_ids):
        attempt_ids += pace_campaign(session=session, campaign=campaign, now=now, max_cps=max_cps)
    return attempt_ids


def _running_campaigns(session: Session, campaign_ids: list[int] | None) -> list[Campaign]:
    """The running campaigns (or those of them given), locked; SKIP LOCKED: one being paused or
    cancelled right now is simply skipped this time."""
    stmt = select(Campaign).where(Campaign.state == CampaignState.RUNNING).order_by(Campaign.id)
    if campaign_ids:
        stmt = stmt.where(Campaign.id.in_(campaign_ids))
    return list(session.scalars(stmt.with_for_update(skip_locked=True)))


def pace_campaigns(
    *, session: Session, now: dt.datetime, max_cps: float, campaign_ids: list[int] | None = None
) -> PaceResult:
    """Run one pacer tick: schedules first, then every running campaign (or the given ones)."""
    if not session.scalar(select(func.pg_try_advisory_xact_lock(PACER_LOCK_KEY))):
        return PaceResult(leader=False)  # another pacer is ticking right now
    changes = apply_schedules(session=session, now=now)
    result = PaceResult(started=changes.started, stopped=changes.stopped, completed=changes.ended)
    for campaign in _running_campaigns(session, campaign_ids):
        if not campaign.schedule_cron and not _has_work(session, campaign.id):
            # Recurring campaigns wait for their next batch (and new leads) instead.
            set_campaign_state(session=session, campaign=campaign, state=CampaignState.COMPLETED, now=now)
            result.completed.append(campaign.id)
            continue
        result.attempt_ids += pace_campaign(session=session, campaign=campaign, now=now, max_cps=max_cps)
    return result
