"""A faithful Acefone click-to-call simulator for demos and end-to-end tests.

It answers `POST /v1/click_to_call` like the vendor (see ACEFONE.md), then plays each accepted call
in the background and POSTs the four webhooks a click-to-call dialer subscribes to, with the
vendor's quirks: string values, literal "$variable" placeholders, two spellings of `direction`,
JSON or form bodies. Every call's outcome is drawn from an rng seeded by the attempt's
custom_identifier, so a run is reproducible whatever order the dialer places calls in.

Time stamps are wall-clock times of the (scaled) playback, so with speed < 1 the stamps are closer
together than `duration`/`billsec` say; durations are always reported in simulated seconds.
"""

from __future__ import annotations

import heapq
import hmac
import itertools
import json
import logging
import random
import re
import threading
import time
import uuid as uuid_module
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

OUTCOMES = ("answered", "busy", "no_answer", "agent_missed", "failed")

# Waits between webhook attempts: long enough in total (~8 s) to ride out a web server restart.
_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)
# Acefone gives up on a webhook after about 10 s.
_WEBHOOK_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
_DESTINATION = re.compile(r"\d{10,15}")

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
    """How the simulated account behaves: credentials, webhook target, outcome mix and pace."""

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
    answer_rate: float = 0.5
    busy_rate: float = 0.15
    no_answer_rate: float = 0.2
    agent_miss_rate: float = 0.05
    form_rate: float = 0.0
    talk_seconds: tuple[int, int] = (20, 180)
    ring_seconds: tuple[int, int] = (3, 20)
    record_path: str | None = None
    account_timezone: str = "Asia/Kolkata"


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
    form: bool
    agent_ring: int
    customer_ring: int
    billsec: int
    started: float  # wall clock, epoch seconds
    started_mono: float
    stages: list[tuple[float, Callable[[], None]]] = field(default_factory=list)
    delivered: int = 0
    released: bool = False

    @property
    def end_offset(self) -> float:
        """Return the simulated seconds from request to hangup."""
        return float(self.agent_ring + self.customer_ring + self.billsec)


def _digits_key(number: str) -> str:
    return number.strip().lstrip("+")


def _text(value: object) -> str:
    # Integrators send numbers as JSON numbers as often as strings; the vendor takes both.
    if value is None or isinstance(value, (dict, list, bool)):
        return ""
    return str(value).strip()


def _fail(status: int, message: str) -> JSONResponse:
    return JSONResponse({"success": False, "message": message}, status_code=status)


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


def _validate(config: SimulatorConfig) -> None:
    rates = (config.answer_rate, config.busy_rate, config.no_answer_rate, config.agent_miss_rate)
    if any(r < 0 for r in rates) or sum(rates) > 1.0 + 1e-9:
        raise ValueError("outcome rates must be >= 0 and sum to at most 1")
    if not 0.0 <= config.form_rate <= 1.0:
        raise ValueError("form_rate must be within [0, 1]")
    if config.speed <= 0:
        raise ValueError("speed must be > 0")
    for name in ("talk_seconds", "ring_seconds"):
        lo, hi = getattr(config, name)
        if not 0 <= lo <= hi:
            raise ValueError(f"{name} must be (low, high) with 0 <= low <= high")


