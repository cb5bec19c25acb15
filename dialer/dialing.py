"""The dial: a look, a global token, the gates and the queued->dialing claim, the request, the result.

Invariant 1 lives here: the attempt row is locked, re-checked against every gate and moved
queued -> dialing in one committed transaction BEFORE the HTTP request, so a redelivered task (or
a second worker) finds `dialing` and stops; and no transaction is held open across the HTTP call.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, contains_eager, load_only

from dialer import metrics
from dialer.acefone import DialRequest, DialResult, FailureReason, ResultKind
from dialer.campaigns import set_campaign_state
from dialer.compliance import evaluate
from dialer.db import expire_cached
from dialer.logs import mask_phone
from dialer.models import Agent, CallAttempt, Campaign, DncNumber, Lead, table_of
from dialer.outcomes import return_lead, set_lead_status, settle_attempt
from dialer.states import ATTEMPT_TRANSITIONS, AttemptStatus, CampaignState, LeadStatus, transition

log = structlog.get_logger("dialer.dialing")

AGENT_OFFLINE_COOLDOWN = dt.timedelta(minutes=5)
DEFAULT_429_PAUSE = 5.0
LIMITER_TIMEOUT = 20.0


class Dialer(Protocol):
    def click_to_call(self, request: DialRequest) -> DialResult: ...


class Limiter(Protocol):
    def acquire(self, *, campaign_id: int, campaign_cps: float | None, timeout: float) -> bool: ...
    def pause_fleet(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class DialOutcome:
    """What the task should do next: nothing (`retry_in` None) or run again after `retry_in` s."""

    status: str
    retry_in: float | None = None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Ticket:
    """What a queued attempt needs before the gates: its campaign, for the limiter and the state."""

    campaign_id: int
    campaign_cps: float | None
    running: bool


_ATTEMPTS = table_of(CallAttempt)
_CAMPAIGNS = table_of(Campaign)
# The hot statements are built once: building one costs more than sending it.
_PEEK = (
    select(_ATTEMPTS.c.status, _CAMPAIGNS.c.id, _CAMPAIGNS.c.cps, _CAMPAIGNS.c.state)
    .join(_CAMPAIGNS, _CAMPAIGNS.c.id == _ATTEMPTS.c.campaign_id)
    .where(_ATTEMPTS.c.id == bindparam("attempt_id"))
)
_CLAIM = (
    update(_ATTEMPTS)
    .where(_ATTEMPTS.c.id == bindparam("attempt_id"), _ATTEMPTS.c.status == AttemptStatus.QUEUED.value)
    .values(
        status=AttemptStatus.DIALING.value,
        dialed_at=bindparam("at"),
        send_count=_ATTEMPTS.c.send_count + 1,
        audit=_ATTEMPTS.c.audit.op("||")(bindparam("audit", type_=JSONB)),
    )
)
_ORIGINATED = (
    update(_ATTEMPTS)
    .where(_ATTEMPTS.c.id == bindparam("attempt_id"), _ATTEMPTS.c.status == AttemptStatus.DIALING.value)
    .values(
        status=AttemptStatus.ORIGINATED.value,
        api_status=bindparam("api_status"),
        api_message=bindparam("api_message"),
        ref_id=bindparam("ref_id"),
        call_id=bindparam("call_id"),
    )
)


# The attempt and its lead are locked (as everywhere an attempt is settled); the campaign is only
# read, so dial tasks never hold up the pacer's SKIP LOCKED on it. populate_existing: read under
# the lock, whatever an earlier transaction of the same session left in it. Only the columns the
# gates and the request read are loaded (a rarely taken drop loads the rest when it needs them),
# and the DNC look-up rides along: one statement instead of two, and a third of the columns.
_GATED = (
    select(
        CallAttempt,
        Campaign,
        Agent.number,
        exists().where(table_of(DncNumber).c.phone_e164 == Lead.phone_e164).label("dnc_listed"),
    )
    .join(CallAttempt.lead)
    .options(
        load_only(
            CallAttempt.status,
            CallAttempt.custom_identifier,
            CallAttempt.lead_id,
            CallAttempt.campaign_id,
            CallAttempt.agent_id,
        ),
        contains_eager(CallAttempt.lead).load_only(Lead.phone_e164, Lead.timezones, Lead.attempts, Lead.status),
        load_only(
            Campaign.state,
            Campaign.caller_id,
            Campaign.call_timeout,
            Campaign.timezone,
            Campaign.window_start,
            Campaign.window_end,
            Campaign.days,
            Campaign.holidays_country,
            Campaign.max_attempts,
            Campaign.daily_cap_per_number,
            Campaign.min_gap_seconds,
        ),
    )
    .join(Campaign, Campaign.id == CallAttempt.campaign_id)
    .outerjoin(Agent, Agent.id == CallAttempt.agent_id)
    .where(CallAttempt.id == bindparam("attempt_id"))
    .with_for_update(of=[CallAttempt, Lead])
    .execution_options(populate_existing=True)
)


def peek(*, session: Session, attempt_id: int) -> Ticket | None:
    """Return the attempt's campaign if the attempt is still queued (one read, no lock); else None."""
    row = session.execute(_PEEK, {"attempt_id": attempt_id}).one_or_none()
    if row is None or row.status != AttemptStatus.QUEUED:
        return None  # redelivered, already dialled or already cancelled
    return Ticket(row.id, row.cps, row.state == CampaignState.RUNNING)


