"""The HTTP surface: webhook authentication and parsing, the REST API's token and round trip."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from dialer.config import get_settings
from dialer.db import session_scope
from dialer.models import CallAttempt, WebhookEvent
from dialer.states import AttemptStatus

WEBHOOK_TOKEN = "hook-secret-123"
API_TOKEN = "api-secret-456"


@pytest.fixture
def client(clean_db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("DIALER_WEBHOOK_TOKEN", WEBHOOK_TOKEN)
    monkeypatch.setenv("DIALER_API_TOKEN", API_TOKEN)
    get_settings.cache_clear()
    from dialer.web.app import create_app

    with TestClient(create_app()) as c:
        yield c
    get_settings.cache_clear()


def _events() -> list[WebhookEvent]:
    with session_scope() as s:
        return list(s.scalars(sa.select(WebhookEvent)))


HANGUP = {
    "uuid": "69d75426f0a9f",
    "custom_identifier": "c1-l1-a1",
    "call_status": "answered",
    "billsec": "11",
    "end_stamp": "2026-04-09 12:55:00",
}


def test_webhook_without_token_is_refused_and_changes_nothing(client: TestClient) -> None:
    r = client.post("/webhooks/acefone", json=HANGUP)
    assert r.status_code == 401
    r = client.post("/webhooks/acefone", json=HANGUP, headers={"X-Webhook-Token": "wrong"})
    assert r.status_code == 401
    assert _events() == []


def test_unparseable_body_gets_400_with_the_reason(client: TestClient) -> None:
    r = client.post(
        f"/webhooks/acefone?token={WEBHOOK_TOKEN}", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]
    # Kept as evidence, never processed.
    [event] = _events()
    assert (event.status, event.body, event.attempt_id) == ("unparseable", "{not json", None)


def test_unknown_call_is_stored_as_orphan_and_answered_200(client: TestClient) -> None:
    r = client.post("/webhooks/acefone", json=HANGUP, headers={"X-Webhook-Token": WEBHOOK_TOKEN})
    assert r.status_code == 200
    assert r.json()["status"] == "orphan"
    [event] = _events()
    assert event.orphan_reason == "no attempt c1-l1-a1"
    assert "x-webhook-token" not in {k.lower() for k in event.headers}


def test_form_body_and_token_in_query_are_accepted(client: TestClient) -> None:
    r = client.post(f"/webhooks/acefone?token={WEBHOOK_TOKEN}", data=HANGUP)
    assert r.status_code == 200
    [event] = _events()
    assert event.fields["billsec"] == "11"
    assert WEBHOOK_TOKEN not in json.dumps(event.headers)


def test_duplicate_webhook_is_stored_once(client: TestClient) -> None:
    for _ in range(3):
        assert (
            client.post("/webhooks/acefone", json=HANGUP, headers={"X-Webhook-Token": WEBHOOK_TOKEN}).status_code == 200
        )
    [event] = _events()
    assert event.copies == 3


def test_api_requires_the_bearer_token(client: TestClient) -> None:
    assert client.get("/api/campaigns").status_code == 401
    assert client.get("/api/campaigns", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/campaigns", headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200


@pytest.mark.parametrize("number", ["\x00", "0" * 33, "ext 101"])
def test_api_refuses_an_agent_number_that_is_not_one(client: TestClient, number: str) -> None:
    r = client.post(
        "/api/campaigns",
        json={"name": "api", "caller_id": "+441134960000", "agents": ["101", number]},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert r.status_code == 422
    assert "neither an extension nor a phone number" in r.json()["detail"]
    assert client.get("/api/campaigns", headers={"Authorization": f"Bearer {API_TOKEN}"}).json() == []


def test_api_round_trip_create_upload_start_report(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    r = client.post(
        "/api/campaigns",
        json={"name": "api", "caller_id": "+441134960000", "agents": ["+442079460001"]},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    csv_text = "name,phone\nAnn,07700 900001\nBob,07700 900002\nBad,12\n"
    r = client.post(f"/api/campaigns/{cid}/leads", files={"file": ("leads.csv", csv_text)}, headers=auth)
    assert r.status_code == 200, r.text
    assert (r.json()["accepted"], r.json()["rejected"]) == (2, 1)
    assert client.post(f"/api/campaigns/{cid}/start", headers=auth).json()["state"] == "running"
    assert client.post(f"/api/campaigns/{cid}/start", headers=auth).status_code == 409
    report = client.get(f"/api/campaigns/{cid}/report", headers=auth).json()
    assert report["leads"]["pending"] == 2
    assert report["attempts"] == 0
    assert client.get("/api/campaigns/999/report", headers=auth).status_code == 404
    csv_out = client.get(f"/api/campaigns/{cid}/report.csv", headers=auth).text
    assert "'+447700900001" in csv_out


def test_healthz_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"ok": True}
    assert "dialer_webhooks_total" in client.get("/metrics").text


def test_get_webhook_with_a_templated_key_is_mapped_and_listed_as_orphan(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIALER_WEBHOOK_FIELD_MAP", '{"custom_identifier": "cid"}')
    get_settings.cache_clear()
    r = client.get(f"/webhooks/acefone?token={WEBHOOK_TOKEN}&cid=c7-l7-a1&call_status=answered&billsec=3")
    assert r.status_code == 200 and r.json()["status"] == "orphan"
    [event] = _events()
    assert event.fields == {"custom_identifier": "c7-l7-a1", "call_status": "answered", "billsec": "3"}
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    orphans = client.get("/api/events?orphans=true", headers=auth).json()
    assert [(o["custom_identifier"], o["orphan_reason"]) for o in orphans] == [("c7-l7-a1", "no attempt c7-l7-a1")]
    assert client.get("/api/events").status_code == 401


def _attempt_in_progress(*, ref_id: str | None = None) -> tuple[int, str]:
    from factories import add_leads, agents_of, make_attempt, make_campaign

    with session_scope() as s:
        campaign = make_campaign(s)
        (lead,) = add_leads(s, campaign)
        (agent,) = agents_of(campaign)
        attempt = make_attempt(s, campaign=campaign, lead=lead, agent=agent, ref_id=ref_id)
        return attempt.id, attempt.custom_identifier


def _attempt(attempt_id: int) -> CallAttempt:
    with session_scope() as s:
        attempt = s.get(CallAttempt, attempt_id)
        assert attempt is not None
        s.expunge(attempt)
        return attempt


def _post(client: TestClient, fields: dict[str, str], *, form: bool = False) -> dict[str, object]:
    headers = {"X-Webhook-Token": WEBHOOK_TOKEN}
    r = (
        client.post("/webhooks/acefone", data=fields, headers=headers)
        if form
        else client.post("/webhooks/acefone", json=fields, headers=headers)
    )
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_answer_events_move_the_call_forward_and_copies_change_nothing(client: TestClient) -> None:
    attempt_id, identifier = _attempt_in_progress()
    agent_answered = {"custom_identifier": identifier, "call_status": "Answered by agent", "uuid": "u-1"}
    assert _post(client, agent_answered)["status"] == "processed"
    attempt = _attempt(attempt_id)
    assert (attempt.status, attempt.uuid) == (AttemptStatus.AGENT_ANSWERED, "u-1")
    assert _post(client, agent_answered)["duplicate"] is True
    customer = {"custom_identifier": identifier, "call_status": "Answered by customer", "call_id": "c-1"}
    assert _post(client, customer, form=True)["status"] == "processed"
    attempt = _attempt(attempt_id)
    assert (attempt.status, attempt.uuid, attempt.call_id) == (AttemptStatus.CUSTOMER_ANSWERED, "u-1", "c-1")
    # A late agent answer (another uuid) neither moves the call back nor replaces a learned id.
    assert _post(client, {**agent_answered, "uuid": "u-2"})["status"] == "processed"
    attempt = _attempt(attempt_id)
    assert (attempt.status, attempt.uuid) == (AttemptStatus.CUSTOMER_ANSWERED, "u-1")
    events = sorted(_events(), key=lambda e: e.id)
    assert [(e.kind, e.status, e.attempt_id, e.copies) for e in events] == [
        ("agent_answered", "processed", attempt_id, 2),
        ("customer_answered", "processed", attempt_id, 1),
        ("agent_answered", "processed", attempt_id, 1),
    ]


def test_a_missed_customer_leg_records_its_cause_once(client: TestClient) -> None:
    attempt_id, identifier = _attempt_in_progress()
    missed = {"custom_identifier": identifier, "call_status": "missed", "hangup_cause_key": "NO_ANSWER"}
    assert _post(client, missed)["status"] == "processed"
    assert _post(client, {**missed, "hangup_cause_key": "USER_BUSY"})["status"] == "processed"
    attempt = _attempt(attempt_id)
    assert (attempt.status, attempt.hangup_cause) == (AttemptStatus.ORIGINATED, "NO_ANSWER")


def test_an_answer_whose_identifier_matches_nothing_is_correlated_by_ref_id(client: TestClient) -> None:
    attempt_id, _ = _attempt_in_progress(ref_id="ref-9")
    event = {"custom_identifier": "c1-l99-a1", "ref_id": "ref-9", "call_status": "Answered by agent"}
    assert _post(client, event)["status"] == "processed"
    assert _attempt(attempt_id).status == AttemptStatus.AGENT_ANSWERED
    [stored] = _events()
    assert (stored.status, stored.attempt_id) == ("processed", attempt_id)


def test_an_answer_naming_a_campaign_beyond_any_id_is_an_orphan_not_an_error(client: TestClient) -> None:
    body = _post(client, {"custom_identifier": "c99999999999-l1-a1", "call_status": "Answered by agent"})
    assert body["status"] == "orphan"
    [stored] = _events()
    assert stored.orphan_reason == "no attempt c99999999999-l1-a1"


def test_when_the_one_statement_path_fails_the_event_is_stored_and_processed_the_long_way(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dialer.webhooks

    def broken(**_: object) -> None:
        raise sa.exc.OperationalError("WITH moved AS ...", {}, Exception("deadlock detected"))

    monkeypatch.setattr(dialer.webhooks, "store_progress", broken)
    attempt_id, identifier = _attempt_in_progress()
    assert _post(client, {"custom_identifier": identifier, "call_status": "Answered by agent"})["status"] == "processed"
    assert _attempt(attempt_id).status == AttemptStatus.AGENT_ANSWERED
    [stored] = _events()
    assert (stored.status, stored.copies) == ("processed", 1)


def test_a_hangup_whose_processing_fails_is_kept_pending_and_changes_nothing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both tries fail: the fast one (no savepoint) rolls back whole, the long one keeps the event.
    import dialer.webhooks

    def broken(*_: object) -> None:
        raise RuntimeError("a bug in settling")

    monkeypatch.setattr(dialer.webhooks, "_settle_from_hangup", broken)
    attempt_id, identifier = _attempt_in_progress()
    assert _post(client, {**HANGUP, "custom_identifier": identifier})["status"] == "pending"
    assert _attempt(attempt_id).status == AttemptStatus.ORIGINATED
    [stored] = _events()
    assert (stored.status, stored.copies, stored.custom_identifier) == ("pending", 1, identifier)


def test_blocking_requests_run_no_wider_than_the_connection_pool(
    clean_db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each webhook or API thread holds a database connection: with more threads than the pool
    # keeps, every burst would open (and close) a connection per request beyond it.
    import anyio.to_thread

    from dialer.web.app import create_app

    monkeypatch.setenv("DIALER_DB_POOL_SIZE", "7")
    get_settings.cache_clear()
    try:
        with TestClient(create_app()) as c:
            assert c.portal is not None
            assert c.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens) == 7
    finally:
        get_settings.cache_clear()
