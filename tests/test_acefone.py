"""The Acefone client: the request it sends, and how every response or transport error is classified."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from dialer.acefone import AcefoneClient, DialRequest, DialResult, FailureReason, ResultKind

TOKEN = "tok-VERY-secret-0123456789"
BASE_URL = "https://api-account-uk.acefone.test"

Handler = Callable[[httpx.Request], httpx.Response]


def dial_request(**overrides: Any) -> DialRequest:
    values: dict[str, Any] = {
        "agent_number": "+442070000101",
        "destination_number": "+447700900123",
        "caller_id": "+442071234567",
        "custom_identifier": "c12-l30567-a2",
        "call_timeout": 300,
    }
    values.update(overrides)
    return DialRequest(**values)


@pytest.fixture
def make_client() -> Iterator[Callable[..., AcefoneClient]]:
    clients: list[AcefoneClient] = []

    def build(handler: Handler, base_url: str = BASE_URL) -> AcefoneClient:
        client = AcefoneClient(base_url=base_url, token=SecretStr(TOKEN), transport=httpx.MockTransport(handler))
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


def call_with(make_client: Callable[..., AcefoneClient], handler: Handler) -> DialResult:
    return make_client(handler).click_to_call(dial_request())


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, headers=headers)
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


def raise_(exc_type: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("simulated", request=request)

    return handler


# ---- the request ----------------------------------------------------------------------------


@pytest.mark.parametrize("base_url", [BASE_URL, BASE_URL + "/"])
def test_request_is_a_bearer_json_post_to_click_to_call_on_the_configured_host(
    make_client: Callable[..., AcefoneClient], base_url: str
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True, "message": "Originate successfully queued"})

    make_client(handler, base_url).click_to_call(dial_request())

    assert len(seen) == 1
    sent = seen[0]
    assert sent.method == "POST"
    assert str(sent.url) == "https://api-account-uk.acefone.test/v1/click_to_call"
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["accept"] == "application/json"
    assert json.loads(sent.content) == {
        "agent_number": "+442070000101",
        "destination_number": "+447700900123",
        "caller_id": "+442071234567",
        "async": "1",
        "call_timeout": 300,
        "custom_identifier": "c12-l30567-a2",
        "get_call_id": 1,
    }


def test_host_is_configuration_not_hard_coded(make_client: Callable[..., AcefoneClient]) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"success": True})

    make_client(handler, "https://api-smartflo.tatateleservices.test").click_to_call(dial_request())
    assert seen == ["https://api-smartflo.tatateleservices.test/v1/click_to_call"]


def test_body_types_match_the_api_table() -> None:
    body = dial_request(call_timeout=45, async_mode=False, get_call_id=False).body()
    assert body["async"] == "0" and isinstance(body["async"], str)
    assert body["get_call_id"] == 0 and isinstance(body["get_call_id"], int)
    assert body["call_timeout"] == 45 and isinstance(body["call_timeout"], int)


# ---- classification of responses ---------------------------------------------------------------


def test_success_is_originated_with_ref_id_and_null_call_id_stays_none(
    make_client: Callable[..., AcefoneClient],
) -> None:
    body = {
        "success": True,
        "message": "Originate successfully queued",
        "ref_id": "02b6990a-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
        "call_id": None,
    }
    result = call_with(make_client, reply(200, body))
    assert result.kind == ResultKind.ORIGINATED
    assert result.status_code == 200
    assert result.ref_id == "02b6990a-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    assert result.call_id is None
    assert result.reason is None


def test_success_with_call_id_keeps_it(make_client: Callable[..., AcefoneClient]) -> None:
    body = {"success": True, "message": "Call originated successfully", "ref_id": "r-1", "call_id": "1775719461.306731"}
    result = call_with(make_client, reply(200, body))
    assert (result.kind, result.ref_id, result.call_id) == (ResultKind.ORIGINATED, "r-1", "1775719461.306731")


def test_200_with_success_false_is_failed(make_client: Callable[..., AcefoneClient]) -> None:
    result = call_with(make_client, reply(200, {"success": False, "message": "Something went wrong"}))
    assert result.kind == ResultKind.FAILED
    assert result.message == "Something went wrong"


def test_200_that_cannot_be_read_is_ambiguous(make_client: Callable[..., AcefoneClient]) -> None:
    result = call_with(make_client, reply(200, "<html>gateway</html>"))
    assert result.kind == ResultKind.AMBIGUOUS


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("Please provide a valid caller_id.", FailureReason.INVALID_CALLER_ID),
        ("Agent is offline.", FailureReason.AGENT_OFFLINE),
        ("Agent is not available", FailureReason.AGENT_OFFLINE),
        ("Please provide a valid destination_number.", FailureReason.INVALID_NUMBER),
        ("Please provide a valid request body.", FailureReason.OTHER),
    ],
)
def test_400_is_failed_with_the_reason_from_the_message(
    make_client: Callable[..., AcefoneClient], message: str, reason: FailureReason
) -> None:
    result = call_with(make_client, reply(400, {"success": False, "message": message}))
    assert result.kind == ResultKind.FAILED
    assert result.status_code == 400
    assert result.reason == reason
    assert result.message == message


@pytest.mark.parametrize("message", ["Please provide a valid agent_number.", "Agent number is busy"])
def test_agent_problems_are_not_blamed_on_the_lead(make_client: Callable[..., AcefoneClient], message: str) -> None:
    # Regression: "valid agent_number" once read as INVALID_NUMBER, which marked the LEAD invalid.
    result = call_with(make_client, reply(400, {"success": False, "message": message}))
    assert result.kind == ResultKind.FAILED
    assert result.reason not in (FailureReason.INVALID_NUMBER, FailureReason.OTHER)


def test_401_is_unauthorized_and_never_echoes_the_token(make_client: Callable[..., AcefoneClient]) -> None:
    result = call_with(make_client, reply(401, {"success": False, "message": f"Invalid token {TOKEN}"}))
    assert result.kind == ResultKind.FAILED
    assert result.reason == FailureReason.UNAUTHORIZED
    assert result.status_code == 401
    assert TOKEN not in result.message
    assert TOKEN not in repr(result)
    assert result.message  # says what to fix


def test_429_with_retry_after_seconds_is_retry(make_client: Callable[..., AcefoneClient]) -> None:
    result = call_with(make_client, reply(429, {"message": "Too Many Requests"}, {"Retry-After": "7"}))
    assert result.kind == ResultKind.RETRY
    assert result.reason == FailureReason.RATE_LIMITED
    assert result.retry_after == 7.0


def test_429_without_retry_after_is_retry_with_no_hint(make_client: Callable[..., AcefoneClient]) -> None:
    result = call_with(make_client, reply(429))
    assert result.kind == ResultKind.RETRY
    assert result.reason == FailureReason.RATE_LIMITED
    assert result.retry_after is None


def test_429_with_retry_after_http_date(make_client: Callable[..., AcefoneClient]) -> None:
    when = format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), usegmt=True)
    result = call_with(make_client, reply(429, None, {"Retry-After": when}))
    assert result.kind == ResultKind.RETRY
    assert result.retry_after is not None
    assert 3000 < result.retry_after <= 3600


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_after_sending_is_ambiguous(make_client: Callable[..., AcefoneClient], status: int) -> None:
    result = call_with(make_client, reply(status, "<html>upstream error</html>"))
    assert result.kind == ResultKind.AMBIGUOUS
    assert result.status_code == status


def test_5xx_is_ambiguous_even_when_the_body_claims_success(make_client: Callable[..., AcefoneClient]) -> None:
    result = call_with(make_client, reply(502, {"success": True}))
    assert result.kind == ResultKind.AMBIGUOUS


# ---- classification of transport errors ----------------------------------------------------------


@pytest.mark.parametrize(
    "exc_type", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError]
)
def test_errors_after_the_request_left_are_ambiguous(
    make_client: Callable[..., AcefoneClient], exc_type: type[httpx.TransportError]
) -> None:
    result = call_with(make_client, raise_(exc_type))
    assert result.kind == ResultKind.AMBIGUOUS
    assert result.status_code is None
    assert TOKEN not in result.message


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_errors_before_anything_was_sent_are_retry(
    make_client: Callable[..., AcefoneClient], exc_type: type[httpx.TransportError]
) -> None:
    result = call_with(make_client, raise_(exc_type))
    assert result.kind == ResultKind.RETRY
    assert result.reason == FailureReason.CONNECT
    assert TOKEN not in result.message
