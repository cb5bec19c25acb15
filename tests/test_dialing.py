"""The dial: committed claim before the request, no double dial, gates re-checked, results applied."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from factories import ALL_DAYS, SAT_NOON_LONDON, WED_NOON_LONDON, add_leads, make_campaign
from sqlalchemy import select

from dialer.acefone import DialRequest, DialResult, FailureReason, ResultKind
from dialer.campaigns import cancel_campaign, pause_campaign
from dialer.db import new_session
from dialer.dialing import AGENT_OFFLINE_COOLDOWN, DEFAULT_429_PAUSE, DialOutcome, check_gates, claim, place_call
from dialer.dnc import add_numbers
from dialer.models import Agent, CallAttempt, Campaign, Lead
from dialer.pacing import pace_campaigns
from dialer.states import AttemptStatus, CampaignState, LeadStatus

NOW = WED_NOON_LONDON
WRAPUP = 5
T = TypeVar("T")

ORIGINATED = DialResult(ResultKind.ORIGINATED, 200, "Originate successfully queued", ref_id="ref-123")


@dataclass
class FakeAcefone:
    """Records every request; answers with `result`, or raises it."""

    result: DialResult | BaseException = ORIGINATED
    on_call: Callable[[DialRequest], None] | None = None
    requests: list[DialRequest] = field(default_factory=list)

    def click_to_call(self, request: DialRequest) -> DialResult:
        self.requests.append(request)
        if self.on_call is not None:
            self.on_call(request)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


@dataclass
class FakeLimiter:
    grant: bool = True
    on_acquire: Callable[[], None] | None = None
    acquired: list[dict[str, Any]] = field(default_factory=list)
    pauses: list[float] = field(default_factory=list)

    def acquire(self, *, campaign_id: int, campaign_cps: float | None, timeout: float) -> bool:
        self.acquired.append({"campaign_id": campaign_id, "campaign_cps": campaign_cps, "timeout": timeout})
        if self.on_acquire is not None:
            self.on_acquire()
        return self.grant

    def pause_fleet(self, seconds: float) -> None:
        self.pauses.append(seconds)


@dataclass(frozen=True)
class Call:
    campaign_id: int
    lead_id: int
    agent_id: int
    attempt_id: int
    phone: str


def queued_call(*, lead_attempts: int = 0, **campaign_args: Any) -> Call:
    """Commit a running campaign with one lead and let the real pacer claim it."""
    campaign_args.setdefault("days", ALL_DAYS)
    with new_session() as s, s.begin():
        campaign = make_campaign(s, cps=2.0, **campaign_args)
        (lead,) = add_leads(s, campaign, attempts=lead_attempts)
        (attempt_id,) = pace_campaigns(session=s, now=NOW, max_cps=10, campaign_ids=[campaign.id]).attempt_ids
        attempt = s.get_one(CallAttempt, attempt_id)
        assert attempt.agent_id is not None
        return Call(campaign.id, lead.id, attempt.agent_id, attempt_id, lead.phone_e164)


def dial(
    call: Call,
    client: FakeAcefone,
    limiter: FakeLimiter | None = None,
    clock: Callable[[], dt.datetime] = lambda: NOW,
) -> DialOutcome:
    return place_call(
        attempt_id=call.attempt_id,
        sessions=new_session,
        client=client,
        limiter=limiter or FakeLimiter(),
        wrapup_seconds=WRAPUP,
        clock=clock,
    )


def load(model: type[T], key: object) -> T:
    with new_session() as s:
        obj = s.get(model, key)
        assert obj is not None
        s.expunge(obj)
        return obj


def committed(action: Callable[[Any], object]) -> None:
    with new_session() as s, s.begin():
        action(s)


@pytest.fixture(autouse=True)
def _db(clean_db: sa.Engine) -> None:
    """Every test here commits: the dial runs three short transactions of its own."""


# ---- no double dial ---------------------------------------------------------------------------------


def test_attempt_is_committed_as_dialing_before_the_request(clean_db: sa.Engine) -> None:
    call = queued_call(call_timeout=240)
    seen: list[object] = []

    def look_from_another_connection(request: DialRequest) -> None:
        with clean_db.connect() as conn:
            row = conn.execute(
                select(CallAttempt.status, CallAttempt.send_count, CallAttempt.dialed_at).where(
                    CallAttempt.id == call.attempt_id
                )
            ).one()
        seen.append(tuple(row))

    client = FakeAcefone(ORIGINATED, on_call=look_from_another_connection)
    limiter = FakeLimiter()
    outcome = dial(call, client, limiter)

    assert seen == [("dialing", 1, NOW)]
    assert outcome == DialOutcome("originated")
    (request,) = client.requests
    campaign = load(Campaign, call.campaign_id)
    assert request.destination_number == call.phone
    assert request.agent_number == load(Agent, call.agent_id).number
    assert request.caller_id == campaign.caller_id
    assert request.call_timeout == 240
    assert request.custom_identifier == load(CallAttempt, call.attempt_id).custom_identifier
    assert limiter.acquired == [{"campaign_id": call.campaign_id, "campaign_cps": 2.0, "timeout": pytest.approx(20.0)}]
    attempt = load(CallAttempt, call.attempt_id)
    assert attempt.status == AttemptStatus.ORIGINATED
    assert (attempt.ref_id, attempt.api_status) == ("ref-123", 200)


def test_place_call_twice_makes_one_request() -> None:
    call = queued_call()
    client = FakeAcefone(ORIGINATED)
    first = dial(call, client)
    second = dial(call, client)
    assert len(client.requests) == 1
    assert first.status == "originated"
    assert second == DialOutcome("skipped")
    assert load(CallAttempt, call.attempt_id).send_count == 1


@pytest.mark.parametrize("kill", [SystemExit(1), KeyboardInterrupt()], ids=["SystemExit", "KeyboardInterrupt"])
def test_worker_killed_mid_request_leaves_dialing_and_is_never_redialled(kill: BaseException) -> None:
    call = queued_call()
    with pytest.raises(type(kill)):
        dial(call, FakeAcefone(kill))
    assert load(CallAttempt, call.attempt_id).status == AttemptStatus.DIALING

    redelivered = FakeAcefone(ORIGINATED)
    assert dial(call, redelivered) == DialOutcome("skipped")
    assert redelivered.requests == []
    attempt = load(CallAttempt, call.attempt_id)
    assert attempt.status == AttemptStatus.DIALING
    assert attempt.send_count == 1
    assert load(Lead, call.lead_id).status == LeadStatus.IN_CALL


# ---- gates re-checked at dial time ----------------------------------------------------------------------


def _assert_dropped(call: Call, client: FakeAcefone, outcome: DialOutcome) -> tuple[Lead, CallAttempt, Agent]:
    assert client.requests == []
    assert outcome == DialOutcome("skipped")
    attempt = load(CallAttempt, call.attempt_id)
    assert attempt.status == AttemptStatus.CANCELLED
    assert attempt.charged is False
    agent = load(Agent, call.agent_id)
    assert agent.reserved_attempt_id is None
    lead = load(Lead, call.lead_id)
    assert lead.attempts == 0
    return lead, attempt, agent


def test_dnc_added_after_the_claim_is_not_dialled() -> None:
    call = queued_call()
    committed(lambda s: add_numbers(session=s, numbers=[call.phone], reason="asked"))
    client = FakeAcefone()
    lead, _, _ = _assert_dropped(call, client, dial(call, client))
    assert lead.status == LeadStatus.DNC


def test_campaign_paused_after_the_claim_returns_the_lead_uncharged() -> None:
    call = queued_call()
    committed(lambda s: pause_campaign(session=s, campaign_id=call.campaign_id))
    client = FakeAcefone()
    lead, _, _ = _assert_dropped(call, client, dial(call, client))
    assert lead.status == LeadStatus.PENDING
    assert lead.next_attempt_at <= NOW


def test_campaign_cancelled_after_the_claim_cancels_the_lead() -> None:
    call = queued_call()
    committed(lambda s: cancel_campaign(session=s, campaign_id=call.campaign_id))
    client = FakeAcefone()
    lead, _, _ = _assert_dropped(call, client, dial(call, client))
    assert lead.status == LeadStatus.CANCELLED


def test_window_closed_by_dial_time_is_not_dialled() -> None:
    call = queued_call(days=[1, 2, 3, 4, 5])
    client = FakeAcefone()
    lead, _, _ = _assert_dropped(call, client, dial(call, client, clock=lambda: SAT_NOON_LONDON))
    assert lead.status == LeadStatus.PENDING
    assert lead.blocked_reason == "outside_window"
    # Monday 13 April 2026, 09:00 BST.
    assert lead.next_attempt_at == dt.datetime(2026, 4, 13, 8, 0, tzinfo=dt.UTC)


def test_pause_while_waiting_for_a_token_stops_the_dial() -> None:
    call = queued_call()
    limiter = FakeLimiter(
        on_acquire=lambda: committed(lambda s: pause_campaign(session=s, campaign_id=call.campaign_id))
    )
    client = FakeAcefone()
    outcome = dial(call, client, limiter)
    # The claim declined, so the gates drop the attempt at once: lead back uncharged, agent free.
    _assert_dropped(call, client, outcome)
    assert load(Lead, call.lead_id).status == LeadStatus.PENDING


def test_dnc_while_waiting_for_a_token_stops_the_dial() -> None:
    call = queued_call()
    limiter = FakeLimiter(on_acquire=lambda: committed(lambda s: add_numbers(session=s, numbers=[call.phone])))
    client = FakeAcefone()
    dial(call, client, limiter)
    assert client.requests == []
    assert load(CallAttempt, call.attempt_id).status == AttemptStatus.CANCELLED
    assert load(Lead, call.lead_id).status == LeadStatus.DNC


def test_no_token_means_no_request_and_a_retry() -> None:
    call = queued_call()
    client = FakeAcefone()
    outcome = dial(call, client, FakeLimiter(grant=False))
    assert client.requests == []
    assert outcome.retry_in is not None and outcome.retry_in > 0
    assert load(CallAttempt, call.attempt_id).status == AttemptStatus.QUEUED


# ---- what Acefone answered ------------------------------------------------------------------------


def test_connect_error_requeues_uncharged_and_may_be_sent_again() -> None:
    call = queued_call()
    failing = FakeAcefone(DialResult(ResultKind.RETRY, message="ConnectError", reason=FailureReason.CONNECT))
    limiter = FakeLimiter()
    outcome = dial(call, failing, limiter)

    assert outcome.status == "queued"
    assert outcome.retry_in is not None and outcome.retry_in > 0
    assert limiter.pauses == []
    attempt = load(CallAttempt, call.attempt_id)
    assert attempt.status == AttemptStatus.QUEUED
    assert attempt.charged is False
    lead = load(Lead, call.lead_id)
    assert (lead.attempts, lead.status) == (0, LeadStatus.IN_CALL)
    assert load(Agent, call.agent_id).reserved_attempt_id == call.attempt_id

    working = FakeAcefone(ORIGINATED)
    assert dial(call, working).status == "originated"
    assert len(working.requests) == 1
    assert load(CallAttempt, call.attempt_id).send_count == 2


@pytest.mark.parametrize(("retry_after", "pause"), [(7.0, 7.0), (None, DEFAULT_429_PAUSE)])
def test_429_requeues_and_pauses_the_fleet(retry_after: float | None, pause: float) -> None:
    call = queued_call()
    limited = DialResult(
        ResultKind.RETRY, 429, "Too Many Requests", FailureReason.RATE_LIMITED, retry_after=retry_after
    )
    limiter = FakeLimiter()
    outcome = dial(call, FakeAcefone(limited), limiter)

    assert limiter.pauses == [pause]
    assert outcome == DialOutcome("queued", retry_in=pause)
    assert load(CallAttempt, call.attempt_id).status == AttemptStatus.QUEUED
    assert load(Lead, call.lead_id).attempts == 0


def test_ambiguous_is_never_sent_again() -> None:
    call = queued_call()
    client = FakeAcefone(DialResult(ResultKind.AMBIGUOUS, None, "ReadTimeout after sending"))
    assert dial(call, client).status == "ambiguous"
    assert dial(call, client) == DialOutcome("skipped")
    assert len(client.requests) == 1
    attempt = load(CallAttempt, call.attempt_id)
    assert attempt.status == AttemptStatus.AMBIGUOUS
    assert attempt.send_count == 1
    # The call may be ringing: the agent stays held and the lead stays in the call.
    assert load(Agent, call.agent_id).reserved_attempt_id == call.attempt_id
    assert load(Lead, call.lead_id).status == LeadStatus.IN_CALL


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        (FailureReason.UNAUTHORIZED, "Acefone refused the token: check DIALER_ACEFONE_TOKEN"),
        (FailureReason.INVALID_CALLER_ID, "Please provide a valid caller_id."),
    ],
)
def test_account_errors_pause_the_campaign_and_spare_the_lead(reason: FailureReason, message: str) -> None:
    call = queued_call()
    status = 401 if reason == FailureReason.UNAUTHORIZED else 400
    outcome = dial(call, FakeAcefone(DialResult(ResultKind.FAILED, status, message, reason)))

    assert outcome.status == "failed"
    campaign = load(Campaign, call.campaign_id)
    assert campaign.state == CampaignState.PAUSED
    assert campaign.state_reason == message
    attempt = load(CallAttempt, call.attempt_id)
    assert (attempt.status, attempt.charged, attempt.api_message) == (AttemptStatus.FAILED, False, message)
    lead = load(Lead, call.lead_id)
    assert (lead.status, lead.attempts) == (LeadStatus.PENDING, 0)
    assert load(Agent, call.agent_id).reserved_attempt_id is None


def test_agent_offline_rests_the_agent_not_the_lead() -> None:
    call = queued_call()
    offline = DialResult(ResultKind.FAILED, 400, "Agent is offline.", FailureReason.AGENT_OFFLINE)
    dial(call, FakeAcefone(offline))

    agent = load(Agent, call.agent_id)
    assert agent.paused_until == NOW + AGENT_OFFLINE_COOLDOWN
    assert agent.paused_until > NOW
    assert agent.reserved_attempt_id is None
    lead = load(Lead, call.lead_id)
    assert (lead.status, lead.attempts, lead.blocked_reason) == (LeadStatus.PENDING, 0, "agent_offline")
    assert lead.next_attempt_at <= NOW
    assert load(Campaign, call.campaign_id).state == CampaignState.RUNNING
    assert load(CallAttempt, call.attempt_id).charged is False


def test_invalid_number_marks_the_lead_invalid() -> None:
    call = queued_call()
    bad = DialResult(ResultKind.FAILED, 400, "Please provide a valid destination_number.", FailureReason.INVALID_NUMBER)
    dial(call, FakeAcefone(bad))
    lead = load(Lead, call.lead_id)
    assert lead.status == LeadStatus.INVALID
    assert load(Agent, call.agent_id).reserved_attempt_id is None


def test_invalid_number_on_the_last_attempt_is_still_invalid() -> None:
    # Regression: charging first exhausted a lead on its last attempt, so it never became invalid.
    call = queued_call(max_attempts=1)
    bad = DialResult(ResultKind.FAILED, 400, "Please provide a valid destination_number.", FailureReason.INVALID_NUMBER)
    dial(call, FakeAcefone(bad))
    assert load(Lead, call.lead_id).status == LeadStatus.INVALID


def test_webhook_that_outran_the_api_response_is_kept() -> None:
    call = queued_call()

    def answer_event_arrives_first(request: DialRequest) -> None:
        with new_session() as s, s.begin():
            s.get_one(CallAttempt, call.attempt_id).status = AttemptStatus.AGENT_ANSWERED

    outcome = dial(call, FakeAcefone(ORIGINATED, on_call=answer_event_arrives_first))
    assert outcome.status == "agent_answered"
    attempt = load(CallAttempt, call.attempt_id)
    assert (attempt.status, attempt.ref_id) == (AttemptStatus.AGENT_ANSWERED, "ref-123")


def test_gates_read_the_attempt_afresh_in_a_session_that_saw_it_queued() -> None:
    call = queued_call()
    with new_session() as s:
        with s.begin():
            assert check_gates(session=s, attempt_id=call.attempt_id, now=NOW) is not None
        dial(call, FakeAcefone(ORIGINATED))  # another worker dials it meanwhile
        with s.begin():
            assert check_gates(session=s, attempt_id=call.attempt_id, now=NOW) is None


def test_a_claim_finds_nothing_to_claim_once_another_worker_has_it() -> None:
    call = queued_call()
    with new_session() as s, s.begin():
        plan = check_gates(session=s, attempt_id=call.attempt_id, now=NOW)
    assert plan is not None
    dial(call, FakeAcefone(ORIGINATED))
    with new_session() as s, s.begin():
        assert claim(s, plan, at=NOW) is False
    assert load(CallAttempt, call.attempt_id).send_count == 1


def test_only_queued_attempts_are_dialled() -> None:
    call = queued_call()
    committed(lambda s: s.execute(sa.update(CallAttempt).values(status=AttemptStatus.DIALING)))
    client = FakeAcefone()
    assert dial(call, client) == DialOutcome("skipped")
    assert client.requests == []
    assert load(CallAttempt, call.attempt_id).status == AttemptStatus.DIALING
