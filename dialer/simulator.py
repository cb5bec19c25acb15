"""A faithful Acefone simulator for demos, rehearsals and end-to-end tests.

It answers the Acefone API like the vendor (see ACEFONE.md): `POST /v1/click_to_call`,
`GET /v1/call/records`, `POST /v1/auth/login` and `POST /v1/auth/refresh`. Each accepted call plays
in the background and sends the four webhooks a click-to-call dialer subscribes to, with the
vendor's quirks: string values, literal "$variable" placeholders, two spellings of `direction`,
JSON, form or GET-query bodies, and, at configured rates, webhooks duplicated byte for byte,
delivered out of order or never sent. The API fails at configured rates too: 401, 400, 429 with
or without Retry-After, 500 after the call was placed, answers slower than the client waits.

Determinism: a call's outcome and its delivery quirks come from rngs seeded with the seed and the
attempt's custom_identifier, so a run is reproducible whatever order the dialer places calls in;
an API request's fate comes from the seed and the request's ordinal number.

It records what it did (`/sim/calls`, `/sim/requests`, `/sim/summary`) so tests can compare the
dialer's view with the truth.

Time stamps are wall-clock times of the (scaled) playback, so with speed < 1 the stamps are closer
together than `duration`/`billsec` say; durations are always reported in simulated seconds. Token
lifetimes, Retry-After, slow answers and the per-second limits are in real seconds: they are about
the client, not about the calls.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import heapq
import hmac
import itertools
import json
import logging
import math
import random
import re
import secrets
import threading
import time
import tomllib
import types
import typing
import uuid as uuid_module
from collections import Counter, deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

OUTCOMES = ("answered", "busy", "no_answer", "agent_missed", "failed")
# The webhook triggers a click-to-call dialer subscribes to, in the order a call produces them.
WEBHOOK_KINDS = ("agent_answered", "customer_answered", "customer_missed", "hangup")
# One public report saw the same hangup eleven times.
MAX_COPIES = 11
MAX_RECORDS_LIMIT = 100

# Waits between webhook attempts: long enough in total (~8 s) to ride out a web server restart.
_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)
# Acefone gives up on a webhook after about 10 s.
_WEBHOOK_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
_DESTINATION = re.compile(r"\d{10,15}")
_STAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
# Neutral on purpose: a random "invalid caller_id" would pause the campaign in every rehearsal.
_DEFAULT_BAD_REQUEST = "Call could not be originated."

# outcome -> (hangup_cause_key, hangup_cause_code, hangup_cause_description, reason_key)
_HANGUP_CAUSES: dict[str, tuple[str, str, str, str]] = {
    "answered": ("NORMAL_CLEARING", "16", "Normal call clearing", "Call Disconnected By Callee"),
    "busy": ("USER_BUSY", "17", "User busy", "busy"),
    "no_answer": ("NO_ANSWER", "19", "No answer from user (user alerted)", "noanswer"),
    "agent_missed": ("NO_ANSWER", "19", "No answer from user (user alerted)", "Agent Missed"),
    "failed": ("UNALLOCATED_NUMBER", "1", "Unallocated (unassigned) number", "Call Failed"),
}


@dataclass
class SimulatorConfig:
    """How the simulated account behaves: credentials, webhook target, outcome mix, quirks and pace."""

    host: str = "127.0.0.1"
    port: int = 8090
    # The simulator's well-known demo token, not a credential for any real account.
    token: str = "sim-token"  # noqa: S105
    webhook_url: str = "http://127.0.0.1:8000/webhooks/acefone"
    webhook_token: str = ""
    caller_ids: list[str] | None = None
    offline_agents: list[str] = field(default_factory=list)
    seed: int = 1
    speed: float = 1.0
    # Call outcomes, as shares of calls; what is left over fails.
    answer_rate: float = 0.5
    busy_rate: float = 0.15
    no_answer_rate: float = 0.2
    agent_miss_rate: float = 0.05
    talk_seconds: tuple[int, int] = (20, 180)
    ring_seconds: tuple[int, int] = (3, 20)
    # Webhook encoding, per webhook: GET with a query string, else a POST form, else POST JSON.
    get_rate: float = 0.0
    form_rate: float = 0.0
    # Webhook delivery quirks. Per webhook: never sent; sent 2..max_copies times byte for byte.
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    max_copies: int = 3
    # Per call: its webhooks are held until the hangup and then sent in a shuffled order.
    reorder_rate: float = 0.0
    # API failures, as shares of click_to_call requests (at most 1 together).
    unauthorized_rate: float = 0.0
    bad_request_rate: float = 0.0
    bad_request_messages: list[str] = field(default_factory=lambda: [_DEFAULT_BAD_REQUEST])
    rate_limit_rate: float = 0.0
    server_error_after_place_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 15.0
    # Share of 429 answers (injected or over a limit) that carry Retry-After; injected ones say this.
    retry_after_share: float = 0.5
    retry_after_seconds: int = 1
    # Real limits over any one-second window; 0 means none.
    max_requests_per_second: int = 0
    records_per_second: int = 2
    # Short-lived tokens from /v1/auth/login; login is refused while login_id is empty.
    login_id: str = ""
    password: str = ""
    token_ttl: int = 3600
    record_path: str | None = None
    account_timezone: str = "Asia/Kolkata"


# ---- configuration: validation and scenario files --------------------------------------------

_OUTCOME_RATES = ("answer_rate", "busy_rate", "no_answer_rate", "agent_miss_rate")
_FAILURE_RATES = (
    "unauthorized_rate",
    "bad_request_rate",
    "rate_limit_rate",
    "server_error_after_place_rate",
    "slow_rate",
)
_SHARES = (
    *_OUTCOME_RATES,
    "get_rate",
    "form_rate",
    "drop_rate",
    "duplicate_rate",
    "reorder_rate",
    *_FAILURE_RATES,
    "retry_after_share",
)
# Fields whose `dialer simulate` flag is not simply the field name with dashes.
_FLAG_NAMES = {"bad_request_messages": "--bad-request-message", "record_path": "--record"}


def flag_name(field_name: str) -> str:
    """Return the `dialer simulate` flag that sets a SimulatorConfig field."""
    return _FLAG_NAMES.get(field_name, "--" + field_name.replace("_", "-"))


class ConfigError(ValueError):
    """A simulator setting that cannot work; names the settings involved."""

    def __init__(self, names: tuple[str, ...], problem: str):
        self.names = names
        self.problem = problem
        super().__init__(f"{' + '.join(names)} {problem}" if names else problem)

    def flag_message(self) -> str:
        """Return the message with command-line flags in place of field names."""
        if not self.names:
            return self.problem
        return f"{' + '.join(flag_name(n) for n in self.names)} {self.problem}"


def validate_config(config: SimulatorConfig) -> None:
    """Raise ConfigError naming the first setting that is out of range."""
    for name in _SHARES:
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError((name,), f"must be between 0 and 1 (got {value})")
    for group in (_OUTCOME_RATES, _FAILURE_RATES):
        total = sum(getattr(config, name) for name in group)
        if total > 1.0 + 1e-9:
            raise ConfigError(group, f"must add up to at most 1 (got {total:g})")
    if not config.speed > 0:
        raise ConfigError(("speed",), f"must be > 0 (got {config.speed})")
    if not 2 <= config.max_copies <= MAX_COPIES:
        raise ConfigError(("max_copies",), f"must be between 2 and {MAX_COPIES} (got {config.max_copies})")
    if not config.slow_seconds > 0:
        raise ConfigError(("slow_seconds",), f"must be > 0 (got {config.slow_seconds})")
    for name in ("retry_after_seconds", "max_requests_per_second", "records_per_second"):
        if getattr(config, name) < 0:
            raise ConfigError((name,), f"must be >= 0 (got {getattr(config, name)})")
    if config.token_ttl < 1:
        raise ConfigError(("token_ttl",), f"must be >= 1 second (got {config.token_ttl})")
    if not 0 <= config.port <= 65535:
        raise ConfigError(("port",), f"must be between 0 and 65535 (got {config.port})")
    for name in ("talk_seconds", "ring_seconds"):
        lo, hi = getattr(config, name)
        if not 0 <= lo <= hi:
            raise ConfigError((name,), f"must be LOW-HIGH with 0 <= LOW <= HIGH (got {lo}-{hi})")
    if bool(config.login_id) != bool(config.password):
        raise ConfigError(("login_id", "password"), "go together: set both or neither")
    if config.bad_request_rate > 0 and not config.bad_request_messages:
        raise ConfigError(("bad_request_messages",), "needs at least one message when bad_request_rate > 0")
    try:
        ZoneInfo(config.account_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(("account_timezone",), f"is not a known time zone: {config.account_timezone!r}") from None


def parse_range(text: str, *, name: str) -> tuple[int, int]:
    """Parse "LOW-HIGH" (or one number) into a pair of whole seconds."""
    lo, sep, hi = text.strip().partition("-")
    try:
        pair = (int(lo), int(hi if sep else lo))
    except ValueError:
        raise ConfigError((name,), f"must be LOW-HIGH in whole seconds, e.g. 20-180 (got {text!r})") from None
    return pair


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(SimulatorConfig)


def _coerce(name: str, value: Any, hint: Any, where: str) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError((name,), f"in {where} must be {expected} (got {value!r})")

    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    origin = typing.get_origin(hint)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("a whole number")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if origin is list:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return list(value)
    if origin is tuple:
        if isinstance(value, str):
            return parse_range(value, name=name)
        if not isinstance(value, list | tuple) or len(value) != 2 or not all(type(v) is int for v in value):
            raise bad("[LOW, HIGH] in whole seconds")
        return (value[0], value[1])
    raise bad(str(hint))  # pragma: no cover - every field type is handled above


def load_scenario(path: Path) -> dict[str, Any]:
    """Read a JSON or TOML scenario file whose keys are SimulatorConfig fields."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError((), f"cannot read scenario {path}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            try:
                data = json.loads(text)
            except ValueError:
                data = tomllib.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError both are
        raise ConfigError((), f"scenario {path} is not valid JSON or TOML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError((), f"scenario {path} must be a JSON object or a TOML table of settings")
    hints = _hints()
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError((), f"scenario {path}: unknown setting(s) {', '.join(unknown)}")
    return {key: _coerce(key, value, hints[key], f"scenario {path}") for key, value in data.items()}


def build_config(*layers: Mapping[str, Any]) -> SimulatorConfig:
    """Merge layers of settings (later ones win) over the defaults and validate the result."""
    names = {f.name for f in fields(SimulatorConfig)}
    merged: dict[str, Any] = {}
    for layer in layers:
        unknown = sorted(set(layer) - names)
        if unknown:
            raise ConfigError((), f"unknown setting(s) {', '.join(unknown)}")
        merged.update(layer)
    config = SimulatorConfig(**merged)
    validate_config(config)
    return config


# ---- calls and their webhooks ----------------------------------------------------------------


@dataclass(frozen=True)
class _Outbound:
    """One webhook as it leaves, built once so that every copy and retry is byte for byte the same."""

    method: str
    url: str
    content: bytes | None
    headers: dict[str, str]
    label: str


@dataclass
class _Webhook:
    """One webhook a call produces, with the delivery quirks drawn for it."""

    kind: str
    offset: float
    encoding: str  # json | form | get
    copies: int  # how many times it is to be sent; 0 when dropped
    dropped: bool
    outbound: _Outbound | None = None
    sent: int = 0
    delivered: int = 0


@dataclass
class _Call:
    """One accepted call and the plan it plays out."""

    ref_id: str
    uuid: str
    call_id: str
    agent_number: str
    agent_key: str
    destination_number: str
    caller_id: str | None
    custom_identifier: str | None
    outcome: str
    agent_was_busy: bool
    holds_agent: bool
    agent_ring: int
    customer_ring: int
    billsec: int
    started: float  # wall clock, epoch seconds
    started_mono: float
    api_response: str
    api_status: int
    webhooks: list[_Webhook] = field(default_factory=list)
    reordered: bool = False
    sent_order: list[str] = field(default_factory=list)
    stages: list[tuple[float, Callable[[], None]]] = field(default_factory=list)
    delivered: int = 0
    released: bool = False

    @property
    def end_offset(self) -> float:
        """Return the simulated seconds from request to hangup."""
        return float(self.agent_ring + self.customer_ring + self.billsec)


class _Window:
    """At most `limit` admissions in any one-second window (0: no limit)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._times: deque[float] = deque()

    def admit(self, now: float) -> float | None:
        """Admit one request and return None, or return the seconds until a slot frees."""
        if self.limit <= 0:
            return None
        while self._times and self._times[0] <= now - 1.0:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return self._times[0] + 1.0 - now
        self._times.append(now)
        return None


def _digits_key(number: str) -> str:
    return number.strip().lstrip("+")


def _same_number(a: str | None, b: str) -> bool:
    """Match numbers with or without '+' and country code, as the portal's search does."""
    if not a:
        return False
    x, y = re.sub(r"\D", "", a), re.sub(r"\D", "", b)
    if not x or not y:
        return False
    return x == y or (min(len(x), len(y)) >= 10 and (x.endswith(y) or y.endswith(x)))


def _text(value: object) -> str:
    # Integrators send numbers as JSON numbers as often as strings; the vendor takes both.
    if value is None or isinstance(value, (dict, list, bool)):
        return ""
    return str(value).strip()


def _fail(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "message": message}, status_code=status, headers=headers)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _pick_outcome(config: SimulatorConfig, u: float) -> str:
    edge = 0.0
    for name, rate in (
        ("answered", config.answer_rate),
        ("busy", config.busy_rate),
        ("no_answer", config.no_answer_rate),
        ("agent_missed", config.agent_miss_rate),
    ):
        edge += rate
        if u < edge:
            return name
    return "failed"


