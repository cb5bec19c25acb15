"""Single leads: scheduled callbacks."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from dialer.models import Lead
from dialer.states import LeadStatus

# A callback raises its lead's priority by this much until the pacer claims the callback's
# attempt and takes it back: the callback is dialled before the campaign's other due leads (still
# inside the window), and the lead's later retries queue as they did before it.
CALLBACK_PRIORITY = 100


class LeadNotFound(LookupError):
    """No lead has that id."""


def schedule_callback(*, session: Session, lead_id: int, at: dt.datetime, now: dt.datetime) -> Lead:
    """Have a pending lead called back at `at`, before the campaign's other due leads."""
    lead = session.get(Lead, lead_id, with_for_update=True)
    if lead is None:
        raise LeadNotFound(f"lead {lead_id} does not exist")
    if lead.status != LeadStatus.PENDING:
        raise ValueError(f"lead {lead_id} is {lead.status.value}: only a pending lead can be given a callback")
    if at < now - dt.timedelta(minutes=1):
        raise ValueError(f"callback time {at:%Y-%m-%d %H:%M} UTC is in the past")
    if lead.callback_at is None:
        lead.priority += CALLBACK_PRIORITY  # a moved callback is raised once
    lead.callback_at = at
    lead.next_attempt_at = at
    lead.blocked_reason = "callback"
    session.flush()
    return lead
