"""Hostile webhooks: never a 5xx, never a state change from an unauthenticated or unreadable event."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from factories import ALL_DAYS, ALWAYS, add_leads, agents_of, make_attempt, make_campaign
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from dialer.config import get_settings
from dialer.models import CallAttempt, Lead, WebhookEvent

TOKEN = "fuzz-hook-token"
EXAMPLES = int(os.environ.get("DIALER_FUZZ_EXAMPLES", "150"))

KEYS = [
    "custom_identifier",
    "call_status",
    "billsec",
    "uuid",
    "call_id",
    "ref_id",
    "hangup_cause_key",
    "reason_key",
    "end_stamp",
    "answered_agent",
    "missed_agent",
    "call_connected",
    "customer_ring_time",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "$custom_identifier",
            "$billsec",
            "answered",
            "missed",
            "c1-l1-a1",
            "c999-l1-a1",
            "99999999999999999999",
            "\x00",
            "2026-13-45 99:99:99",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
payloads = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=12)), values, max_size=10)
raw_bodies = st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode))


@pytest.fixture(scope="module")
def client(engine: sa.Engine) -> Iterator[TestClient]:
    mp = pytest.MonkeyPatch()
    mp.setenv("DIALER_WEBHOOK_TOKEN", TOKEN)
    mp.setenv("DIALER_API_TOKEN", "fuzz-api-token")
    get_settings.cache_clear()
    from dialer.web.app import create_app

    with TestClient(create_app()) as c:
        yield c
    mp.undo()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def live_call(engine: sa.Engine) -> Iterator[tuple[int, int]]:
    """A real call in progress, c<id>-l<id>-a1, that hostile events may aim at."""
    with Session(engine) as s, s.begin():
        campaign = make_campaign(s, agents=1, window=ALWAYS, days=ALL_DAYS)
        (lead,) = add_leads(s, campaign)
        attempt = make_attempt(s, campaign=campaign, lead=lead, agent=agents_of(campaign)[0])
        ids = (attempt.id, lead.id)
    yield ids
    from dialer.models import Base

    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as c:
        c.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def _state(engine: sa.Engine, attempt_id: int, lead_id: int) -> tuple[object, ...]:
    with Session(engine) as s:
        a, ld = s.get(CallAttempt, attempt_id), s.get(Lead, lead_id)
        assert a is not None and ld is not None
        return (a.status, ld.status, ld.attempts, s.scalar(sa.select(sa.func.count()).select_from(WebhookEvent)))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=payloads, as_form=st.booleans())
def test_authenticated_junk_is_stored_and_never_a_5xx(
    client: TestClient, engine: sa.Engine, payload: dict, as_form: bool
) -> None:  # type: ignore[type-arg]
    with Session(engine) as s:
        before = s.scalar(sa.select(sa.func.count()).select_from(WebhookEvent)) or 0
    if as_form:
        body = urlencode({k: json.dumps(v) if not isinstance(v, str) else v for k, v in payload.items()}).encode()
        headers = {"content-type": "application/x-www-form-urlencoded", "X-Webhook-Token": TOKEN}
    else:
        body, headers = json.dumps(payload).encode(), {"content-type": "application/json", "X-Webhook-Token": TOKEN}
    r = client.post("/webhooks/acefone", content=body, headers=headers)
    assert r.status_code < 500, r.text
    with Session(engine) as s:
        after = s.scalar(sa.select(sa.func.count(WebhookEvent.id))) or 0
        copies = s.scalar(sa.select(sa.func.sum(WebhookEvent.copies))) or 0
    assert after >= before and copies >= 1  # stored (or counted as a copy of an identical event)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=raw_bodies, ctype=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", ""])
)
def test_unreadable_bodies_change_nothing(
    client: TestClient, engine: sa.Engine, live_call: tuple[int, int], body: bytes, ctype: str
) -> None:
    before = _state(engine, *live_call)
    r = client.post("/webhooks/acefone", content=body, headers={"content-type": ctype, "X-Webhook-Token": TOKEN})
    assert r.status_code < 500, r.text
    after = _state(engine, *live_call)
    if r.status_code == 400:
        assert after[:3] == before[:3]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=payloads,
    token=st.one_of(st.none(), st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20)),
)
def test_unauthenticated_events_are_refused_and_change_nothing(
    client: TestClient,
    engine: sa.Engine,
    live_call: tuple[int, int],
    payload: dict,
    token: str | None,  # type: ignore[type-arg]
) -> None:
    attempt_id, lead_id = live_call
    with Session(engine) as s:
        identifier = s.get(CallAttempt, attempt_id).custom_identifier  # type: ignore[union-attr]
    hangup = {**payload, "custom_identifier": identifier, "call_status": "answered", "billsec": "9"}
    before = _state(engine, *live_call)
    headers = {"X-Webhook-Token": token} if token is not None and token != TOKEN else {}
    r = client.post("/webhooks/acefone", json=hangup, headers=headers)
    assert r.status_code == 401
    assert _state(engine, *live_call) == before