def _pick_failure(config: SimulatorConfig, u: float) -> str | None:
    edge = 0.0
    for name, rate in (
        ("unauthorized", config.unauthorized_rate),
        ("bad_request", config.bad_request_rate),
        ("rate_limited", config.rate_limit_rate),
        ("server_error_after_place", config.server_error_after_place_rate),
        ("slow", config.slow_rate),
    ):
        edge += rate
        if u < edge:
            return name
    return None


def _call_status(kind: str, outcome: str) -> str:
    if kind == "agent_answered":
        return "Answered by agent"
    if kind == "customer_answered":
        return "Answered by customer"
    if kind == "hangup" and outcome == "answered":
        return "answered"
    return "missed"


async def _read_body(request: Request) -> dict[str, Any]:
    """Read a JSON or form body as a dict; anything unreadable is an empty dict."""
    try:
        if request.headers.get("content-type", "").startswith("application/json"):
            data = await request.json()
        else:
            data = dict(await request.form())
    except (ValueError, AssertionError):  # bad JSON; starlette asserts on a missing multipart parser
        return {}
    return data if isinstance(data, dict) else {}


class Simulator:
    """The simulated Acefone account: API state, call playback and webhook delivery.

    `clock` (monotonic seconds) drives token expiry and the per-second limits; tests pass a fake.
    """

    def __init__(self, config: SimulatorConfig, *, clock: Callable[[], float] = time.monotonic):
        validate_config(config)
        self.config = config
        self._clock = clock
        self._zone = ZoneInfo(config.account_timezone)
        self._offline = {_digits_key(a) for a in config.offline_agents}
        self._caller_ids = None if config.caller_ids is None else {_digits_key(c) for c in config.caller_ids}
        if config.record_path:
            Path(config.record_path).parent.mkdir(parents=True, exist_ok=True)

        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._records: list[dict[str, Any]] = []
        self._ended: list[_Call] = []  # the call log behind /v1/call/records
        self._requests: list[dict[str, Any]] = []
        self._agents_on_call: dict[str, int] = {}
        self._agent_ids: dict[str, str] = {}
        self._tokens: dict[str, float] = {}  # issued token -> expiry on self._clock
        self._call_requests = itertools.count(1)
        self._record_requests = itertools.count(1)
        self._call_window = _Window(config.max_requests_per_second)
        self._records_window = _Window(config.records_per_second)
        self._pending = 0
        self._last_us = 0

        self._stopped = threading.Event()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._client = httpx.Client(timeout=_WEBHOOK_TIMEOUT)
        # Deliveries run in a pool so one slow receiver does not stall every other call's timeline.
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="acefone-sim-webhook")
        self._scheduler = threading.Thread(target=self._run_scheduler, name="acefone-sim", daemon=True)
        self._scheduler.start()

    # ---- public surface -------------------------------------------------------------------

    def app(self) -> FastAPI:
        """Build the ASGI app that speaks the Acefone API and serves the ground truth."""
        app = FastAPI(title="Acefone simulator", docs_url=None, redoc_url=None, openapi_url=None)

        @app.post("/v1/click_to_call")
        async def click_to_call(request: Request) -> JSONResponse:
            return await self._click_to_call(request)

        @app.get("/v1/call/records")
        async def call_records(request: Request) -> JSONResponse:
            return self._call_records(request)

        @app.post("/v1/auth/login")
        async def auth_login(request: Request) -> JSONResponse:
            return await self._login(request)

        @app.post("/v1/auth/refresh")
        async def auth_refresh(request: Request) -> JSONResponse:
            return self._refresh(request)

        @app.get("/sim/calls")
        def sim_calls() -> list[dict[str, Any]]:
            return self.calls()

        @app.get("/sim/requests")
        def sim_requests() -> list[dict[str, Any]]:
            return self.requests()

        @app.get("/sim/summary")
        def sim_summary() -> dict[str, Any]:
            return self.summary()

        @app.get("/healthz")
        def healthz() -> dict[str, bool]:
            return {"ok": True}

        return app

    def calls(self) -> list[dict[str, Any]]:
        """Return the ground-truth records of the calls that have ended so far."""
        with self._lock:
            return copy.deepcopy(self._records)

    def requests(self) -> list[dict[str, Any]]:
        """Return every API request received so far and what it was answered, in arrival order."""
        with self._lock:
            return [dict(r) for r in self._requests]

    def summary(self) -> dict[str, Any]:
        """Count calls by outcome, requests by answer and webhooks by fate."""
        with self._lock:
            records = list(self._records)
            requests = list(self._requests)
            pending = self._pending
        dials = [r for r in requests if r["endpoint"] == "click_to_call"]
        hooks = [w for r in records for w in r["webhooks"]]
        by_endpoint: dict[str, Counter[str]] = {}
        for r in requests:
            by_endpoint.setdefault(r["endpoint"], Counter())[str(r["status"])] += 1
        outcomes = Counter(r["outcome"] for r in records)
        return {
            "calls": len(records),
            "in_progress": pending,
            "by_outcome": {name: outcomes[name] for name in OUTCOMES},
            "agent_was_busy": sum(r["agent_was_busy"] for r in records),
            "requests": len(dials),
            "placed": sum(r["placed"] for r in dials),
            "by_status": dict(sorted(Counter(str(r["status"]) for r in dials).items())),
            "by_response": dict(sorted(Counter(r["response"] for r in dials).items())),
            "by_endpoint": {name: dict(sorted(c.items())) for name, c in sorted(by_endpoint.items())},
            "webhooks": {
                "planned": len(hooks),
                "sent": sum(w["sent"] for w in hooks),
                "delivered": sum(w["delivered"] for w in hooks),
                "dropped": sum(w["dropped"] for w in hooks),
                "duplicated": sum(w["copies"] > 1 for w in hooks),
                "extra_copies": sum(max(0, w["copies"] - 1) for w in hooks),
                "reordered_calls": sum(r["reordered"] for r in records),
                "by_encoding": dict(sorted(Counter(w["encoding"] for w in hooks if not w["dropped"]).items())),
            },
        }

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every accepted call has ended and its webhooks were delivered."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Stop playback, abandon calls still in progress and close the webhook client."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        with self._wake:
            self._wake.notify_all()
        self._scheduler.join()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    # ---- API: authentication ----------------------------------------------------------------

    def _bearer(self, request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None

    def _authorized(self, request: Request) -> bool:
        token = self._bearer(request)
        if token is None:
            return False
        if hmac.compare_digest(token.encode(), self.config.token.encode()):
            return True
        return self._issued_and_live(token)

    def _issued_and_live(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and self._clock() < expiry

    def _issue_token(self) -> JSONResponse:
        token = "sim-" + secrets.token_urlsafe(24)
        now = self._clock()
        with self._lock:
            self._tokens = {t: e for t, e in self._tokens.items() if e > now}
            self._tokens[token] = now + self.config.token_ttl
        return JSONResponse(
            {"success": True, "access_token": token, "token_type": "bearer", "expires_in": self.config.token_ttl}
        )

    async def _login(self, request: Request) -> JSONResponse:
        arrived = time.time()
        body = await _read_body(request)
        login = str(body.get("login_id") or body.get("email") or "")
        password = str(body.get("password") or "")
        cfg = self.config
        if (
            cfg.login_id
            and hmac.compare_digest(login.encode(), cfg.login_id.encode())
            and hmac.compare_digest(password.encode(), cfg.password.encode())
        ):
            self._log_request(endpoint="auth_login", arrived=arrived, status=200, response="token_issued")
            return self._issue_token()
        self._log_request(endpoint="auth_login", arrived=arrived, status=401, response="unauthorized")
        return _fail(401, "Invalid login credentials.")

    def _refresh(self, request: Request) -> JSONResponse:
        arrived = time.time()
        # Only a token from /v1/auth/login refreshes; the old one stays good until it expires.
        token = self._bearer(request)
        if token is None or not self._issued_and_live(token):
            self._log_request(endpoint="auth_refresh", arrived=arrived, status=401, response="unauthorized")
            return _fail(401, "Unauthenticated")
        self._log_request(endpoint="auth_refresh", arrived=arrived, status=200, response="token_issued")
        return self._issue_token()

    # ---- API: click to call -----------------------------------------------------------------

    def _log_request(
        self,
        *,
        endpoint: str,
        arrived: float,
        status: int,
        response: str,
        n: int | None = None,
        custom_identifier: str | None = None,
        placed: bool = False,
        injected: bool = False,
        message: str = "",
        retry_after: int | None = None,
        ref_id: str | None = None,
    ) -> None:
        entry = {
            "n": n,
            "endpoint": endpoint,
            "time": _iso(arrived),
            "custom_identifier": custom_identifier,
            "status": status,
            "response": response,
            "injected": injected,
            "placed": placed,
            "ref_id": ref_id,
            "retry_after": retry_after,
            "message": message,
        }
        with self._lock:
            self._requests.append(entry)

    def _admit(self, window: _Window) -> float | None:
        with self._lock:
            return window.admit(self._clock())

    async def _click_to_call(self, request: Request) -> JSONResponse:
        cfg = self.config
        arrived = time.time()
        with self._lock:
            n = next(self._call_requests)
        rng = random.Random(f"{cfg.seed}:request:{n}")
        # Three draws whatever happens, so no rate or branch shifts another request's fate.
        u_failure, u_retry_after, u_message = rng.random(), rng.random(), rng.random()
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        ident = (_text(body.get("custom_identifier")) or None) if isinstance(body, dict) else None

        def answer(
            status: int,
            message: str,
            response: str,
            *,
            injected: bool = False,
            retry_after: int | None = None,
        ) -> JSONResponse:
            self._log_request(
                endpoint="click_to_call",
                arrived=arrived,
                n=n,
                custom_identifier=ident,
                status=status,
                response=response,
                injected=injected,
                message=message,
                retry_after=retry_after,
            )
            headers = None if retry_after is None else {"Retry-After": str(retry_after)}
            return _fail(status, message, headers)

        with_retry_after = u_retry_after < cfg.retry_after_share
        if self._stopped.is_set():
            return answer(503, "Service unavailable", "unavailable")
        if not self._authorized(request):
            return answer(401, "Unauthenticated", "unauthorized")
        wait = self._admit(self._call_window)
        if wait is not None:
            return answer(
                429,
                "Too Many Attempts.",
                "over_limit",
                retry_after=max(1, math.ceil(wait)) if with_retry_after else None,
            )
        failure = _pick_failure(cfg, u_failure)
        if failure == "unauthorized":
            return answer(401, "Unauthenticated", failure, injected=True)
        if failure == "rate_limited":
            retry_after = cfg.retry_after_seconds if with_retry_after else None
            return answer(429, "Too Many Attempts.", failure, injected=True, retry_after=retry_after)
        if failure == "bad_request":
            messages = cfg.bad_request_messages
            return answer(400, messages[int(u_message * len(messages))], failure, injected=True)
        if not isinstance(body, dict):
            return answer(400, "Please provide a valid request body.", "invalid")

        agent_number = _text(body.get("agent_number"))
        destination = _text(body.get("destination_number"))
        caller_id = _text(body.get("caller_id")) or None
        if not agent_number:
            return answer(400, "Please provide a valid agent_number.", "invalid")
        if not destination or not _DESTINATION.fullmatch(destination.removeprefix("+")):
            return answer(400, "Please provide a valid destination_number.", "invalid")
        if self._caller_ids is not None:
            if caller_id is None and cfg.caller_ids:
                # The account's default DID is used when the request names none.
                caller_id = cfg.caller_ids[0]
            elif caller_id is None or _digits_key(caller_id) not in self._caller_ids:
                return answer(400, "Please provide a valid caller_id.", "invalid")
        if _digits_key(agent_number) in self._offline:
            return answer(400, "Agent is offline.", "agent_offline")

        try:
            call_timeout: int | None = int(_text(body.get("call_timeout")))
        except ValueError:
            call_timeout = None
        response = failure or "originated"
        status = 500 if failure == "server_error_after_place" else 200
        call = self._accept(
            agent_number=agent_number,
            destination_number=destination,
            caller_id=caller_id,
            custom_identifier=ident,
            call_timeout=call_timeout,
            api_response=response,
            api_status=status,
        )
        message = "Server Error" if status == 500 else "Originate successfully queued"
        self._log_request(
            endpoint="click_to_call",
            arrived=arrived,
            n=n,
            custom_identifier=ident,
            status=status,
            response=response,
            injected=failure is not None,
            placed=True,
            message=message,
            ref_id=call.ref_id,
        )
        if status == 500:
            # The call is already ringing the agent: the dialer must treat this as ambiguous.
            return _fail(500, message)
        if failure == "slow":
            # Placed at once, answered after the client has given up waiting.
            await asyncio.sleep(cfg.slow_seconds)
        # async=1 is the only mode Smartflo still offers, and there call_id is null in practice.
        return JSONResponse({"success": True, "message": message, "ref_id": call.ref_id, "call_id": None})

    def _accept(
        self,
        *,
        agent_number: str,
        destination_number: str,
        caller_id: str | None,
        custom_identifier: str | None,
        call_timeout: int | None,
        api_response: str,
        api_status: int,
    ) -> _Call:
        cfg = self.config
        ref_id = str(uuid_module.uuid4())
        key = custom_identifier or ref_id
        # Seeded per attempt, not per simulator, so outcomes do not depend on request order.
        rng = random.Random(f"{cfg.seed}:{key}")
        # Draw every number in a fixed order whatever the outcome, so adding an outcome branch
        # never reshuffles the others.
        outcome = _pick_outcome(cfg, rng.random())
        agent_ring = rng.randint(*cfg.ring_seconds)
        customer_ring = rng.randint(*cfg.ring_seconds)
        talk = rng.randint(*cfg.talk_seconds)
        busy_ring = rng.randint(1, 3)

        agent_key = _digits_key(agent_number)
        with self._lock:
            agent_was_busy = self._agents_on_call.get(agent_key, 0) > 0
            if agent_was_busy:
                outcome = "agent_missed"
            else:
                self._agents_on_call[agent_key] = 1
            self._pending += 1
            stamp_us = max(time.time_ns() // 1000, self._last_us + 1)
            self._last_us = stamp_us

        billsec = 0
        if outcome == "agent_missed":
            # The agent's phone rings out; the customer is never dialled.
            agent_ring, customer_ring = cfg.ring_seconds[1], 0
        elif outcome == "answered":
            billsec = max(1, talk if not call_timeout or call_timeout <= 0 else min(talk, call_timeout))
        elif outcome == "busy":
            customer_ring = busy_ring
        elif outcome == "no_answer":
            customer_ring = cfg.ring_seconds[1]
        else:  # failed: the network rejects the number before it rings
            customer_ring = 0

        seconds, micros = divmod(stamp_us, 1_000_000)
        call = _Call(
            ref_id=ref_id,
            # uuid looks like PHP uniqid() and call_id like "epoch.micro", as the vendor sends them.
            uuid=f"{seconds:08x}{micros:05x}",
            call_id=f"{seconds}.{micros:06d}",
            agent_number=agent_number,
            agent_key=agent_key,
            destination_number=destination_number,
            caller_id=caller_id,
            custom_identifier=custom_identifier,
            outcome=outcome,
            agent_was_busy=agent_was_busy,
            holds_agent=not agent_was_busy,
            agent_ring=agent_ring,
            customer_ring=customer_ring,
            billsec=billsec,
            started=stamp_us / 1_000_000,
            started_mono=time.monotonic(),
            api_response=api_response,
            api_status=api_status,
        )
        # A second rng for delivery, so switching a quirk on never changes any call's outcome.
        self._plan(call, random.Random(f"{cfg.seed}:{key}:webhooks"))
        self._schedule_stage(call, 0)
        return call

    # ---- API: call records ------------------------------------------------------------------

    def _call_records(self, request: Request) -> JSONResponse:
        arrived = time.time()
        with self._lock:
            n = next(self._record_requests)
        with_retry_after = random.Random(f"{self.config.seed}:records:{n}").random() < self.config.retry_after_share

        def refuse(status: int, message: str, response: str, retry_after: int | None = None) -> JSONResponse:
            self._log_request(
                endpoint="call_records",
                arrived=arrived,
                n=n,
                status=status,
                response=response,
                message=message,
                retry_after=retry_after,
            )
            return _fail(status, message, None if retry_after is None else {"Retry-After": str(retry_after)})

        if not self._authorized(request):
            return refuse(401, "Unauthenticated", "unauthorized")
        wait = self._admit(self._records_window)
        if wait is not None:
            retry_after = max(1, math.ceil(wait)) if with_retry_after else None
            return refuse(429, "Too Many Attempts.", "over_limit", retry_after)
        try:
            page, limit, keep = self._record_filters(request.query_params)
        except ValueError as exc:
            return refuse(400, str(exc), "invalid")
        with self._lock:
            ended = list(self._ended)
        rows = sorted((c for c in ended if keep(c)), key=lambda c: (c.started, c.call_id), reverse=True)
        start = (page - 1) * limit
        self._log_request(endpoint="call_records", arrived=arrived, n=n, status=200, response="records")
        return JSONResponse(
            {
                "count": len(rows),
                "limit": limit,
                "page": page,
                "results": [self._cdr(c) for c in rows[start : start + limit]],
            }
        )

    def _record_filters(self, params: Mapping[str, str]) -> tuple[int, int, Callable[[_Call], bool]]:
        """Parse the CDR query like the vendor's validator; ValueError carries its message."""

        def whole(name: str, default: int) -> int:
            raw = params.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or int(raw) < 1:
                raise ValueError(f"The {name} must be an integer of at least 1.")
            return int(raw)

        def stamp(name: str) -> float | None:
            raw = params.get(name, "").strip()
            if not raw:
                return None
            try:
                return datetime.strptime(raw, _STAMP_FORMAT).replace(tzinfo=self._zone).timestamp()
            except ValueError:
                raise ValueError(f"The {name.replace('_', ' ')} does not match the format Y-m-d H:i:s.") from None

        page = whole("page", 1)
        # Larger pages are cut to the maximum; the answer's `limit` says what was used.
        limit = min(whole("limit", 10), MAX_RECORDS_LIMIT)
        since, until = stamp("from_date"), stamp("to_date")
        call_type = params.get("call_type", "").strip().lower()
        if call_type not in ("", "c", "m"):
            raise ValueError("The selected call type is invalid.")
        call_id = params.get("call_id", "").strip()
        callerid = params.get("callerid", "").strip()
        did_number = params.get("did_number", "").strip()

        def keep(call: _Call) -> bool:
            # Stamps have whole seconds, so the filter compares whole seconds too.
            started = math.floor(call.started)
            answered = call.outcome == "answered"
            return (
                (since is None or started >= since)
                and (until is None or started <= until)
                and (not call_type or (call_type == "c") == answered)
                and (not call_id or call.call_id == call_id)
                and (not callerid or _same_number(call.destination_number, callerid))
                and (not did_number or _same_number(call.caller_id, did_number))
            )

        return page, limit, keep

    def _cdr(self, call: _Call) -> dict[str, Any]:
        answered = call.outcome == "answered"
        cause_key, cause_code, cause_description, reason = _HANGUP_CAUSES[call.outcome]
        start = self._stamp(call, 0)
        agent = self._answered_agent(call)
        return {
            "call_id": call.call_id,
            "uuid": call.uuid,
            "ref_id": call.ref_id,
            "custom_identifier": call.custom_identifier,
            "direction": "clicktocall",
            "status": "answered" if answered else "missed",
            "agent_number": call.agent_number,
            "agent_name": agent["name"],
            "client_number": call.destination_number,
            "did_number": call.caller_id,
            "hangup_cause": cause_key,
            "hangup_cause_code": cause_code,
            "hangup_cause_description": cause_description,
            "reason_key": reason,
            "billsec": call.billsec,
            "duration": int(call.end_offset),
            "agent_ring_time": call.agent_ring,
            "customer_ring_time": call.customer_ring,
            "start_stamp": start,
            "answer_stamp": self._stamp(call, call.agent_ring + call.customer_ring) if answered else None,
            "end_stamp": self._stamp(call, call.end_offset),
            "date": start[:10],
            "time": start[11:],
            "recording_url": self._recording_url(call) if answered else None,
        }

    # ---- playback -------------------------------------------------------------------------

    def _plan(self, call: _Call, rng: random.Random) -> None:
        cfg = self.config
        connected = float(call.agent_ring + call.customer_ring)
        timeline: list[tuple[str, float]] = []
        if call.outcome != "agent_missed":
            timeline.append(("agent_answered", float(call.agent_ring)))
        if call.outcome == "answered":
            timeline.append(("customer_answered", connected))
        elif call.outcome in ("busy", "no_answer"):
            timeline.append(("customer_missed", connected))
        timeline.append(("hangup", call.end_offset))
        for kind, offset in timeline:
            # Five draws per webhook whatever they decide, so one quirk's rate never moves another's.
            u_drop, u_duplicate, u_copies, u_get, u_form = (rng.random() for _ in range(5))
            dropped = u_drop < cfg.drop_rate
            copies = 2 + int(u_copies * (cfg.max_copies - 1)) if u_duplicate < cfg.duplicate_rate else 1
            encoding = "get" if u_get < cfg.get_rate else "form" if u_form < cfg.form_rate else "json"
            call.webhooks.append(_Webhook(kind, offset, encoding, 0 if dropped else copies, dropped))

        natural = [w for w in call.webhooks for _ in range(w.copies)]
        if rng.random() < cfg.reorder_rate and len({w.kind for w in natural}) > 1:
            # Acefone delivers unordered: everything leaves at the hangup, copies shuffled in too.
            shuffled = list(natural)
            while [w.kind for w in shuffled] == [w.kind for w in natural]:
                rng.shuffle(shuffled)
            call.reordered = True
            call.stages = [(call.end_offset, lambda: self._end_call(call, shuffled))]
            return
        for w in call.webhooks:
            action = self._end_call if w.kind == "hangup" else self._emit
            call.stages.append((w.offset, functools.partial(action, call, [w] * w.copies)))

    def _schedule_stage(self, call: _Call, index: int) -> None:
        offset = call.stages[index][0]
        due = call.started_mono + offset * self.config.speed
        with self._wake:
            heapq.heappush(self._heap, (due, next(self._seq), lambda: self._run_stage(call, index)))
            self._wake.notify()

    def _run_scheduler(self) -> None:
        while True:
            with self._wake:
                while True:
                    if self._stopped.is_set():
                        return
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        action = heapq.heappop(self._heap)[2]
                        break
                    self._wake.wait(None if not self._heap else self._heap[0][0] - now)
            try:
                self._pool.submit(action)
            except RuntimeError:  # the pool was shut down by close()
                return

    def _run_stage(self, call: _Call, index: int) -> None:
        # A call's stages run one after another, so its webhooks leave in time order, and a bug
        # in one stage must still end the call or wait_idle() would hang.
        try:
            call.stages[index][1]()
        except Exception:
            log.exception("simulator stage failed for call %s", call.uuid)
        if index + 1 < len(call.stages) and not self._stopped.is_set():
            self._schedule_stage(call, index + 1)
        else:
            self._finish(call)

    def _end_call(self, call: _Call, batch: list[_Webhook]) -> None:
        # Free the agent before the hangup leaves: a dialer that re-rings the agent on receipt of
        # the hangup must not be reported as ringing a busy agent. The CDR exists from the hangup
        # on, whether or not any webhook about it ever arrives.
        self._release_agent(call)
        with self._lock:
            self._ended.append(call)
        self._emit(call, batch)

    def _release_agent(self, call: _Call) -> None:
        with self._lock:
            if call.holds_agent and not call.released:
                call.released = True
                left = self._agents_on_call.get(call.agent_key, 0) - 1
                if left > 0:
                    self._agents_on_call[call.agent_key] = left
                else:
                    self._agents_on_call.pop(call.agent_key, None)

    def _finish(self, call: _Call) -> None:
        self._release_agent(call)
        record = {
            "custom_identifier": call.custom_identifier,
            "ref_id": call.ref_id,
            "uuid": call.uuid,
            "call_id": call.call_id,
            "agent_number": call.agent_number,
            "destination_number": call.destination_number,
            "caller_id": call.caller_id,
            "outcome": call.outcome,
            "billsec": call.billsec,
            "agent_was_busy": call.agent_was_busy,
            "api_status": call.api_status,
            "api_response": call.api_response,
            "requested_at": _iso(call.started),
            "ended_at": _iso(self._wall(call, call.end_offset)),
            "webhooks_delivered": call.delivered,
            "webhooks": [
                {
                    "kind": w.kind,
                    "call_status": _call_status(w.kind, call.outcome),
                    "encoding": w.encoding,
                    "dropped": w.dropped,
                    "copies": w.copies,
                    "sent": w.sent,
                    "delivered": w.delivered,
                }
                for w in call.webhooks
            ],
            "reordered": call.reordered,
            "webhook_order": list(call.sent_order),
        }
        with self._idle:
            self._records.append(record)
            if self.config.record_path:
                try:
                    with open(self.config.record_path, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(record) + "\n")
                except OSError:
                    log.exception("could not append to %s", self.config.record_path)
            self._pending -= 1
            self._idle.notify_all()

    # ---- webhook bodies -------------------------------------------------------------------

    def _wall(self, call: _Call, offset: float) -> float:
        return call.started + offset * self.config.speed

    def _stamp(self, call: _Call, offset: float) -> str:
        return datetime.fromtimestamp(self._wall(call, offset), self._zone).strftime(_STAMP_FORMAT)

    def _recording_url(self, call: _Call) -> str:
        return f"https://sim.invalid/rec/{call.uuid}.mp3"

    def _common(self, call: _Call) -> dict[str, Any]:
        return {
            "uuid": call.uuid,
            "call_id": call.call_id,
            "ref_id": call.ref_id,
            "custom_identifier": call.custom_identifier or "$custom_identifier",
            "call_to_number": call.agent_number.lstrip("+"),
            "caller_id_number": call.caller_id or "$caller_id_number",
            "start_stamp": self._stamp(call, 0),
            "campaign_name": "$campaign_name",
        }

    def _agent_answered(self, call: _Call) -> dict[str, Any]:
        return {
            **self._common(call),
            "answer_agent_number": call.agent_number,
            "call_status": "Answered by agent",
            "direction": "click_to_call",
        }

    def _customer_answered(self, call: _Call) -> dict[str, Any]:
        return {
            **self._common(call),
            "customer_number": call.destination_number,
            "answer_stamp": self._stamp(call, call.agent_ring + call.customer_ring),
            "call_status": "Answered by customer",
            "direction": "click_to_call",
        }

    def _customer_missed(self, call: _Call) -> dict[str, Any]:
        cause_key, cause_code, _, reason = _HANGUP_CAUSES[call.outcome]
        return {
            **self._common(call),
            "customer_number": call.destination_number,
            "call_status": "missed",
            "direction": "clicktocall",
            "call_connected": "1",
            "customer_ring_time": str(call.customer_ring),
            "reason_key": reason,
            "hangup_cause_key": cause_key,
            "hangup_cause_code": cause_code,
        }

    def _answered_agent(self, call: _Call) -> dict[str, str]:
        with self._lock:
            agent_id = self._agent_ids.setdefault(call.agent_key, str(1000 + len(self._agent_ids)))
        return {"id": agent_id, "name": f"Agent {call.agent_key[-4:]}", "number": call.agent_number}

    def _hangup_payload(self, call: _Call) -> dict[str, Any]:
        answered = call.outcome == "answered"
        agent_answered = call.outcome != "agent_missed"
        cause_key, cause_code, cause_description, reason = _HANGUP_CAUSES[call.outcome]
        return {
            **self._common(call),
            "customer_number": call.destination_number,
            "customer_number_with_prefix": "+" + call.destination_number.lstrip("+"),
            "call_status": "answered" if answered else "missed",
            "direction": "clicktocall",
            "answer_stamp": (self._stamp(call, call.agent_ring + call.customer_ring) if answered else "$answer_stamp"),
            "end_stamp": self._stamp(call, call.end_offset),
            "duration": str(int(call.end_offset)),
            "billsec": str(call.billsec),
            "outbound_sec": str(call.customer_ring + call.billsec),
            "agent_ring_time": str(call.agent_ring),
            "customer_ring_time": str(call.customer_ring),
            "call_connected": "1" if agent_answered else "0",
            "hangup_cause_key": cause_key,
            "hangup_cause": cause_key,
            "hangup_cause_code": cause_code,
            "hangup_cause_description": cause_description,
            "reason_key": reason,
            "recording_url": self._recording_url(call) if answered else "$recording_url",
            "answer_agent_number": call.agent_number if agent_answered else "$answer_agent_number",
            "answered_agent": self._answered_agent(call) if agent_answered else "$answered_agent",
            "missed_agent": [{"number": call.agent_number}] if not agent_answered else "$missed_agent",
        }

    def _payload(self, call: _Call, kind: str) -> dict[str, Any]:
        if kind == "agent_answered":
            return self._agent_answered(call)
        if kind == "customer_answered":
            return self._customer_answered(call)
        if kind == "customer_missed":
            return self._customer_missed(call)
        return self._hangup_payload(call)

    # ---- delivery -------------------------------------------------------------------------

    def _outbound(self, payload: dict[str, Any], encoding: str) -> _Outbound:
        headers = {"accept": "application/json"}
        if self.config.webhook_token:
            headers["X-Webhook-Token"] = self.config.webhook_token
        label = str(payload.get("call_status"))
        # Forms and query strings cannot nest, so objects and lists travel as JSON text.
        flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in payload.items()}
        if encoding == "get":
            # Keep whatever the URL already carries (a ?token=, say) ahead of the fields.
            parts = urlsplit(self.config.webhook_url)
            query = "&".join(q for q in (parts.query, urlencode(flat)) if q)
            return _Outbound("GET", urlunsplit(parts._replace(query=query)), None, headers, label)
        if encoding == "form":
            headers["content-type"] = "application/x-www-form-urlencoded"
            return _Outbound("POST", self.config.webhook_url, urlencode(flat).encode(), headers, label)
        headers["content-type"] = "application/json"
        return _Outbound("POST", self.config.webhook_url, json.dumps(payload).encode(), headers, label)

    def _emit(self, call: _Call, batch: list[_Webhook]) -> None:
        for webhook in batch:
            if self._stopped.is_set():
                return
            if webhook.outbound is None:
                webhook.outbound = self._outbound(self._payload(call, webhook.kind), webhook.encoding)
            webhook.sent += 1
            call.sent_order.append(webhook.kind)
            if self._deliver(webhook.outbound):
                webhook.delivered += 1
                call.delivered += 1

    def _deliver(self, outbound: _Outbound) -> bool:
        for delay in (0.0, *_RETRY_DELAYS):
            if delay and self._stopped.wait(delay):
                return False
            try:
                response = self._client.request(
                    outbound.method, outbound.url, content=outbound.content, headers=outbound.headers
                )
            except httpx.HTTPError as exc:
                log.debug("webhook %s failed: %s", outbound.label, type(exc).__name__)
                continue
            if response.is_success:
                return True
            if response.status_code < 500 and response.status_code != 429:
                log.warning("webhook %s refused with %s", outbound.label, response.status_code)
                return False
        log.warning("webhook %s dropped after %d attempts", outbound.label, 1 + len(_RETRY_DELAYS))
        return False


def serve(config: SimulatorConfig) -> None:
    """Run the simulator's HTTP API on config.host:config.port until interrupted."""
    simulator = Simulator(config)
    try:
        uvicorn.run(simulator.app(), host=config.host, port=config.port, log_level="warning")
    finally:
        simulator.close()