@dataclass(frozen=True)
class DialPlan:
    """What passed the gates: the locked attempt and the request to send for it."""

    attempt: CallAttempt
    request: DialRequest
    audit: dict[str, Any]


def check_gates(*, session: Session, attempt_id: int, now: dt.datetime) -> DialPlan | None:
    """Re-check a queued attempt against its campaign and every compliance rule; return its request or None.

    Locks the attempt for the rest of the transaction. An attempt that may not be dialled is
    cancelled here (uncharged), its agent freed.
    """
    row = session.execute(_GATED, {"attempt_id": attempt_id}).one_or_none()
    if row is None or row[0].status != AttemptStatus.QUEUED:
        return None  # redelivered, already dialled or already cancelled
    attempt, campaign, agent_number, dnc_listed = row
    lead = attempt.lead

    def drop(reason: str, lead_status: LeadStatus | None = None, retry_at: dt.datetime | None = None) -> None:
        settle_attempt(session=session, attempt=attempt, status=AttemptStatus.CANCELLED, now=now, wrapup_seconds=0)
        attempt.api_message = f"not dialled: {reason}"
        if lead_status is not None:
            if lead.status != lead_status:
                set_lead_status(lead, lead_status)
        elif retry_at is not None:
            return_lead(lead=lead, next_attempt_at=retry_at, reason=reason)
        lead.blocked_reason = reason

    if campaign.state != CampaignState.RUNNING:
        cancelled = campaign.state == CampaignState.CANCELLED
        drop(f"campaign {campaign.state}", LeadStatus.CANCELLED if cancelled else None, None if cancelled else now)
        return None
    # The same rules as the pacer, again at dial time: a number listed a second ago is not called.
    verdict = evaluate(
        session=session,
        campaign=campaign,
        leads=[lead],
        now=now,
        exclude_attempts={attempt.id},
        dnc_listed={lead.phone_e164} if dnc_listed else set(),
    )[lead.id]
    if not verdict.allowed:
        drop(verdict.reason or "not allowed", verdict.final, verdict.retry_at or now)
        return None
    if agent_number is None:
        drop("no_agent", retry_at=now)
        return None
    request = DialRequest(
        agent_number=agent_number,
        destination_number=lead.phone_e164,
        caller_id=campaign.caller_id,
        custom_identifier=attempt.custom_identifier,
        call_timeout=campaign.call_timeout,
    )
    return DialPlan(attempt, request, verdict.audit)


