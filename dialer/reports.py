"""Campaign numbers: one definition each, used by the CLI, the API and the demo."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer.campaigns import get_campaign
from dialer.models import Agent, CallAttempt, Lead
from dialer.states import ATTEMPT_LIVE, AttemptStatus, LeadStatus

CALL_PLACED = frozenset(set(AttemptStatus) - {AttemptStatus.QUEUED, AttemptStatus.CANCELLED})


def _counts(session: Session, column: Any, *where: Any) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).where(*where).group_by(column)).all()
    return {str(getattr(k, "value", k)): int(n) for k, n in rows}


def lead_counts(*, session: Session, campaign_id: int) -> dict[str, int]:
    """Return leads by status, every status present (zero when none)."""
    found = _counts(session, Lead.status, Lead.campaign_id == campaign_id)
    return {s.value: found.get(s.value, 0) for s in LeadStatus}


def campaign_status(*, session: Session, campaign_id: int, now: dt.datetime | None = None) -> dict[str, Any]:
    """Return the live view: state, leads by status, calls in progress, why leads wait."""
    now = now or dt.datetime.now(dt.UTC)
    campaign = get_campaign(session=session, campaign_id=campaign_id)
    leads = lead_counts(session=session, campaign_id=campaign_id)
    total = sum(leads.values())
    live = int(
        session.scalar(
            select(func.count()).where(
                CallAttempt.campaign_id == campaign_id,
                CallAttempt.status.in_([AttemptStatus.QUEUED, *ATTEMPT_LIVE]),
            )
        )
        or 0
    )
    waiting = _counts(
        session,
        func.coalesce(Lead.blocked_reason, "due"),
        Lead.campaign_id == campaign_id,
        Lead.status == LeadStatus.PENDING,
    )
    dialable_now = int(
        session.scalar(
            select(func.count()).where(
                Lead.campaign_id == campaign_id, Lead.status == LeadStatus.PENDING, Lead.next_attempt_at <= now
            )
        )
        or 0
    )
    finished = total - leads[LeadStatus.PENDING.value] - leads[LeadStatus.IN_CALL.value]
    return {
        "id": campaign.id,
        "name": campaign.name,
        "state": campaign.state.value,
        "state_reason": campaign.state_reason,
        "total_leads": total,
        "leads": leads,
        "finished_leads": finished,
        "calls_in_progress": live,
        "dialable_now": dialable_now,
        "pending_by_reason": waiting,
    }


def campaign_report(*, session: Session, campaign_id: int) -> dict[str, Any]:
    """Return the campaign report: leads, contacts, attempts, outcomes, rates, agents."""
    campaign = get_campaign(session=session, campaign_id=campaign_id)
    leads = lead_counts(session=session, campaign_id=campaign_id)
    total = sum(leads.values())
    found = _counts(session, CallAttempt.status, CallAttempt.campaign_id == campaign_id)
    outcomes = {s.value: found.get(s.value, 0) for s in AttemptStatus}
    placed = sum(n for s, n in outcomes.items() if AttemptStatus(s) in CALL_PLACED)
    attempted_leads = int(
        session.scalar(
            select(func.count(func.distinct(CallAttempt.lead_id))).where(
                CallAttempt.campaign_id == campaign_id, CallAttempt.status.in_(list(CALL_PLACED))
            )
        )
        or 0
    )
    talk = session.execute(
        select(func.coalesce(func.sum(CallAttempt.billsec), 0), func.avg(CallAttempt.billsec)).where(
            CallAttempt.campaign_id == campaign_id, CallAttempt.status == AttemptStatus.COMPLETED
        )
    ).one()
    contacted = leads[LeadStatus.CONTACTED.value]
    still_dialable = leads[LeadStatus.PENDING.value] + leads[LeadStatus.IN_CALL.value]
    agents = session.execute(
        select(
            Agent.number,
            func.count(CallAttempt.id),
            func.count(CallAttempt.id).filter(CallAttempt.status == AttemptStatus.COMPLETED),
            func.coalesce(func.sum(CallAttempt.billsec), 0),
        )
        .join(CallAttempt, CallAttempt.agent_id == Agent.id)
        .where(CallAttempt.campaign_id == campaign_id, CallAttempt.status.in_(list(CALL_PLACED)))
        .group_by(Agent.number)
        .order_by(Agent.number)
    ).all()
    return {
        "campaign": {"id": campaign.id, "name": campaign.name, "state": campaign.state.value},
        "total_leads": total,
        "leads": leads,
        "contacted": contacted,
        "attempts": placed,
        "outcomes": outcomes,
        "contact_rate": round(contacted / attempted_leads, 4) if attempted_leads else 0.0,
        "answer_rate": round(outcomes[AttemptStatus.COMPLETED.value] / placed, 4) if placed else 0.0,
        "penetration": round((total - still_dialable) / total, 4) if total else 0.0,
        "talk_seconds": int(talk[0] or 0),
        "avg_talk_seconds": round(float(talk[1]), 1) if talk[1] is not None else 0.0,
        "agents": [
            {"agent": number, "calls": int(calls), "contacts": int(contacts), "talk_seconds": int(secs or 0)}
            for number, calls, contacts, secs in agents
        ],
    }


def _safe_cell(value: Any) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet: neutralise it.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def leads_csv(*, session: Session, campaign_id: int) -> str:
    """Return the lead-level export (one row per lead) as CSV text, formula-safe."""
    get_campaign(session=session, campaign_id=campaign_id)
    leads = session.scalars(select(Lead).where(Lead.campaign_id == campaign_id).order_by(Lead.id)).all()
    talk = dict(
        session.execute(
            select(CallAttempt.lead_id, func.coalesce(func.sum(CallAttempt.billsec), 0))
            .where(CallAttempt.campaign_id == campaign_id)
            .group_by(CallAttempt.lead_id)
        ).all()
    )
    extra = sorted({k for lead in leads for k in (lead.custom_fields or {})})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["lead_id", "phone", "status", "attempts", "last_outcome", "talk_seconds", *extra])
    for lead in leads:
        fields = lead.custom_fields or {}
        writer.writerow(
            [
                lead.id,
                # E.164 starts with "+": written as-is it is a formula to a spreadsheet.
                _safe_cell(lead.phone_e164),
                lead.status.value,
                lead.attempts,
                lead.last_outcome or "",
                int(talk.get(lead.id) or 0),
                *(_safe_cell(fields.get(k)) for k in extra),
            ]
        )
    return out.getvalue()
