"""The REST API against its own OpenAPI document: schemathesis generates requests for every operation.

Every response must be no 5xx, carry a status code and content type the schema declares, and match
the declared response model. Seeded with a draft and a running campaign with leads, so ids like 1
exist and the generated cases reach the handlers, not only the 404s.
"""

from __future__ import annotations

from collections.abc import Iterator

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

API_TOKEN = "schema-api-token-789"
WEBHOOK_TOKEN = "schema-hook-token-789"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# The schema is read once at collection; settings are read per request, so the fixture's tokens apply.
# (schemathesis.pytest.from_fixture would defer this, but its lazy loader reads a private pytest
# attribute that pytest 9 no longer has.)
from dialer.web.app import create_app  # noqa: E402

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
