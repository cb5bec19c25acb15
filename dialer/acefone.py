"""The Acefone click-to-call client: one class over a shared httpx.Client, results classified.

Classification is DESIGN.md invariant 2: only a request that provably never reached Acefone
(connect error, 429) may be sent again; anything sent whose fate is unknown is AMBIGUOUS.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from pydantic import SecretStr

from dialer.acefone_auth import AuthFailed, AuthUnavailable, StaticToken, TokenProvider

CLICK_TO_CALL_PATH = "/v1/click_to_call"
CALL_RECORDS_PATH = "/v1/call/records"


class RecordsUnavailable(Exception):
    """/v1/call/records could not answer now (rate limit, outage); `retry_after` when it said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class CallRecords:
    results: list[dict[str, Any]]
    count: int


class ResultKind(enum.StrEnum):
    ORIGINATED = "originated"
    RETRY = "retry"  # provably not placed: safe to send again, the lead is not charged
    AMBIGUOUS = "ambiguous"  # may have been placed: never re-sent, settled by webhook or reconciler
    FAILED = "failed"  # refused by Acefone with a reason


class FailureReason(enum.StrEnum):
    UNAUTHORIZED = "unauthorized"
    INVALID_CALLER_ID = "invalid_caller_id"
    AGENT_OFFLINE = "agent_offline"
    INVALID_NUMBER = "invalid_number"
    RATE_LIMITED = "rate_limited"
    CONNECT = "connect_error"
    OTHER = "other"


@dataclass(frozen=True)
class DialRequest:
    agent_number: str
    destination_number: str
    caller_id: str
    custom_identifier: str
    call_timeout: int
    get_call_id: bool = True
    async_mode: bool = True

    def body(self) -> dict[str, Any]:
        """Return the JSON body Acefone expects."""
        return {
            "agent_number": self.agent_number,
            "destination_number": self.destination_number,
            "caller_id": self.caller_id,
            # Smartflo dropped synchronous mode in Oct 2024: async is the default.
            "async": "1" if self.async_mode else "0",
            "call_timeout": self.call_timeout,
            "custom_identifier": self.custom_identifier,
            "get_call_id": 1 if self.get_call_id else 0,
        }


@dataclass(frozen=True)
class DialResult:
    kind: ResultKind
    status_code: int | None = None
    message: str = ""
    reason: FailureReason | None = None
    ref_id: str | None = None
    call_id: str | None = None
    retry_after: float | None = None


def _failure_reason(message: str) -> FailureReason:
    m = message.lower()
    if "caller" in m:
        return FailureReason.INVALID_CALLER_ID
    # Anything about the agent (offline, busy, "valid agent_number") is the agent's problem, never
    # the lead's: the agent leaves rotation for a cool-down and the lead is not charged.
    if "agent" in m:
        return FailureReason.AGENT_OFFLINE
    if "destination" in m or "number" in m:
        return FailureReason.INVALID_NUMBER
    return FailureReason.OTHER


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


class AcefoneClient:
    """Place click-to-call requests; every outcome comes back as a classified DialResult."""

    def __init__(
        self,
        *,
        base_url: str,
        token: SecretStr | None = None,
        tokens: Callable[[httpx.Client], TokenProvider] | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            headers={"accept": "application/json"},
            transport=transport,
        )
        # `tokens` builds a login/refresh provider over this client's pool; else the static token.
        self._tokens: TokenProvider = tokens(self._http) if tokens else StaticToken(token or SecretStr(""))

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def click_to_call(self, request: DialRequest) -> DialResult:
        """POST /v1/click_to_call and classify what happened."""
        for renewals_left in (1, 0):
            try:
                token = self._tokens.token()
            except AuthFailed as exc:
                return DialResult(ResultKind.FAILED, 401, str(exc), FailureReason.UNAUTHORIZED)
            except AuthUnavailable as exc:
                return DialResult(ResultKind.RETRY, message=str(exc), reason=FailureReason.CONNECT)
            try:
                response = self._http.post(
                    CLICK_TO_CALL_PATH, json=request.body(), headers={"Authorization": f"Bearer {token}"}
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Nothing left this process: the call cannot have been placed.
                return DialResult(ResultKind.RETRY, message=type(exc).__name__, reason=FailureReason.CONNECT)
            except httpx.TransportError as exc:
                # Read/write timeouts, dropped connections: the request may have been acted on.
                return DialResult(ResultKind.AMBIGUOUS, message=f"{type(exc).__name__} after sending")
            if response.status_code == 401 and renewals_left and not isinstance(self._tokens, StaticToken):
                # A short-lived token can expire between cache and call: renew once, never loop.
                self._tokens.invalidate(token)
                continue
            return classify_response(response)
        raise AssertionError("unreachable")

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
        """GET /v1/call/records for a time range (account zone), optionally one customer number."""
        zone = ZoneInfo(account_tz)
        params: dict[str, str | int] = {
            "from_date": start.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
            "to_date": end.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
            "page": page,
            "limit": limit,
        }
        if number:
            params["callerid"] = number.lstrip("+")
        try:
            token = self._tokens.token()
            response = self._http.get(CALL_RECORDS_PATH, params=params, headers={"Authorization": f"Bearer {token}"})
        except (httpx.TransportError, AuthFailed, AuthUnavailable) as exc:
            raise RecordsUnavailable(type(exc).__name__) from None
        if response.status_code != 200:
            raise RecordsUnavailable(f"HTTP {response.status_code}", _retry_after(response.headers.get("retry-after")))
        data = _json(response)
        results = data.get("results")
        if not isinstance(results, list):
            raise RecordsUnavailable("unreadable call records")
        count = data.get("count")
        return CallRecords(
            results=[r for r in results if isinstance(r, dict)],
            count=int(count) if isinstance(count, int | str) and str(count).isdigit() else len(results),
        )


def classify_response(response: httpx.Response) -> DialResult:
    """Map one HTTP response from click_to_call to a DialResult."""
    code = response.status_code
    data = _json(response)
    message = str(data.get("message") or response.reason_phrase or "")
    if code == 429:
        return DialResult(
            ResultKind.RETRY,
            code,
            message or "Too Many Requests",
            FailureReason.RATE_LIMITED,
            retry_after=_retry_after(response.headers.get("retry-after")),
        )
    if code == 401:
        return DialResult(
            ResultKind.FAILED, code, "Acefone refused the token: check DIALER_ACEFONE_TOKEN", FailureReason.UNAUTHORIZED
        )
    if code >= 500:
        return DialResult(ResultKind.AMBIGUOUS, code, message or f"HTTP {code} after sending")
    if 200 <= code < 300 and data.get("success") is True:
        return DialResult(
            ResultKind.ORIGINATED, code, message, ref_id=_text(data.get("ref_id")), call_id=_text(data.get("call_id"))
        )
    if 200 <= code < 300 and not data:
        # A 2xx we cannot read says nothing about whether the call went out.
        return DialResult(ResultKind.AMBIGUOUS, code, "unreadable success response")
    return DialResult(ResultKind.FAILED, code, message or f"HTTP {code}", _failure_reason(message))
