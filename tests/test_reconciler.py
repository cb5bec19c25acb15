"""The reconciler settles silent calls from the CDR, else as lost; never re-dials; republishes stranded dials."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from factories import WED_NOON_LONDON, add_leads, agents_of, make_attempt, make_campaign
from sqlalchemy.orm import Session

from dialer.acefone import CallRecords, RecordsUnavailable
from dialer.db import new_session
from dialer.models import Agent, CallAttempt, Lead
from dialer.reconciler import reconcile
from dialer.states import AttemptStatus, LeadStatus
from dialer.webhooks import hangup_outcome

DIALED = WED_NOON_LONDON
GRACE = 60
# call_timeout 300 + grace 60 after the dial: overdue from here on.
OVERDUE = DIALED + dt.timedelta(seconds=361)


class FakeCdr:
    def __init__(self, records: list[dict[str, Any]] | None = None, fail: bool = False) -> None:
        self.records = records or []
        self.fail = fail
        self.calls: list[dict[str, Any]] = []

    def call_records(
        self,
        *,
        start: dt.datetime,
        end: dt.datetime,
        account_tz: str,
        page: int = 1,
        limit: int = 100,
        number: str | None = None,
    ) -> CallRecords:
        self.calls.append({"start": start, "end": end, "page": page, "number": number})
        if self.fail:
            raise RecordsUnavailable("HTTP 429", retry_after=10)
        mine = [r for r in self.records if number is None or r.get("client_number") == number]
        chunk = mine[(page - 1) * limit : page * limit]
        return CallRecords(results=chunk, count=len(mine))


def _seed(engine: sa.Engine, status: AttemptStatus = AttemptStatus.ORIGINATED) -> tuple[int, int, int]:
    with Session(engine) as s, s.begin():
        campaign = make_campaign(s, call_timeout=300, max_attempts=3)
        (lead,) = add_leads(s, campaign)
        (agent,) = agents_of(campaign)
        attempt = make_attempt(s, campaign=campaign, lead=lead, agent=agent, status=status, now=DIALED, ref_id="ref-1")
        return attempt.id, lead.id, agent.id


def _run(source: FakeCdr | None, now: dt.datetime) -> Any:
    return reconcile(
        sessions=new_session, source=source, now=now, grace_seconds=GRACE, wrapup_seconds=0, account_tz="Asia/Kolkata"
    )


def _load(engine: sa.Engine, cls: type, ident: int) -> Any:
    with Session(engine, expire_on_commit=False) as s:
        return s.get(cls, ident)


def test_a_call_not_yet_overdue_is_left_alone(clean_db: sa.Engine) -> None:
    attempt_id, _, _ = _seed(clean_db)
    cdr = FakeCdr()
    result = _run(cdr, DIALED + dt.timedelta(seconds=300))
    assert (result.lost, result.settled_from_cdr, cdr.calls) == ([], [], [])
    assert _load(clean_db, CallAttempt, attempt_id).status == AttemptStatus.ORIGINATED


def test_a_silent_call_is_settled_from_its_cdr_record(clean_db: sa.Engine) -> None:
    attempt_id, lead_id, agent_id = _seed(clean_db)
    with Session(clean_db) as s:
        attempt = s.get(CallAttempt, attempt_id)
        assert attempt is not None
        identifier, number = attempt.custom_identifier, attempt.lead.phone_e164
    record = {
        "custom_identifier": identifier,
        "client_number": number,
        "status": "answered",
        "hangup_cause": "NORMAL_CLEARING",
        "billsec": "42",
        "duration": "50",
        "recording_url": "https://rec.example/1.mp3",
        "end_stamp": "2026-04-08 16:36:00",
    }
    # The same number rang for other campaigns too: more than a page of records to read through.
    others = [{"custom_identifier": f"c9-l9-a{i}", "client_number": number, "status": "missed"} for i in range(150)]
    cdr = FakeCdr([*others, record])
    result = _run(cdr, OVERDUE)
    assert result.settled_from_cdr == [attempt_id] and result.lost == []
    assert {c["number"] for c in cdr.calls} == {number} and len(cdr.calls) == 2  # one lookup, two pages
    attempt = _load(clean_db, CallAttempt, attempt_id)
    assert (attempt.status, attempt.billsec) == (AttemptStatus.COMPLETED, 42)
    assert attempt.ended_at == dt.datetime(2026, 4, 8, 11, 6, tzinfo=dt.UTC)  # IST stamp read as UTC
    assert _load(clean_db, Lead, lead_id).status == LeadStatus.CONTACTED
    assert _load(clean_db, Agent, agent_id).reserved_attempt_id is None


def test_a_call_the_cdr_does_not_know_is_lost_and_follows_the_policy(clean_db: sa.Engine) -> None:
    attempt_id, lead_id, agent_id = _seed(clean_db, AttemptStatus.AMBIGUOUS)
    result = _run(FakeCdr([]), OVERDUE)
    assert result.lost == [attempt_id]
    assert _load(clean_db, CallAttempt, attempt_id).status == AttemptStatus.LOST
    lead = _load(clean_db, Lead, lead_id)
    assert (lead.status, lead.attempts, lead.last_outcome) == (LeadStatus.PENDING, 1, "lost")
    assert lead.next_attempt_at > OVERDUE  # a later attempt under the policy, never a blind re-send
    assert _load(clean_db, Agent, agent_id).reserved_attempt_id is None


def test_when_the_cdr_refuses_the_call_waits_then_is_lost(clean_db: sa.Engine) -> None:
    attempt_id, _, _ = _seed(clean_db)
    result = _run(FakeCdr(fail=True), OVERDUE)
    assert (result.waiting, result.lost, result.cdr_error) == ([attempt_id], [], "HTTP 429")
    assert _load(clean_db, CallAttempt, attempt_id).status == AttemptStatus.ORIGINATED
    later = OVERDUE + dt.timedelta(seconds=GRACE * 3)
    assert _run(FakeCdr(fail=True), later).lost == [attempt_id]


def test_stranded_queued_attempts_are_published_again(clean_db: sa.Engine) -> None:
    attempt_id, _, _ = _seed(clean_db, AttemptStatus.QUEUED)
    with Session(clean_db) as s, s.begin():
        s.execute(sa.update(CallAttempt).values(created_at=DIALED))
    assert _run(None, DIALED + dt.timedelta(seconds=30)).republish == []
    assert _run(None, DIALED + dt.timedelta(seconds=91)).republish == [attempt_id]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        # Shapes of /v1/call/records rows: no call_connected, no answered_agent, ring times as numbers.
        (
            {
                "status": "missed",
                "hangup_cause": "UNALLOCATED_NUMBER",
                "reason_key": "Call Failed",
                "customer_ring_time": 0,
                "agent_ring_time": 4,
            },
            AttemptStatus.FAILED,
        ),
        (
            {
                "status": "missed",
                "hangup_cause": "NO_ANSWER",
                "reason_key": "noanswer",
                "customer_ring_time": 30,
                "agent_ring_time": 3,
            },
            AttemptStatus.NO_ANSWER,
        ),
        (
            {
                "status": "missed",
                "hangup_cause": "NO_ANSWER",
                "reason_key": "Agent Missed",
                "customer_ring_time": 0,
                "agent_ring_time": 20,
            },
            AttemptStatus.AGENT_MISSED,
        ),
        (
            {"status": "missed", "hangup_cause": "USER_BUSY", "reason_key": "busy", "customer_ring_time": 0},
            AttemptStatus.BUSY,
        ),
    ],
)
def test_cdr_rows_are_classified_like_their_hangups(record: dict[str, Any], expected: AttemptStatus) -> None:
    # Regression (chaos run): a failed call's CDR row (customer never rang) was read as agent_missed,
    # which is not charged, so the lead was dialled once more than the policy allows.
    fields = {**record, "call_status": record["status"], "hangup_cause_key": record["hangup_cause"]}
    assert hangup_outcome(fields) == expected
