"""The REST API against its own OpenAPI document: schemathesis generates requests for every operation.

Every response must be no 5xx, carry a status code and content type the schema declares, and match
the declared response model. Seeded with a draft and a running campaign with leads, so ids like 1
exist and the generated cases reach the handlers, not only the 404s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from factories import add_leads, make_campaign
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dialer.config import get_settings
from dialer.db import session_scope
from dialer.models import CampaignState
from dialer.web.app import create_app

API_TOKEN = "schema-api-token-789"
WEBHOOK_TOKEN = "schema-hook-token-789"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# The schema is read once at collection; settings are read per request, so the fixture's tokens apply.
# (schemathesis.pytest.from_fixture would defer this, but its lazy loader reads a private pytest
# attribute that pytest 9 no longer has.)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


@pytest.fixture(autouse=True)
def seeded(clean_db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DIALER_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("DIALER_WEBHOOK_TOKEN", WEBHOOK_TOKEN)
    get_settings.cache_clear()
    with session_scope() as s:
        running = make_campaign(s, state=CampaignState.RUNNING)
        add_leads(s, running, 3)
        draft = make_campaign(s, state=CampaignState.DRAFT)
        add_leads(s, draft, 2)
    yield
    get_settings.cache_clear()


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_every_operation_answers_as_its_schema_says(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {API_TOKEN}"}, checks=CHECKS)


# Generated ids seldom land on the seeded ones, so the success and conflict answers of the state-changing
# operations are driven once by hand, through the same checks.
SCENARIO: list[tuple[str, str, dict[str, Any], int]] = [
    ("POST", "/api/campaigns/{campaign_id}/{action}", {"path_parameters": {"campaign_id": 2, "action": "start"}}, 200),
    ("POST", "/api/campaigns/{campaign_id}/{action}", {"path_parameters": {"campaign_id": 1, "action": "pause"}}, 200),
    ("POST", "/api/campaigns/{campaign_id}/{action}", {"path_parameters": {"campaign_id": 1, "action": "pause"}}, 409),
    ("POST", "/api/campaigns/{campaign_id}/{action}", {"path_parameters": {"campaign_id": 1, "action": "resume"}}, 200),
    ("POST", "/api/campaigns/{campaign_id}/{action}", {"path_parameters": {"campaign_id": 1, "action": "cancel"}}, 200),
    ("POST", "/api/campaigns/{campaign_id}/{action}", {"path_parameters": {"campaign_id": 1, "action": "nap"}}, 404),
    (
        "POST",
        "/api/campaigns/{campaign_id}/leads",
        {
            "path_parameters": {"campaign_id": 2},
            "body": {"file": b"phone\n+447700900123\nnot a number\n"},
            "media_type": "multipart/form-data",
        },
        200,
    ),
    (
        "POST",
        "/api/leads/{lead_id}/callback",
        {"path_parameters": {"lead_id": 4}, "query": {"at": "2999-01-01T10:00"}},
        200,
    ),
    (
        "POST",
        "/api/leads/{lead_id}/callback",
        {"path_parameters": {"lead_id": 4}, "query": {"at": "2000-01-01T10:00"}},
        422,
    ),
    ("POST", "/api/dnc", {"body": ["+447700900456"], "media_type": "application/json"}, 200),
    ("GET", "/api/dnc", {}, 200),
    ("GET", "/api/campaigns/{campaign_id}/report", {"path_parameters": {"campaign_id": 2}}, 200),
]


def test_seeded_campaigns_answer_as_the_schema_says() -> None:
    for method, path, kwargs, expected in SCENARIO:
        case = schema[path][method].Case(**kwargs)
        response = case.call_and_validate(headers={"Authorization": f"Bearer {API_TOKEN}"}, checks=CHECKS)
        assert response.status_code == expected, (method, path, kwargs, response.text)
    refused = schema["/api/campaigns"]["GET"].Case().call_and_validate(checks=CHECKS)
    assert refused.status_code == 401
