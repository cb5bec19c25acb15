"""The HTTP surface: webhook authentication and parsing, the REST API's token and round trip."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from dialer.config import get_settings
from dialer.db import session_scope
from dialer.models import WebhookEvent

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
