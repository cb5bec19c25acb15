"""Settling a call: the attempt's final state, the agent's release and the lead's next step.

One place decides what an ended call means for its lead, whoever learned that it ended
(the hangup webhook, the API's refusal, the reconciler).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, load_only

from dialer import metrics
from dialer.db import expire_cached
from dialer.models import Agent, CallAttempt, Campaign, Lead, table_of
from dialer.policy import merge_rules
from dialer.refill import note_freed_agent
from dialer.states import (
    ATTEMPT_FINAL,
    ATTEMPT_TRANSITIONS,
    LEAD_TRANSITIONS,
    AttemptStatus,
    LeadStatus,
    transition,
)

# Attempt end states and the policy outcome each one is judged by.
POLICY_OUTCOME = {
    AttemptStatus.NO_ANSWER: "no_answer",
    AttemptStatus.BUSY: "busy",
    AttemptStatus.FAILED: "failed",
    AttemptStatus.AGENT_MISSED: "agent_missed",
    AttemptStatus.LOST: "lost",
}


# What settling reads of a campaign (when the session does not hold it already).
_POLICY_ONLY = [load_only(Campaign.retry_policy, Campaign.max_attempts)]
_AGENTS = table_of(Agent)
# Built once: every settled call runs it.
_RELEASE_AGENT = (
    update(_AGENTS)
    .where(_AGENTS.c.id == bindparam("agent_id"), _AGENTS.c.reserved_attempt_id == bindparam("attempt_id"))
    .values(reserved_attempt_id=None, lease_until=None, available_at=bindparam("available_at"))
)


def release_agent(*, session: Session, attempt: CallAttempt, now: dt.datetime, wrapup_seconds: int) -> None:
    """Free the agent held by this attempt, after a wrap-up gap; no-op if another call holds it."""
    if attempt.agent_id is None:
        return
    available_at = now + dt.timedelta(seconds=wrapup_seconds)
    freed = session.execute(
        _RELEASE_AGENT, {"agent_id": attempt.agent_id, "attempt_id": attempt.id, "available_at": available_at}
    )
    expire_cached(session, Agent, attempt.agent_id)
    if freed.rowcount:  # type: ignore[attr-defined]
        # Pace the campaign again as soon as the agent is free, once this commits.
        note_freed_agent(session, campaign_id=attempt.campaign_id, available_at=available_at)


def set_lead_status(lead: Lead, status: LeadStatus) -> None:
    """Move a lead through its state machine."""
    if lead.status != status:
        lead.status = transition(LEAD_TRANSITIONS, LeadStatus(lead.status), status)


def return_lead(*, lead: Lead, next_attempt_at: dt.datetime, reason: str | None = None) -> None:
    """Put a lead back in the queue without charging it."""
    if lead.status in (LeadStatus.IN_CALL, LeadStatus.PENDING):
        set_lead_status(lead, LeadStatus.PENDING)
        lead.next_attempt_at = next_attempt_at
        lead.blocked_reason = reason


def settle_attempt(
    *,
    session: Session,
    attempt: CallAttempt,
    status: AttemptStatus,
    now: dt.datetime,
    wrapup_seconds: int,
    charge: bool | None = None,
    final: LeadStatus | None = None,
) -> bool:
    """End an attempt in `status`, free its agent and decide its lead's next step.

    `charge` overrides the policy's "counts"; `final` closes the lead in that status whatever
    attempts it has left (e.g. `invalid` when Acefone rejects the number).
    Returns False (and changes nothing) if the attempt had already ended: settling is idempotent,
    so a duplicated or late event cannot count a call twice.
    """
    if attempt.status in ATTEMPT_FINAL:
        return False
    # The two statements first: run after the changes below, each would flush the attempt
    # (autoflush), and the end of the transaction would write it a second time.
    new_status = transition(ATTEMPT_TRANSITIONS, AttemptStatus(attempt.status), status)
    release_agent(session=session, attempt=attempt, now=now, wrapup_seconds=wrapup_seconds)
    campaign = session.get(Campaign, attempt.campaign_id, options=_POLICY_ONLY)
    assert campaign is not None
    attempt.status = new_status
    metrics.CALL_OUTCOMES.labels(outcome=status.value).inc()
    attempt.ended_at = now

    lead = attempt.lead
    if lead.status != LeadStatus.IN_CALL:
        # The lead moved on without this call (cancelled campaign, DNC): record, decide nothing.
        return True
    lead.last_outcome = status.value
    if status == AttemptStatus.COMPLETED:
        attempt.charged = True
        lead.attempts += 1
        lead.blocked_reason = None
        set_lead_status(lead, LeadStatus.CONTACTED)
        return True
    if status == AttemptStatus.CANCELLED:
        return_lead(lead=lead, next_attempt_at=now)
        return True

    rule = merge_rules(campaign.retry_policy)[POLICY_OUTCOME[status]]
    counts = rule["counts"] if charge is None else charge
    if counts:
        attempt.charged = True
        lead.attempts += 1
    if final is None and "max" in rule:
        ended_so = session.scalar(
            select(func.count()).where(CallAttempt.lead_id == lead.id, CallAttempt.status == status)
        )
        if int(ended_so or 0) >= int(rule["max"]):
            final = LeadStatus.EXHAUSTED
    if final is not None:
        lead.blocked_reason = None
        set_lead_status(lead, final)
    elif lead.attempts >= campaign.max_attempts:
        lead.blocked_reason = None
        set_lead_status(lead, LeadStatus.EXHAUSTED)
    else:
        return_lead(
            lead=lead,
            next_attempt_at=now + dt.timedelta(seconds=int(rule["delay"])),
            reason="waiting_for_retry",
        )
    return True
