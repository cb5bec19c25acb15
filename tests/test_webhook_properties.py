"""Property: any order, any duplication, any JSON/form mix and either receiving path of a call's events ends in one state."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from factories import WED_NOON_LONDON, add_leads, agents_of, make_attempt, make_campaign
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from dialer.models import Agent, CallAttempt, Lead
from dialer.webhooks import RawEvent, apply_field_map, parse_body, receive_event


def _events(identifier: str, outcome: str) -> list[dict[str, Any]]:
    common = {"uuid": "69d75426f0a9f", "call_id": "1775719461.306731", "custom_identifier": identifier}
    agent = {**common, "call_status": "Answered by agent", "direction": "click_to_call", "ref_id": "$ref_id"}
    if outcome == "answered":
        middle = {**common, "call_status": "Answered by customer", "direction": "click_to_call"}
        hangup = {
            **common,
            "call_status": "answered",
            "billsec": "31",
            "duration": "40",
            "hangup_cause_key": "NORMAL_CLEARING",
            "call_connected": "1",
            "end_stamp": "2026-04-08 16:31:00",
        }
    else:
        cause = "USER_BUSY" if outcome == "busy" else "NO_ANSWER"
        middle = {
            **common,
            "call_status": "missed",
            "direction": "clicktocall",
            "call_connected": "1",
            "hangup_cause_key": cause,
            "reason_key": "busy" if outcome == "busy" else "noanswer",
        }
        hangup = {
            **common,
            "call_status": "missed",
            "billsec": "0",
            "duration": "25",
            "call_connected": "1",
            "hangup_cause_key": cause,
            "answered_agent": json.dumps({"number": "+442079460001"}),
            "end_stamp": "2026-04-08 16:31:00",
        }
    return [agent, middle, hangup]


def _deliver(session: Session, event: dict[str, Any], as_form: bool, fast: bool) -> None:
    """Receive one event as the web does; `fast` lets a progress event take the one-statement path."""
    if as_form:
        body, ctype = urlencode(event).encode(), "application/x-www-form-urlencoded"
    else:
        body, ctype = json.dumps(event).encode(), "application/json"
    fields = parse_body(method="POST", content_type=ctype, body=body, query={})
    receive_event(
        session=session,
        event=RawEvent("POST", ctype, {}, body, fields),
        process=True,
        fast=fast,
        now=WED_NOON_LONDON,
        wrapup_seconds=5,
        account_tz="Asia/Kolkata",
    )


def _final(session: Session, outcome: str, deliveries: list[tuple[int, bool, bool]]) -> tuple[Any, ...]:
    campaign = make_campaign(session, max_attempts=3)
    (lead,) = add_leads(session, campaign)
    (agent,) = agents_of(campaign)
    attempt = make_attempt(session, campaign=campaign, lead=lead, agent=agent)
    events = _events(attempt.custom_identifier, outcome)
    for index, as_form, fast in deliveries:
        _deliver(session, events[index], as_form, fast)
    session.flush()
    a, ld, ag = session.get(CallAttempt, attempt.id), session.get(Lead, lead.id), session.get(Agent, agent.id)
    assert a is not None and ld is not None and ag is not None
    return (a.status, a.billsec, a.hangup_cause, ld.status, ld.attempts, ld.last_outcome, ag.reserved_attempt_id)


deliveries = st.lists(st.tuples(st.integers(0, 2), st.booleans(), st.booleans()), min_size=3, max_size=14).filter(
    lambda d: {i for i, _, _ in d} == {0, 1, 2}
)


@pytest.mark.parametrize("outcome", ["answered", "busy", "no_answer"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=deliveries)
def test_any_order_duplication_and_encoding_gives_the_same_final_state(
    session: Session, outcome: str, order: list[tuple[int, bool, bool]]
) -> None:
    expected = _final(session, outcome, [(0, False, False), (1, False, False), (2, False, False)])
    assert _final(session, outcome, order) == expected


def test_a_templated_key_is_mapped_back_to_acefones_name() -> None:
    fields = {"cid": "c1-l2-a3", "status": "answered", "billsec": "5"}
    mapped = apply_field_map(fields, {"custom_identifier": "cid", "call_status": "status"})
    assert mapped == {"custom_identifier": "c1-l2-a3", "call_status": "answered", "billsec": "5"}
    assert apply_field_map(fields, {}) is fields
