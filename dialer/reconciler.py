"""The reconciler: settle what the webhooks never settled, and pick up work a crash dropped."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer.models import CallAttempt, Campaign
from dialer.outcomes import settle_attempt
from dialer.states import ATTEMPT_LIVE, AttemptStatus

# A queued attempt whose task has not claimed it within this long lost its message
# (a crash between commit and publish, or a broker restart): publish it again.
REQUEUE_AFTER = dt.timedelta(seconds=90)


@dataclass
class ReconcileResult:
    lost: list[int] = field(default_factory=list)
    republish: list[int] = field(default_factory=list)


def reconcile_attempts(
    *, session: Session, now: dt.datetime, grace_seconds: int, wrapup_seconds: int
) -> ReconcileResult:
    """Turn live attempts past call_timeout + grace into `lost`; list stale queued ones to publish again."""
    result = ReconcileResult()
    started = func.coalesce(CallAttempt.dialed_at, CallAttempt.created_at)
    overdue = session.scalars(
        select(CallAttempt)
        .join(Campaign, Campaign.id == CallAttempt.campaign_id)
        .where(
            CallAttempt.status.in_(list(ATTEMPT_LIVE)),
            started + func.make_interval(0, 0, 0, 0, 0, 0, Campaign.call_timeout + grace_seconds) < now,
        )
        .order_by(CallAttempt.id)
        .limit(1000)
        .with_for_update(of=CallAttempt, skip_locked=True)
    ).all()
    for attempt in overdue:
        # Never re-dialled blindly: the call may have happened. `lost` follows the campaign policy.
        attempt.api_message = (attempt.api_message or "") + " | no final webhook: settled as lost by the reconciler"
        settle_attempt(
            session=session, attempt=attempt, status=AttemptStatus.LOST, now=now, wrapup_seconds=wrapup_seconds
        )
        result.lost.append(attempt.id)
    result.republish = list(
        session.scalars(
            select(CallAttempt.id)
            .where(CallAttempt.status == AttemptStatus.QUEUED, CallAttempt.created_at < now - REQUEUE_AFTER)
            .order_by(CallAttempt.id)
            .limit(1000)
        )
    )
    session.flush()
    return result