def claim(session: Session, plan: DialPlan, *, at: dt.datetime) -> bool:
    """Move the gated (and locked) attempt queued -> dialing, with its dial-time audit.

    Committed before the request is sent (invariant 1). False if it was no longer queued.
    """
    done = session.execute(_CLAIM, {"attempt_id": plan.attempt.id, "at": at, "audit": {"dial_check": plan.audit}})
    expire_cached(session, CallAttempt, plan.attempt.id)
    return int(done.rowcount or 0) == 1  # type: ignore[attr-defined]


def _record_originated(*, session: Session, attempt_id: int, result: DialResult) -> bool:
    """The common case in one statement: dialing -> originated. False if the attempt moved on."""
    done = session.execute(
        _ORIGINATED,
        {
            "attempt_id": attempt_id,
            "api_status": result.status_code,
            "api_message": result.message[:2000] or None,
            "ref_id": result.ref_id,
            "call_id": result.call_id,
        },
    )
    expire_cached(session, CallAttempt, attempt_id)
    return int(done.rowcount or 0) == 1  # type: ignore[attr-defined]


def record_result(
    *,
    session: Session,
    attempt_id: int,
    result: DialResult,
    now: dt.datetime,
    wrapup_seconds: int,
    rate_limit_pause: float = DEFAULT_429_PAUSE,
) -> DialOutcome:
    """Store what Acefone answered and take its consequence (invariant 2)."""
    if result.kind == ResultKind.ORIGINATED and _record_originated(
        session=session, attempt_id=attempt_id, result=result
    ):
        return DialOutcome(AttemptStatus.ORIGINATED.value)
    # populate_existing: the session may still hold the attempt as the claim left it.
    attempt = session.get(CallAttempt, attempt_id, with_for_update=True, populate_existing=True)
    assert attempt is not None
    attempt.api_status = result.status_code
    attempt.api_message = result.message[:2000] or None
    current = AttemptStatus(attempt.status)
    if current != AttemptStatus.DIALING:
        # A webhook outran the API response (it happens with async=1): keep the later state.
        if result.ref_id and not attempt.ref_id:
            attempt.ref_id = result.ref_id
        return DialOutcome(current.value)

    if result.kind == ResultKind.ORIGINATED:
        attempt.status = transition(ATTEMPT_TRANSITIONS, current, AttemptStatus.ORIGINATED)
        attempt.ref_id = result.ref_id
        attempt.call_id = result.call_id
        return DialOutcome(attempt.status.value)
    if result.kind == ResultKind.AMBIGUOUS:
        attempt.status = transition(ATTEMPT_TRANSITIONS, current, AttemptStatus.AMBIGUOUS)
        return DialOutcome(attempt.status.value)
    if result.kind == ResultKind.RETRY:
        # Provably not placed: the same attempt goes out again, nothing is charged.
        attempt.status = transition(ATTEMPT_TRANSITIONS, current, AttemptStatus.QUEUED)
        wait = result.retry_after if result.retry_after is not None else rate_limit_pause
        if result.reason != FailureReason.RATE_LIMITED:
            # Exponential back-off with full jitter, so workers that failed together do not
            # come back together.
            wait = random.uniform(0.5, min(30.0, 2.0 ** min(attempt.send_count, 5)))
        return DialOutcome(attempt.status.value, retry_in=wait)

    # FAILED: Acefone refused the request, so no call exists. Whose fault decides the consequence.
    campaign = session.get(Campaign, attempt.campaign_id)
    assert campaign is not None
    lead = attempt.lead
    if result.reason in (FailureReason.UNAUTHORIZED, FailureReason.INVALID_CALLER_ID):
        settle_attempt(
            session=session, attempt=attempt, status=AttemptStatus.FAILED, now=now, wrapup_seconds=0, charge=False
        )
        return_lead(lead=lead, next_attempt_at=now, reason="campaign_paused")
        if campaign.state == CampaignState.RUNNING:
            set_campaign_state(
                session=session, campaign=campaign, state=CampaignState.PAUSED, reason=result.message, now=now
            )
    elif result.reason == FailureReason.AGENT_OFFLINE:
        settle_attempt(
            session=session, attempt=attempt, status=AttemptStatus.FAILED, now=now, wrapup_seconds=0, charge=False
        )
        return_lead(lead=lead, next_attempt_at=now, reason="agent_offline")
        session.execute(
            update(Agent).where(Agent.id == attempt.agent_id).values(paused_until=now + AGENT_OFFLINE_COOLDOWN)
        )
    elif result.reason == FailureReason.INVALID_NUMBER:
        settle_attempt(
            session=session,
            attempt=attempt,
            status=AttemptStatus.FAILED,
            now=now,
            wrapup_seconds=0,
            charge=True,
            final=LeadStatus.INVALID,
        )
    else:
        settle_attempt(session=session, attempt=attempt, status=AttemptStatus.FAILED, now=now, wrapup_seconds=0)
    return DialOutcome(AttemptStatus(attempt.status).value)


