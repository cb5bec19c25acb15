"""The reconciler: settle what the webhooks never settled, and pick up work a crash dropped.

Overdue calls (no final event past call_timeout + grace) are looked up in Acefone's CDR
(/v1/call/records) and settled from it; what the CDR cannot settle becomes `lost` and follows
the campaign's policy for lost calls. Never a blind re-dial: the call may have happened.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer.acefone import CallRecords, RecordsUnavailable
from dialer.models import CallAttempt, Campaign, Lead
from dialer.outcomes import settle_attempt
from dialer.states import ATTEMPT_FINAL, ATTEMPT_LIVE, AttemptStatus
from dialer.webhooks import hangup_outcome, parse_stamp

# Without a CDR answer, wait this many graces before calling a call lost.
CDR_PATIENCE = 3
MAX_CDR_PAGES = 5
CDR_PAGE_SIZE = 100
MAX_LOOKUPS = 30


class RecordsSource(Protocol):
    def call_records(
        self,
        *,
        start: dt.datetime,
        end: dt.datetime,
        account_tz: str,
        page: int = 1,
        limit: int = 100,
        number: str | None = None,
    ) -> CallRecords: ...


@dataclass(frozen=True)
class Overdue:
    attempt_id: int
    keys: tuple[str, ...]
    started: dt.datetime
    deadline: dt.datetime
    number: str = ""


@dataclass
class ReconcileResult:
    settled_from_cdr: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    republish: list[int] = field(default_factory=list)
    cdr_error: str | None = None


def find_overdue(*, session: Session, now: dt.datetime, grace_seconds: int, limit: int = 500) -> list[Overdue]:
    """Return live attempts with no final event past call_timeout + grace."""
    started = func.coalesce(CallAttempt.dialed_at, CallAttempt.created_at)
    deadline = started + func.make_interval(0, 0, 0, 0, 0, 0, Campaign.call_timeout + grace_seconds)
    rows = session.execute(
        select(
            CallAttempt.id,
            CallAttempt.custom_identifier,
            CallAttempt.ref_id,
            CallAttempt.call_id,
            CallAttempt.uuid,
            started,
            deadline,
            Lead.phone_e164,
        )
        .join(Campaign, Campaign.id == CallAttempt.campaign_id)
        .join(Lead, Lead.id == CallAttempt.lead_id)
        .where(CallAttempt.status.in_(list(ATTEMPT_LIVE)), deadline < now)
        .order_by(CallAttempt.id)
        .limit(limit)
    ).all()
    return [Overdue(int(r[0]), tuple(str(k) for k in r[1:5] if k), r[5], r[6], r[7]) for r in rows]


def lookup_record(*, source: RecordsSource, item: Overdue, now: dt.datetime, account_tz: str) -> dict[str, Any] | None:
    """Find one overdue call in the CDR: the records for its number around its time, matched by id.

    Raises RecordsUnavailable when the CDR cannot be read whole for that number (refused, or more
    pages than one lookup may read): a call missing from a partial read must not be declared lost.
    """
    start = item.started - dt.timedelta(minutes=1)
    end = min(now, item.deadline + dt.timedelta(minutes=1))
    keys = set(item.keys)
    for page in range(1, MAX_CDR_PAGES + 1):
        records = source.call_records(
            start=start, end=end, account_tz=account_tz, page=page, limit=CDR_PAGE_SIZE, number=item.number
        )
        for record in records.results:
            if any(str(record.get(k) or "") in keys for k in ("custom_identifier", "ref_id", "call_id", "uuid")):
                return record
        if len(records.results) < CDR_PAGE_SIZE or page * CDR_PAGE_SIZE >= records.count:
            return None
    raise RecordsUnavailable(f"more than {MAX_CDR_PAGES * CDR_PAGE_SIZE} records for one number")


def settle_from_record(
    *, session: Session, attempt_id: int, record: dict[str, Any], now: dt.datetime, wrapup_seconds: int, account_tz: str
) -> bool:
    """Settle an attempt from its CDR record as its hangup webhook would have."""
    attempt = session.get(CallAttempt, attempt_id, with_for_update=True)
    if attempt is None or attempt.status in ATTEMPT_FINAL:
        return False
    fields = {**record, "call_status": record.get("call_status") or record.get("status")}
    fields.setdefault("hangup_cause_key", record.get("hangup_cause"))
    attempt.billsec = _int(record.get("billsec"))
    attempt.duration = _int(record.get("duration"))
    attempt.hangup_cause = str(fields.get("hangup_cause_key") or "")[:64] or None
    recording = record.get("recording_url")
    attempt.recording_url = str(recording) if recording and not str(recording).startswith("$") else None
    attempt.api_message = ((attempt.api_message or "") + " | settled from the CDR by the reconciler").strip(" |")
    settle_attempt(
        session=session, attempt=attempt, status=hangup_outcome(fields), now=now, wrapup_seconds=wrapup_seconds
    )
    attempt.ended_at = parse_stamp(record.get("end_stamp"), account_tz) or now
    return True


def settle_lost(*, session: Session, attempt_id: int, now: dt.datetime, wrapup_seconds: int) -> bool:
    """Settle an attempt nobody can account for as `lost` (the policy decides the lead's next step)."""
    attempt = session.get(CallAttempt, attempt_id, with_for_update=True)
    if attempt is None or attempt.status in ATTEMPT_FINAL:
        return False
    attempt.api_message = ((attempt.api_message or "") + " | no final webhook or CDR: lost").strip(" |")
    return settle_attempt(
        session=session, attempt=attempt, status=AttemptStatus.LOST, now=now, wrapup_seconds=wrapup_seconds
    )


def stale_queued(*, session: Session, now: dt.datetime, requeue_after: int = 90) -> list[int]:
    """Return queued attempts whose dial message seems lost (a crash between commit and publish, a
    broker restart): to publish again; the committed claim makes a duplicate message harmless."""
    return list(
        session.scalars(
            select(CallAttempt.id)
            .where(
                CallAttempt.status == AttemptStatus.QUEUED,
                CallAttempt.created_at < now - dt.timedelta(seconds=requeue_after),
            )
            .order_by(CallAttempt.id)
            .limit(1000)
        )
    )


def reconcile(
    *,
    sessions: Callable[[], Session],
    source: RecordsSource | None,
    now: dt.datetime,
    grace_seconds: int,
    wrapup_seconds: int,
    account_tz: str,
    requeue_after: int = 90,
) -> ReconcileResult:
    """One reconciler run: overdue calls from the CDR (or lost), stranded dials republished."""
    result = ReconcileResult()
    with sessions() as session, session.begin():
        overdue = find_overdue(session=session, now=now, grace_seconds=grace_seconds)
    patience = dt.timedelta(seconds=grace_seconds * (CDR_PATIENCE - 1))
    for n, item in enumerate(overdue):
        # One small lookup per call, at most MAX_LOOKUPS a run (the CDR rate-limits aggressively);
        # no transaction is open across these HTTP calls.
        record: dict[str, Any] | None = None
        cdr_answered = source is None
        if source is not None and n < MAX_LOOKUPS and result.cdr_error is None:
            try:
                record = lookup_record(source=source, item=item, now=now, account_tz=account_tz)
                cdr_answered = True
            except RecordsUnavailable as exc:
                result.cdr_error = str(exc)
        with sessions() as session, session.begin():
            if record is not None:
                if settle_from_record(
                    session=session,
                    attempt_id=item.attempt_id,
                    record=record,
                    now=now,
                    wrapup_seconds=wrapup_seconds,
                    account_tz=account_tz,
                ):
                    result.settled_from_cdr.append(item.attempt_id)
            elif cdr_answered or now > item.deadline + patience:
                if settle_lost(session=session, attempt_id=item.attempt_id, now=now, wrapup_seconds=wrapup_seconds):
                    result.lost.append(item.attempt_id)
            else:
                result.waiting.append(item.attempt_id)
    with sessions() as session, session.begin():
        result.republish = stale_queued(session=session, now=now, requeue_after=requeue_after)
    return result


def _int(value: Any) -> int | None:
    try:
        return int(float(str(value)))
    except (TypeError, ValueError):
        return None
