"""Login + refresh: one token for the fleet (shared through Redis), renewed before expiry, never leaked."""

from __future__ import annotations

import json

import fakeredis
import httpx
from pydantic import SecretStr

from dialer.acefone import AcefoneClient, DialRequest, FailureReason, ResultKind
from dialer.acefone_auth import LoginToken

PASSWORD = "pw-very-secret"
REQUEST = DialRequest(
    agent_number="+442079460001",
    destination_number="+447700900001",
    caller_id="+441134960000",
    custom_identifier="c1-l1-a1",
    call_timeout=60,
)


class FakeAcefone:
    """Issues tokens at /v1/auth/login and /refresh; click_to_call accepts only live ones."""

    def __init__(self, ttl: int = 3600) -> None:
        self.ttl = ttl
        self.issued = 0
        self.valid: set[str] = set()
        self.log: list[str] = []

    def _issue(self) -> httpx.Response:
        self.issued += 1
        token = f"tok-{self.issued}"
        self.valid.add(token)
        return httpx.Response(200, json={"success": True, "access_token": token, "expires_in": self.ttl})

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.log.append(request.url.path)
        bearer = request.headers.get("authorization", "")[7:]
        if request.url.path == "/v1/auth/login":
            body = json.loads(request.content)
            if body.get("password") != PASSWORD:
                return httpx.Response(401, json={"success": False, "message": "Invalid credentials"})
            return self._issue()
        if request.url.path == "/v1/auth/refresh":
            return self._issue() if bearer in self.valid else httpx.Response(401)
        if bearer not in self.valid:
            return httpx.Response(401, json={"message": "Unauthenticated"})
        return httpx.Response(200, json={"success": True, "message": "Originate successfully queued", "ref_id": "r"})


def _client(vendor: FakeAcefone, cache: fakeredis.FakeRedis, password: str = PASSWORD) -> AcefoneClient:
    def tokens(http: httpx.Client) -> LoginToken:
        return LoginToken(
            post=http.post, login_id="ops@example.com", password=SecretStr(password), cache=cache, prefix="t"
        )

    return AcefoneClient(base_url="https://acefone.test", tokens=tokens, transport=httpx.MockTransport(vendor.handler))


def test_workers_share_one_login() -> None:
    vendor, cache = FakeAcefone(), fakeredis.FakeRedis()
    first, second = _client(vendor, cache), _client(vendor, cache)
    assert first.click_to_call(REQUEST).kind == ResultKind.ORIGINATED
    assert second.click_to_call(REQUEST).kind == ResultKind.ORIGINATED
    assert vendor.log.count("/v1/auth/login") == 1


def test_token_is_refreshed_before_it_expires() -> None:
    vendor, cache = FakeAcefone(ttl=3600), fakeredis.FakeRedis()
    client = _client(vendor, cache)
    client.click_to_call(REQUEST)
    assert 3500 < cache.ttl("t:acefone-token") <= 3540  # renewed a minute before the vendor's expiry
    cache.delete("t:acefone-token")  # the fresh copy aged out; the stale one is still valid
    assert client.click_to_call(REQUEST).kind == ResultKind.ORIGINATED
    assert (vendor.log.count("/v1/auth/login"), vendor.log.count("/v1/auth/refresh")) == (1, 1)


def test_a_refused_token_is_renewed_once_then_the_call_goes_out() -> None:
    vendor, cache = FakeAcefone(), fakeredis.FakeRedis()
    client = _client(vendor, cache)
    client.click_to_call(REQUEST)
    vendor.valid.clear()  # the vendor revoked every token
    assert client.click_to_call(REQUEST).kind == ResultKind.ORIGINATED
    assert vendor.log.count("/v1/auth/login") == 2


def test_bad_credentials_pause_without_a_retry_storm_and_never_leak() -> None:
    vendor, cache = FakeAcefone(), fakeredis.FakeRedis()
    result = _client(vendor, cache, password="wrong").click_to_call(REQUEST)
    assert (result.kind, result.reason) == (ResultKind.FAILED, FailureReason.UNAUTHORIZED)
    assert "DIALER_ACEFONE_LOGIN_ID" in result.message
    assert "wrong" not in result.message and PASSWORD not in result.message
    assert vendor.log == ["/v1/auth/login"]


def test_auth_endpoint_down_is_retry_safe() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def tokens(http: httpx.Client) -> LoginToken:
        return LoginToken(
            post=http.post, login_id="x", password=SecretStr(PASSWORD), cache=fakeredis.FakeRedis(), prefix="t"
        )

    client = AcefoneClient(base_url="https://acefone.test", tokens=tokens, transport=httpx.MockTransport(down))
    result = client.click_to_call(REQUEST)
    assert (result.kind, result.reason) == (ResultKind.RETRY, FailureReason.CONNECT)
