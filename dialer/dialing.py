"""The dial: gates, a global token, the committed queued->dialing claim, the request, the result.

Invariant 1 lives here: the attempt moves queued -> dialing in a committed conditional UPDATE
BEFORE the HTTP request, so a redelivered task (or a second worker) finds `dialing` and stops;
and no transaction is held open across the HTTP call.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
from sqlalchemy import exists, update
from sqlalchemy.orm import Session

from dialer import metrics
from dialer.acefone import DialRequest, DialResult, FailureReason, ResultKind
from dialer.campaigns import set_campaign_state
from dialer.compliance import evaluate
from dialer.logs import mask_phone
from dialer.models import Agent, CallAttempt, Campaign, DncNumber, Lead
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
class DialPlan:
    """What passed the gates: the request to send and the rates it must fit under."""

    request: DialRequest
    campaign_id: int
    campaign_cps: float | None


def check_gates(*, session: Session, attempt_id: int, now: dt.datetime) -> DialPlan | None:
    """Re-check a queued attempt against its campaign and every compliance rule; return its request or None.

    An attempt that may not be dialled is cancelled here (uncharged), its agent freed.
    """
    attempt = session.get(CallAttempt, attempt_id, with_for_update=True)
    if attempt is None or attempt.status != AttemptStatus.QUEUED:
        return None  # redelivered, already dialled or already cancelled
    campaign = session.get(Campaign, attempt.campaign_id)
    lead = attempt.lead
    agent = session.get(Agent, attempt.agent_id) if attempt.agent_id else None
    assert campaign is not None

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
    verdict = evaluate(session=session, campaign=campaign, leads=[lead], now=now, exclude_attempts={attempt.id})[
        lead.id
    ]
    if not verdict.allowed:
        drop(verdict.reason or "not allowed", verdict.final, verdict.retry_at or now)
        return None
    attempt.audit = {**attempt.audit, "dial_check": verdict.audit}
    if agent is None:
        drop("no_agent", retry_at=now)
        return None
    request = DialRequest(
        agent_number=agent.number,
        destination_number=lead.phone_e164,
        caller_id=campaign.caller_id,
        custom_identifier=attempt.custom_identifier,
        call_timeout=campaign.call_timeout,
    )
    return DialPlan(request, campaign.id, campaign.cps)


def claim_attempt(*, session: Session, attempt_id: int, now: dt.datetime) -> bool:
    """Move queued -> dialing if the campaign still runs and the number is not on the DNC list."""
    campaign_running = exists().where(Campaign.id == CallAttempt.campaign_id, Campaign.state == CampaignState.RUNNING)
    on_dnc = exists().where(Lead.id == CallAttempt.lead_id, DncNumber.phone_e164 == Lead.phone_e164)
    result = session.execute(
        update(CallAttempt)
        .where(
            CallAttempt.id == attempt_id,
            CallAttempt.status == AttemptStatus.QUEUED,
            campaign_running,
            ~on_dnc,
        )
        .values(status=AttemptStatus.DIALING, dialed_at=now, send_count=CallAttempt.send_count + 1)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]


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
    attempt = session.get(CallAttempt, attempt_id, with_for_update=True)
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
            set_campaign_state(session=session, campaign=campaign, state=CampaignState.PAUSED, reason=result.message)
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
    """Dial one attempt: gates, token, committed claim, request, result - three short transactions."""
    with sessions() as session, session.begin():
        plan = check_gates(session=session, attempt_id=attempt_id, now=clock())
    if plan is None:
        return DialOutcome("skipped")
    request = plan.request
    waited = time.monotonic()
    acquired = limiter.acquire(campaign_id=plan.campaign_id, campaign_cps=plan.campaign_cps, timeout=LIMITER_TIMEOUT)
    metrics.LIMITER_WAIT.labels(result="acquired" if acquired else "timeout").observe(time.monotonic() - waited)
    if not acquired:
        return DialOutcome("queued", retry_in=1.0)
    token_at = clock()
    with sessions() as session, session.begin():
        # dialed_at is the moment the global token was taken: the rate the limiter promises.
        claimed = claim_attempt(session=session, attempt_id=attempt_id, now=token_at)
    if not claimed:
        # Paused, cancelled or listed while we waited for the token: let the gates drop the
        # attempt now (uncharged, agent freed) rather than leave it for the reconciler.
        with sessions() as session, session.begin():
            check_gates(session=session, attempt_id=attempt_id, now=clock())
        return DialOutcome("skipped")
    metrics.CALLS_PLACED.inc()
    result = client.click_to_call(request)
    metrics.count_dial_result(kind=result.kind.value, reason=result.reason.value if result.reason else None)
    if result.reason == FailureReason.RATE_LIMITED:
        limiter.pause_fleet(result.retry_after if result.retry_after is not None else rate_limit_pause)
    with sessions() as session, session.begin():
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