class Simulator:
    """The simulated Acefone account: API state, call playback and webhook delivery."""

    def __init__(self, config: SimulatorConfig):
        _validate(config)
        self.config = config
        self._zone = ZoneInfo(config.account_timezone)
        self._offline = {_digits_key(a) for a in config.offline_agents}
        self._caller_ids = None if config.caller_ids is None else {_digits_key(c) for c in config.caller_ids}
        if config.record_path:
            Path(config.record_path).parent.mkdir(parents=True, exist_ok=True)

        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._records: list[dict[str, Any]] = []
        self._agents_on_call: dict[str, int] = {}
        self._agent_ids: dict[str, str] = {}
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
        """Build the ASGI app that speaks the Acefone API."""
        app = FastAPI(title="Acefone simulator", docs_url=None, redoc_url=None, openapi_url=None)

        @app.post("/v1/click_to_call")
        async def click_to_call(request: Request) -> JSONResponse:
            return await self._click_to_call(request)

        @app.get("/sim/calls")
        def sim_calls() -> list[dict[str, Any]]:
            return self.calls()

        @app.get("/healthz")
        def healthz() -> dict[str, bool]:
            return {"ok": True}

        return app

    def calls(self) -> list[dict[str, Any]]:
        """Return the ground-truth records of the calls that have ended so far."""
        with self._lock:
            return [dict(r) for r in self._records]

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

    # ---- API ------------------------------------------------------------------------------

    async def _click_to_call(self, request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.config.token.encode()):
            return _fail(401, "Unauthenticated")
        try:
            body = await request.json()
        except ValueError:
            return _fail(400, "Please provide a valid request body.")
        if not isinstance(body, dict):
            return _fail(400, "Please provide a valid request body.")

        agent_number = _text(body.get("agent_number"))
        destination = _text(body.get("destination_number"))
        caller_id = _text(body.get("caller_id")) or None
        if not agent_number:
            return _fail(400, "Please provide a valid agent_number.")
        if not destination:
            return _fail(400, "Please provide a valid destination_number.")
        if not _DESTINATION.fullmatch(destination.removeprefix("+")):
            return _fail(400, "Please provide a valid destination_number.")
        if self._caller_ids is not None:
            if caller_id is None and self.config.caller_ids:
                # The account's default DID is used when the request names none.
                caller_id = self.config.caller_ids[0]
            elif caller_id is None or _digits_key(caller_id) not in self._caller_ids:
                return _fail(400, "Please provide a valid caller_id.")
        if _digits_key(agent_number) in self._offline:
            return _fail(400, "Agent is offline.")
        if self._stopped.is_set():
            return _fail(503, "Service unavailable")

        try:
            call_timeout: int | None = int(_text(body.get("call_timeout")))
        except ValueError:
            call_timeout = None
        ref_id = self._accept(
            agent_number=agent_number,
            destination_number=destination,
            caller_id=caller_id,
            custom_identifier=_text(body.get("custom_identifier")) or None,
            call_timeout=call_timeout,
        )
        # async=1 is the only mode Smartflo still offers, and there call_id is null in practice.
        return JSONResponse(
            {"success": True, "message": "Originate successfully queued", "ref_id": ref_id, "call_id": None}
        )

    def _accept(
        self,
        *,
        agent_number: str,
        destination_number: str,
        caller_id: str | None,
        custom_identifier: str | None,
        call_timeout: int | None,
    ) -> str:
        cfg = self.config
        ref_id = str(uuid_module.uuid4())
        # Seeded per attempt, not per simulator, so outcomes do not depend on request order.
        rng = random.Random(f"{cfg.seed}:{custom_identifier or ref_id}")
        # Draw every number in a fixed order whatever the outcome, so adding an outcome branch
        # never reshuffles the others.
        outcome = _pick_outcome(cfg, rng.random())
        form = rng.random() < cfg.form_rate
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
            form=form,
            agent_ring=agent_ring,
            customer_ring=customer_ring,
            billsec=billsec,
            started=stamp_us / 1_000_000,
            started_mono=time.monotonic(),
        )
        call.stages = self._plan(call)
        self._schedule_stage(call, 0)
        return ref_id

    # ---- playback -------------------------------------------------------------------------

    def _plan(self, call: _Call) -> list[tuple[float, Callable[[], None]]]:
        agent_answer = float(call.agent_ring)
        customer_done = float(call.agent_ring + call.customer_ring)
        stages: list[tuple[float, Callable[[], None]]] = []
        if call.outcome != "agent_missed":
            stages.append((agent_answer, lambda: self._send(call, self._agent_answered(call))))
        if call.outcome == "answered":
            stages.append((customer_done, lambda: self._send(call, self._customer_answered(call))))
        elif call.outcome in ("busy", "no_answer"):
            stages.append((customer_done, lambda: self._send(call, self._customer_missed(call))))
        stages.append((call.end_offset, lambda: self._hangup(call)))
        return stages

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

    def _hangup(self, call: _Call) -> None:
        # Free the agent before the hangup leaves: a dialer that re-rings the agent on receipt of
        # the hangup must not be reported as ringing a busy agent.
        self._release_agent(call)
        self._send(call, self._hangup_payload(call))

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
            "requested_at": datetime.fromtimestamp(call.started, UTC).isoformat(),
            "ended_at": datetime.fromtimestamp(self._wall(call, call.end_offset), UTC).isoformat(),
            "webhooks_delivered": call.delivered,
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
        return datetime.fromtimestamp(self._wall(call, offset), self._zone).strftime("%Y-%m-%d %H:%M:%S")

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
            "recording_url": f"https://sim.invalid/rec/{call.uuid}.mp3" if answered else "$recording_url",
            "answer_agent_number": call.agent_number if agent_answered else "$answer_agent_number",
            "answered_agent": self._answered_agent(call) if agent_answered else "$answered_agent",
            "missed_agent": [{"number": call.agent_number}] if not agent_answered else "$missed_agent",
        }

    # ---- delivery -------------------------------------------------------------------------

    def _send(self, call: _Call, payload: dict[str, Any]) -> None:
        if self._deliver(payload, form=call.form):
            call.delivered += 1

    def _deliver(self, payload: dict[str, Any], *, form: bool) -> bool:
        headers = {"accept": "application/json"}
        if self.config.webhook_token:
            headers["X-Webhook-Token"] = self.config.webhook_token
        if form:
            # Form bodies cannot nest, so objects and lists travel as JSON text.
            flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in payload.items()}
            content = urlencode(flat).encode()
            headers["content-type"] = "application/x-www-form-urlencoded"
        else:
            content = json.dumps(payload).encode()
            headers["content-type"] = "application/json"

        for delay in (0.0, *_RETRY_DELAYS):
            if delay and self._stopped.wait(delay):
                return False
            try:
                response = self._client.post(self.config.webhook_url, content=content, headers=headers)
            except httpx.HTTPError as exc:
                log.debug("webhook %s failed: %s", payload.get("call_status"), type(exc).__name__)
                continue
            if response.is_success:
                return True
            if response.status_code < 500 and response.status_code != 429:
                log.warning("webhook %s refused with %s", payload.get("call_status"), response.status_code)
                return False
        log.warning("webhook %s dropped after %d attempts", payload.get("call_status"), 1 + len(_RETRY_DELAYS))
        return False


def serve(config: SimulatorConfig) -> None:
    """Run the simulator's HTTP API on config.host:config.port until interrupted."""
    simulator = Simulator(config)
    try:
        uvicorn.run(simulator.app(), host=config.host, port=config.port, log_level="warning")
    finally:
        simulator.close()