def place_call(
    *,
    attempt_id: int,
    sessions: Callable[[], Session],
    client: Dialer,
    limiter: Limiter,
    wrapup_seconds: int,
    rate_limit_pause: float = DEFAULT_429_PAUSE,
    clock: Callable[[], dt.datetime] = _utcnow,
) -> DialOutcome:
    """Dial one attempt: a look, the token, gates and claim committed together, the request, the result.

    Every step uses the one session (and so one pooled connection); no transaction is open while
    waiting for the token or for Acefone.
    """
    with sessions() as session:
        return _place_call(
            session=session,
            attempt_id=attempt_id,
            client=client,
            limiter=limiter,
            wrapup_seconds=wrapup_seconds,
            rate_limit_pause=rate_limit_pause,
            clock=clock,
        )


def _place_call(
    *,
    session: Session,
    attempt_id: int,
    client: Dialer,
    limiter: Limiter,
    wrapup_seconds: int,
    rate_limit_pause: float,
    clock: Callable[[], dt.datetime],
) -> DialOutcome:
    with session.begin():
        ticket = peek(session=session, attempt_id=attempt_id)
    if ticket is None:
        return DialOutcome("skipped")
    if not ticket.running:
        # Paused or cancelled since the pacer queued it: drop it now rather than spend a token.
        with session.begin():
            if check_gates(session=session, attempt_id=attempt_id, now=clock()) is None:
                return DialOutcome("skipped")
    waited = time.monotonic()
    acquired = limiter.acquire(
        campaign_id=ticket.campaign_id, campaign_cps=ticket.campaign_cps, timeout=LIMITER_TIMEOUT
    )
    metrics.LIMITER_WAIT.labels(result="acquired" if acquired else "timeout").observe(time.monotonic() - waited)
    if not acquired:
        return DialOutcome("queued", retry_in=1.0)
    # dialed_at is the moment the global token was taken: the rate the limiter promises. The
    # gates run after the token, so a pause or a DNC listing while we waited stops the dial.
    token_at = clock()
    with session.begin():
        plan = check_gates(session=session, attempt_id=attempt_id, now=token_at)
        claimed = plan is not None and claim(session, plan, at=token_at)
    if plan is None or not claimed:
        return DialOutcome("skipped")
    request = plan.request
    metrics.CALLS_PLACED.inc()
    result = client.click_to_call(request)
    metrics.count_dial_result(kind=result.kind.value, reason=result.reason.value if result.reason else None)
    if result.reason == FailureReason.RATE_LIMITED:
        limiter.pause_fleet(result.retry_after if result.retry_after is not None else rate_limit_pause)
    with session.begin():
        outcome = record_result(
            session=session,
            attempt_id=attempt_id,
            result=result,
            now=clock(),
            wrapup_seconds=wrapup_seconds,
            rate_limit_pause=rate_limit_pause,
        )
    log.info(
        "dial",
        attempt_id=attempt_id,
        custom_identifier=request.custom_identifier,
        destination=mask_phone(request.destination_number),
        result=result.kind.value,
        http_status=result.status_code,
        message=result.message,
        attempt_status=outcome.status,
    )
    return outcome
