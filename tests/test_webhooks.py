"""Webhooks: parsing every body shape, storing raw first with dedupe, correlation, forward-only processing."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from factories import WED_NOON_LONDON, add_leads, agents_of, make_attempt, make_campaign
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer.models import Agent, CallAttempt, Campaign, Lead, WebhookEvent
from dialer.states import AttemptStatus, LeadStatus
from dialer.webhooks import (
    MAX_BODY_BYTES,
    RawEvent,
    StoredEvent,
    WebhookParseError,
    event_kind,
    hangup_outcome,
    parse_body,
    process_event,
    receive_event,
    store_event,
)

NOW = WED_NOON_LONDON
WRAPUP = 7
ACCOUNT_TZ = "Asia/Kolkata"
JSON_CT = "application/json"
FORM_CT = "application/x-www-form-urlencoded"

# The shapes captured from real Acefone accounts (ACEFONE.md), as the portal templates send them.
ANSWERED_BY_AGENT: dict[str, str] = {
    "uuid": "69d75426f0a9f",
    "call_to_number": "918287842425",
    "caller_id_number": "+919240202904",
    "start_stamp": "2026-04-09 12:54:21",
    "answer_agent_number": "+918287842425",
    "call_id": "1775719461.306731",
    "call_status": "Answered by agent",
    "direction": "click_to_call",
    "ref_id": "",
}
MISSED_BY_CUSTOMER: dict[str, str] = {
    "uuid": "69d75426f0a9f",
    "call_status": "missed",
    "direction": "clicktocall",
    "call_connected": "1",
    "customer_ring_time": "30",
    "reason_key": "noanswer",
    "hangup_cause_key": "UNSPECIFIED",
    "hangup_cause_code": "0",
}
HANGUP_ANSWERED: dict[str, str] = {
    "uuid": "69d75426f0a9f",
    "call_status": "answered",
    "billsec": "11",
    "duration": "11",
    "outbound_sec": "7",
    "agent_ring_time": "4",
    "customer_ring_time": "4",
    "reason_key": "Call Disconnected By Callee",
    "hangup_cause_key": "NORMAL_CLEARING",
    "hangup_cause_code": "16",
    "ref_id": "02b6990a-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
    "end_stamp": "2026-04-08 16:31:00",
    "custom_identifier": "$custom_identifier",
}
ANSWERED_BY_CUSTOMER: dict[str, str] = {
    "uuid": "69d75426f0a9f",
    "call_status": "Answered by customer",
    "direction": "click_to_call",
    "answer_stamp": "2026-04-08 16:30:49",
}
HANGUP_NO_ANSWER: dict[str, str] = {
    "uuid": "69d75426f0a9f",
    "call_status": "missed",
    "direction": "clicktocall",
    "call_connected": "1",
    "billsec": "0",
    "duration": "34",
    "customer_ring_time": "30",
    "reason_key": "noanswer",
    "hangup_cause_key": "NO_ANSWER",
    "end_stamp": "2026-04-08 16:31:00",
}
HANGUP_AGENT_MISSED: dict[str, str] = {
    "call_status": "missed",
    "direction": "clicktocall",
    "call_connected": "0",
    "billsec": "0",
    "duration": "30",
    "agent_ring_time": "30",
    "customer_ring_time": "0",
    "missed_agent": '[{"id": "1001", "number": "+442070000101"}]',
    "hangup_cause_key": "NO_ANSWER",
    "reason_key": "Agent Missed",
    "end_stamp": "2026-04-08 16:31:00",
}
HANGUP_BUSY: dict[str, str] = {
    "call_status": "missed",
    "call_connected": "1",
    "billsec": "0",
    "duration": "6",
    "customer_ring_time": "0",
    "hangup_cause_key": "USER_BUSY",
    "reason_key": "busy",
    "end_stamp": "2026-04-08 16:31:00",
}


def json_body(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode()


def for_attempt(attempt: CallAttempt, shape: dict[str, str], **extra: str) -> dict[str, str]:
    return {**shape, "custom_identifier": attempt.custom_identifier, **extra}


def deliver(
    session: Session, payload: dict[str, Any], *, now: dt.datetime = NOW, fast: bool = True
) -> tuple[StoredEvent, str]:
    """Receive one JSON webhook the way the web endpoint does: parse, store raw, process.

    `fast`: a progress event may take the one-statement path, as in the web; False is the long way.
    """
    body = json_body(payload)
    fields = parse_body(method="POST", content_type=JSON_CT, body=body, query={})
    return receive_event(
        session=session,
        event=RawEvent("POST", JSON_CT, {"X-Webhook-Token": "hook-secret", "User-Agent": "Acefone"}, body, fields),
        process=True,
        fast=fast,
        now=now,
        wrapup_seconds=WRAPUP,
        account_tz=ACCOUNT_TZ,
    )


def call_in_progress(
    session: Session,
    *,
    status: AttemptStatus = AttemptStatus.ORIGINATED,
    lead_attempts: int = 0,
    **campaign_args: Any,
) -> tuple[Campaign, Lead, Agent, CallAttempt]:
    campaign = make_campaign(session, **campaign_args)
    (lead,) = add_leads(session, campaign, attempts=lead_attempts)
    (agent,) = agents_of(campaign)
    attempt = make_attempt(session, campaign=campaign, lead=lead, agent=agent, status=status)
    return campaign, lead, agent, attempt


def reload(session: Session, *objects: object) -> None:
    session.flush()
    for obj in objects:
        session.refresh(obj)


# ---- parse_body -------------------------------------------------------------------------------------


def test_parse_json_body() -> None:
    fields = parse_body(method="POST", content_type=JSON_CT, body=json_body(HANGUP_ANSWERED), query={"token": "x"})
    assert fields["billsec"] == "11"
    assert fields["hangup_cause_key"] == "NORMAL_CLEARING"
    assert fields["custom_identifier"] is None  # "$custom_identifier" was an unset variable
    assert "token" not in fields


def test_parse_json_body_without_content_type() -> None:
    fields = parse_body(method="POST", content_type=None, body=b'  {"call_status": "answered"}', query={})
    assert fields == {"call_status": "answered"}


def test_parse_form_body() -> None:
    body = urlencode(
        {"custom_identifier": "c1-l2-a3", "call_status": "answered", "campaign_name": "$campaign_name", "billsec": ""}
    ).encode()
    fields = parse_body(method="POST", content_type=f"{FORM_CT}; charset=utf-8", body=body, query={})
    assert fields == {
        "custom_identifier": "c1-l2-a3",
        "call_status": "answered",
        "campaign_name": None,
        "billsec": None,
    }


def test_parse_get_query_drops_the_token() -> None:
    query = {"token": "hook-secret", "custom_identifier": "c1-l2-a3", "call_status": "missed", "uuid": "$uuid"}
    fields = parse_body(method="GET", content_type=None, body=b"", query=query)
    assert fields == {"custom_identifier": "c1-l2-a3", "call_status": "missed", "uuid": None}


def test_post_with_empty_body_reads_the_query() -> None:
    fields = parse_body(method="POST", content_type=None, body=b"  ", query={"call_status": "answered"})
    assert fields == {"call_status": "answered"}


def test_dollar_variables_are_none_at_any_depth() -> None:
    payload = {"campaign_name": "$campaign_name", "answered_agent": {"id": "7", "number": "$number"}, "n": " $x "}
    fields = parse_body(method="POST", content_type=JSON_CT, body=json_body(payload), query={})
    assert fields == {"campaign_name": None, "answered_agent": {"id": "7", "number": None}, "n": None}


@pytest.mark.parametrize("content_type", [JSON_CT, FORM_CT])
def test_nested_json_strings_are_decoded(content_type: str) -> None:
    payload = {
        "answered_agent": json.dumps({"id": "1001", "name": "Asha", "number": "+442070000101"}),
        "missed_agent": json.dumps([{"id": "1002", "number": "$number"}]),
        "call_flow": "[not json",
    }
    body = json_body(payload) if content_type == JSON_CT else urlencode(payload).encode()
    fields = parse_body(method="POST", content_type=content_type, body=body, query={})
    assert fields["answered_agent"] == {"id": "1001", "name": "Asha", "number": "+442070000101"}
    assert fields["missed_agent"] == [{"id": "1002", "number": None}]
    assert fields["call_flow"] == "[not json"  # kept as sent when it does not decode


@pytest.mark.parametrize(
    ("method", "content_type", "body", "words"),
    [
        ("POST", JSON_CT, b'{"call_status": ', "not valid JSON"),
        ("POST", JSON_CT, b"[1, 2]", "object"),
        ("POST", JSON_CT, b'{"call_status": "\xff\xfe"}', "not UTF-8"),
        ("POST", None, b"", "empty"),
        ("GET", None, b"", "empty"),
        ("POST", "text/plain", b"hello there", "neither JSON nor a form"),
        ("POST", JSON_CT, b"{" + b" " * MAX_BODY_BYTES + b"}", "limit"),
    ],
    ids=["invalid-json", "json-array", "not-utf8", "empty-post", "empty-get", "plain-text", "too-big"],
)
def test_unreadable_bodies_raise_with_a_message_naming_the_problem(
    method: str, content_type: str | None, body: bytes, words: str
) -> None:
    with pytest.raises(WebhookParseError) as info:
        parse_body(method=method, content_type=content_type, body=body, query={"token": "hook-secret"})
    assert words in str(info.value)


# ---- event_kind and hangup_outcome --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "kind", "outcome"),
    [
        pytest.param(ANSWERED_BY_AGENT, "agent_answered", None, id="answered-by-agent"),
        pytest.param(MISSED_BY_CUSTOMER, "customer_missed", AttemptStatus.NO_ANSWER, id="missed-by-customer"),
        pytest.param(HANGUP_ANSWERED, "hangup", AttemptStatus.COMPLETED, id="hangup-answered"),
        pytest.param(ANSWERED_BY_CUSTOMER, "customer_answered", None, id="answered-by-customer"),
    ],
)
def test_captured_shapes(shape: dict[str, str], kind: str, outcome: AttemptStatus | None) -> None:
    fields = parse_body(method="POST", content_type=JSON_CT, body=json_body(shape), query={})
    assert event_kind(fields) == kind
    if outcome is not None:
        assert hangup_outcome(fields) == outcome


@pytest.mark.parametrize("status", ["ANSWERED BY AGENT", "answered by agent", " Answered By Agent "])
def test_call_status_matches_case_insensitively(status: str) -> None:
    assert event_kind({"call_status": status}) == "agent_answered"


def test_unknown_event_kind() -> None:
    assert event_kind({"call_status": "ringing"}) == "unknown"


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        pytest.param(HANGUP_BUSY, AttemptStatus.BUSY, id="busy-cause"),
        pytest.param({**HANGUP_BUSY, "hangup_cause_key": "UNSPECIFIED"}, AttemptStatus.BUSY, id="busy-reason"),
        pytest.param(HANGUP_NO_ANSWER, AttemptStatus.NO_ANSWER, id="no-answer-cause"),
        pytest.param({**HANGUP_NO_ANSWER, "hangup_cause_key": "UNSPECIFIED"}, AttemptStatus.NO_ANSWER, id="noanswer"),
        pytest.param(
            {**HANGUP_NO_ANSWER, "hangup_cause_key": "NO_USER_RESPONSE", "reason_key": None},
            AttemptStatus.NO_ANSWER,
            id="no-user-response",
        ),
        pytest.param(HANGUP_AGENT_MISSED, AttemptStatus.AGENT_MISSED, id="agent-missed"),
        pytest.param(
            {
                "call_status": "missed",
                "call_connected": "0",
                "missed_agent": [{"id": "1"}],
                "customer_ring_time": "0",
                "duration": "30",
            },
            AttemptStatus.AGENT_MISSED,
            id="agent-missed-minimal",
        ),
        pytest.param(
            {**HANGUP_BUSY, "hangup_cause_key": "UNALLOCATED_NUMBER", "reason_key": "Call Failed"},
            AttemptStatus.FAILED,
            id="unallocated",
        ),
        pytest.param(
            {**HANGUP_ANSWERED, "billsec": "0", "hangup_cause_key": "NORMAL_CLEARING"},
            AttemptStatus.COMPLETED,
            id="answered-zero-billsec",
        ),
        pytest.param({**HANGUP_ANSWERED, "hangup_cause_key": None}, AttemptStatus.COMPLETED, id="answered-billsec"),
    ],
)
def test_hangup_outcome(fields: dict[str, Any], outcome: AttemptStatus) -> None:
    assert event_kind(fields) == "hangup"
    assert hangup_outcome(fields) == outcome


# ---- storing ----------------------------------------------------------------------------------------


def test_store_event_dedupes_copies(session: Session) -> None:
    body = json_body({**HANGUP_ANSWERED, "custom_identifier": "c1-l2-a3"})
    fields = parse_body(method="POST", content_type=JSON_CT, body=body, query={})
    headers = {"X-Webhook-Token": "hook-secret", "Authorization": "Bearer x", "User-Agent": "Acefone"}
    first = store_event(session=session, event=RawEvent("post", JSON_CT, headers, body, fields))
    second = store_event(session=session, event=RawEvent("post", JSON_CT, headers, body, fields))

    assert first.is_new is True
    assert second.is_new is False
    assert second.id == first.id
    assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 1
    event = session.get(WebhookEvent, first.id)
    assert event is not None
    session.refresh(event)
    assert event.copies == 2
    assert event.body == body.decode()
    assert event.method == "POST"
    assert event.kind == "hangup"
    assert event.custom_identifier == "c1-l2-a3"
    assert event.status == "pending"
    assert {k.lower() for k in event.headers} == {"user-agent"}  # secrets never stored


def test_different_events_are_different_rows(session: Session) -> None:
    for shape in (ANSWERED_BY_AGENT, HANGUP_ANSWERED):
        body = json_body(shape)
        fields = parse_body(method="POST", content_type=JSON_CT, body=body, query={})
        assert store_event(session=session, event=RawEvent("POST", JSON_CT, {}, body, fields))
    assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 2


# ---- correlation ------------------------------------------------------------------------------------


def test_correlates_by_custom_identifier(session: Session) -> None:
    _, _, _, attempt = call_in_progress(session)
    stored, status = deliver(session, for_attempt(attempt, ANSWERED_BY_AGENT))
    assert status == "processed"
    event = session.get(WebhookEvent, stored.id)
    assert event is not None and event.attempt_id == attempt.id
    assert attempt.status == AttemptStatus.AGENT_ANSWERED


def test_correlates_by_ref_id_when_custom_identifier_is_unset(session: Session) -> None:
    _, lead, _, attempt = call_in_progress(session)
    attempt.ref_id = HANGUP_ANSWERED["ref_id"]
    other = make_campaign(session)
    make_attempt(session, campaign=other, lead=add_leads(session, other)[0], agent=agents_of(other)[0])

    stored, status = deliver(session, HANGUP_ANSWERED)  # custom_identifier is "$custom_identifier"

    assert status == "processed"
    assert session.get(WebhookEvent, stored.id).attempt_id == attempt.id  # type: ignore[union-attr]
    assert attempt.status == AttemptStatus.COMPLETED
    assert lead.status == LeadStatus.CONTACTED


def test_correlates_by_ids_learned_from_an_earlier_event(session: Session) -> None:
    _, lead, _, attempt = call_in_progress(session)
    # The first event carries the custom_identifier and the call's uuid/call_id ...
    deliver(session, for_attempt(attempt, ANSWERED_BY_AGENT))
    assert (attempt.uuid, attempt.call_id) == ("69d75426f0a9f", "1775719461.306731")
    # ... later ones are matched by uuid alone, or by call_id alone.
    _, status = deliver(session, {"uuid": "69d75426f0a9f", "call_status": "Answered by customer"})
    assert status == "processed"
    assert attempt.status == AttemptStatus.CUSTOMER_ANSWERED
    _, status = deliver(
        session, {**HANGUP_ANSWERED, "uuid": "$uuid", "ref_id": "$ref_id", "call_id": "1775719461.306731"}
    )
    assert status == "processed"
    assert attempt.status == AttemptStatus.COMPLETED
    assert lead.status == LeadStatus.CONTACTED


def test_api_ref_id_is_kept_when_a_webhook_brings_another(session: Session) -> None:
    _, _, _, attempt = call_in_progress(session)
    attempt.ref_id = "from-the-api"
    deliver(session, for_attempt(attempt, HANGUP_ANSWERED))
    assert attempt.ref_id == "from-the-api"


@pytest.mark.parametrize(
    ("payload", "reason_words"),
    [
        pytest.param(
            {**HANGUP_ANSWERED, "custom_identifier": "c999999-l1-a1"}, "no attempt c999999-l1-a1", id="unknown"
        ),
        pytest.param({**HANGUP_ANSWERED, "custom_identifier": "order-42"}, "order-42", id="junk"),
        pytest.param({"call_status": "answered", "billsec": "3"}, "no custom_identifier", id="nothing"),
    ],
)
def test_uncorrelated_events_are_orphans_with_a_reason(
    session: Session, payload: dict[str, str], reason_words: str
) -> None:
    _, lead, _, attempt = call_in_progress(session)
    stored, status = deliver(session, payload)
    assert status == "orphan"
    event = session.get(WebhookEvent, stored.id)
    assert event is not None
    assert event.status == "orphan"
    assert event.attempt_id is None
    assert event.orphan_reason is not None and reason_words in event.orphan_reason
    assert attempt.status == AttemptStatus.ORIGINATED
    assert lead.status == LeadStatus.IN_CALL


def test_unrecognised_event_is_orphan_and_changes_nothing(session: Session) -> None:
    _, _, _, attempt = call_in_progress(session)
    stored, status = deliver(session, {"custom_identifier": attempt.custom_identifier, "call_status": "ringing"})
    assert status == "orphan"
    event = session.get(WebhookEvent, stored.id)
    assert event is not None and event.orphan_reason is not None and "ringing" in event.orphan_reason
    assert attempt.status == AttemptStatus.ORIGINATED


def test_processing_twice_is_a_no_op(session: Session) -> None:
    _, lead, _, attempt = call_in_progress(session)
    stored, _ = deliver(session, for_attempt(attempt, HANGUP_NO_ANSWER))
    attempts = lead.attempts
    again = process_event(session=session, event_id=stored.id, now=NOW, wrapup_seconds=WRAPUP, account_tz=ACCOUNT_TZ)
    assert again == "processed"
    assert lead.attempts == attempts == 1


# ---- forward only, any order, any number of copies ----------------------------------------------------------

FLOWS: dict[str, tuple[list[dict[str, str]], AttemptStatus, LeadStatus, int]] = {
    "answered": (
        [ANSWERED_BY_AGENT, ANSWERED_BY_CUSTOMER, HANGUP_ANSWERED],
        AttemptStatus.COMPLETED,
        LeadStatus.CONTACTED,
        1,
    ),
    "no-answer": (
        [ANSWERED_BY_AGENT, MISSED_BY_CUSTOMER, HANGUP_NO_ANSWER],
        AttemptStatus.NO_ANSWER,
        LeadStatus.PENDING,
        1,
    ),
}


@pytest.mark.parametrize("fast", [True, False], ids=["one-statement", "long-way"])
@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=lambda p: "-".join(map(str, p)))
@pytest.mark.parametrize("flow", list(FLOWS))
def test_any_order_with_duplicates_ends_in_the_same_state(
    session: Session, flow: str, order: tuple[int, ...], fast: bool
) -> None:
    events, attempt_status, lead_status, charged = FLOWS[flow]
    _, lead, agent, attempt = call_in_progress(session)
    payloads = [for_attempt(attempt, events[i]) for i in order]

    for payload in payloads:
        deliver(session, payload, fast=fast)
        deliver(session, payload, fast=fast)  # at-least-once delivery: byte-identical copies
    for payload in reversed(payloads):
        deliver(session, payload, fast=fast)
    reload(session, attempt, lead, agent)

    assert attempt.status == attempt_status
    assert lead.status == lead_status
    assert lead.attempts == charged
    assert attempt.charged is True
    assert agent.reserved_attempt_id is None
    rows = session.scalars(select(WebhookEvent).where(WebhookEvent.attempt_id == attempt.id)).all()
    assert len(rows) == 3
    assert sorted(r.copies for r in rows) == [3, 3, 3]
    assert {r.status for r in rows} == {"processed"}


# ---- what a hangup means for the agent and the lead -------------------------------------------------------


def test_hangup_frees_the_agent_after_wrapup_and_records_the_call(session: Session) -> None:
    _, lead, agent, attempt = call_in_progress(session)
    deliver(session, for_attempt(attempt, HANGUP_ANSWERED, recording_url="https://rec.example/1.mp3"))
    reload(session, agent, attempt, lead)

    assert agent.reserved_attempt_id is None
    assert agent.lease_until is None
    assert agent.available_at == NOW + dt.timedelta(seconds=WRAPUP)
    assert attempt.status == AttemptStatus.COMPLETED
    assert (attempt.billsec, attempt.duration, attempt.hangup_cause) == (11, 11, "NORMAL_CLEARING")
    assert attempt.recording_url == "https://rec.example/1.mp3"
    # end_stamp is in the account's zone (IST): 16:31 IST is 11:01 UTC.
    assert attempt.ended_at == dt.datetime(2026, 4, 8, 11, 1, tzinfo=dt.UTC)
    assert lead.status == LeadStatus.CONTACTED
    assert lead.attempts == 1
    assert lead.last_outcome == "completed"


def test_hangup_leaves_an_agent_that_another_call_now_holds(session: Session) -> None:
    campaign, _, agent, attempt = call_in_progress(session)
    (other_lead,) = add_leads(session, campaign)
    # The lease ran out and the agent was handed another call before this hangup came.
    other = make_attempt(session, campaign=campaign, lead=other_lead, agent=agent)
    deliver(session, for_attempt(attempt, HANGUP_ANSWERED))
    reload(session, agent)
    assert agent.reserved_attempt_id == other.id
    assert agent.available_at is None


def test_no_answer_retries_after_the_policy_delay_and_counts(session: Session) -> None:
    _, lead, _, attempt = call_in_progress(session, retry_policy={"no_answer": {"delay": "20m"}})
    deliver(session, for_attempt(attempt, HANGUP_NO_ANSWER))
    reload(session, lead, attempt)
    assert attempt.status == AttemptStatus.NO_ANSWER
    assert lead.status == LeadStatus.PENDING
    assert lead.next_attempt_at == NOW + dt.timedelta(minutes=20)
    assert lead.attempts == 1
    assert attempt.charged is True
    assert lead.last_outcome == "no_answer"


def test_no_answer_default_delay(session: Session) -> None:
    _, lead, _, attempt = call_in_progress(session)
    deliver(session, for_attempt(attempt, HANGUP_NO_ANSWER))
    reload(session, lead)
    assert lead.next_attempt_at == NOW + dt.timedelta(hours=1)


def test_agent_missed_does_not_count_against_the_lead(session: Session) -> None:
    _, lead, _, attempt = call_in_progress(session, lead_attempts=1)
    deliver(session, for_attempt(attempt, HANGUP_AGENT_MISSED))
    reload(session, lead, attempt)
    assert attempt.status == AttemptStatus.AGENT_MISSED
    assert attempt.charged is False
    assert lead.attempts == 1
    assert lead.status == LeadStatus.PENDING
    assert lead.next_attempt_at == NOW + dt.timedelta(seconds=60)


def test_agent_missed_on_the_last_attempt_does_not_exhaust(session: Session) -> None:
    _, lead, _, attempt = call_in_progress(session, lead_attempts=2, max_attempts=3)
    deliver(session, for_attempt(attempt, HANGUP_AGENT_MISSED))
    reload(session, lead)
    assert lead.status == LeadStatus.PENDING
    assert lead.attempts == 2


def test_last_allowed_attempt_exhausts_the_lead(session: Session) -> None:
    _, lead, _, attempt = call_in_progress(session, lead_attempts=2, max_attempts=3)
    deliver(session, for_attempt(attempt, HANGUP_BUSY))
    reload(session, lead, attempt)
    assert attempt.status == AttemptStatus.BUSY
    assert lead.attempts == 3
    assert lead.status == LeadStatus.EXHAUSTED


def test_policy_can_make_busy_free(session: Session) -> None:
    _, lead, _, attempt = call_in_progress(session, retry_policy={"busy": {"counts": False, "delay": 300}})
    deliver(session, for_attempt(attempt, HANGUP_BUSY))
    reload(session, lead)
    assert lead.attempts == 0
    assert lead.next_attempt_at == NOW + dt.timedelta(seconds=300)


def test_failed_number_hangup(session: Session) -> None:
    _, lead, _, attempt = call_in_progress(session)
    deliver(session, for_attempt(attempt, HANGUP_BUSY, hangup_cause_key="UNALLOCATED_NUMBER", reason_key="Call Failed"))
    reload(session, lead, attempt)
    assert attempt.status == AttemptStatus.FAILED
    assert lead.attempts == 1
    assert lead.status == LeadStatus.PENDING


def test_hangup_settles_an_ambiguous_attempt(session: Session) -> None:
    _, lead, _, attempt = call_in_progress(session, status=AttemptStatus.AMBIGUOUS)
    deliver(session, for_attempt(attempt, HANGUP_ANSWERED))
    assert attempt.status == AttemptStatus.COMPLETED
    assert lead.status == LeadStatus.CONTACTED


@pytest.mark.parametrize("fast", [True, False], ids=["one-statement", "long-way"])
def test_answer_events_do_not_reopen_a_settled_attempt(session: Session, fast: bool) -> None:
    _, lead, agent, attempt = call_in_progress(session)
    deliver(session, for_attempt(attempt, HANGUP_NO_ANSWER))
    reload(session, agent)
    available_at = agent.available_at
    deliver(session, for_attempt(attempt, ANSWERED_BY_AGENT, uuid="other"), fast=fast)
    deliver(session, for_attempt(attempt, ANSWERED_BY_CUSTOMER, uuid="other"), fast=fast)
    deliver(session, for_attempt(attempt, HANGUP_ANSWERED, uuid="other"), now=NOW + dt.timedelta(minutes=5))
    reload(session, attempt, lead, agent)
    assert attempt.status == AttemptStatus.NO_ANSWER
    assert lead.status == LeadStatus.PENDING
    assert lead.attempts == 1
    assert agent.available_at == available_at


def test_busy_hangup_without_ring_time_fields_is_busy() -> None:
    fields = {"call_status": "missed", "hangup_cause_key": "USER_BUSY", "duration": "12", "billsec": "0"}
    assert event_kind(fields) == "hangup"
    assert hangup_outcome(fields) == AttemptStatus.BUSY
