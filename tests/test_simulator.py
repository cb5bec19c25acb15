"""The Acefone simulator: API rules, webhook shapes, delivery quirks, failure modes, call records, auth."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn

from dialer.simulator import ConfigError, Simulator, SimulatorConfig, load_scenario

TOKEN = "sim-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
# An outcome mix where each outcome shows up among a few dozen calls.
MIX = {"answer_rate": 0.3, "busy_rate": 0.2, "no_answer_rate": 0.2, "agent_miss_rate": 0.15}
ALL_ANSWERED = {"answer_rate": 1.0, "busy_rate": 0.0, "no_answer_rate": 0.0, "agent_miss_rate": 0.0}
# Webhook kind -> the call_status it carries, for an answered call.
ANSWERED_STATUS = {
    "agent_answered": "Answered by agent",
    "customer_answered": "Answered by customer",
    "hangup": "answered",
}


@dataclass
class Hook:
    """One webhook as the receiver saw it: for GET, `raw` is the query string."""

    content_type: str
    headers: dict[str, str]
    body: dict[str, Any]
    method: str = "POST"
    raw: bytes = b""


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every request and can fail the first few."""

    url: str = ""
    hooks: list[Hook] = field(default_factory=list)
    fail_first: int = 0
    seen: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_call(self) -> dict[str, list[Hook]]:
        """Group the received webhooks by custom_identifier, in arrival order."""
        grouped: dict[str, list[Hook]] = defaultdict(list)
        for hook in self.hooks:
            grouped[hook.body["custom_identifier"]].append(hook)
        return grouped


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.record(self.rfile.read(int(self.headers.get("content-length", "0"))))

        def do_GET(self) -> None:
            self.record(urlsplit(self.path).query.encode())

        def record(self, raw: bytes) -> None:
            with rec.lock:
                rec.seen += 1
                failing = rec.seen <= rec.fail_first
                if not failing:
                    ctype = self.headers.get("content-type", "")
                    if ctype.startswith("application/json"):
                        body = json.loads(raw)
                    else:
                        body = dict(parse_qsl(raw.decode(), keep_blank_values=True))
                    rec.hooks.append(Hook(ctype, dict(self.headers.items()), body, self.command, raw))
            self.send_response(503 if failing else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        # The default backlog of 5 overflows when many calls post at once, and each overflow
        # costs a one-second SYN retransmit.
        request_queue_size = 128
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/acefone"
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class AppSwitch:
    """An ASGI app that forwards to the simulator the current test serves."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@dataclass
class SharedServer:
    switch: AppSwitch
    port: int


_server: SharedServer | None = None


@pytest.fixture(scope="module", autouse=True)
def shared_server() -> Iterator[None]:
    """Run one uvicorn for the whole module: starting and stopping one costs ~0.3 s a test."""
    global _server
    # A real server rather than starlette's TestClient, which warns when httpx2 is not installed.
    switch = AppSwitch()
    config = uvicorn.Config(switch, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            thread.join(0.01)
        assert server.started, "uvicorn did not start"
        _server = SharedServer(switch, server.servers[0].sockets[0].getsockname()[1])
        yield
    finally:
        _server = None
        server.should_exit = True
        thread.join()


@contextmanager
def running(sim: Simulator) -> Iterator[httpx.Client]:
    """Serve the simulator's app on the module's uvicorn; yield a client for it."""
    assert _server is not None
    _server.switch.app = sim.app()
    with httpx.Client(base_url=f"http://127.0.0.1:{_server.port}", timeout=5) as client:
        yield client


class FakeClock:
    """A monotonic clock that moves only when told: token expiry and rate windows without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_sim(receiver: Receiver, clock: FakeClock | None = None, **overrides: Any) -> Simulator:
    options: dict[str, Any] = {"webhook_url": receiver.url, "speed": 0.001, "seed": 7, **overrides}
    if clock is None:
        return Simulator(SimulatorConfig(**options))
    return Simulator(SimulatorConfig(**options), clock=clock)


def place(client: httpx.Client, ident: str, agent: str = "+918287842425", **extra: Any) -> dict[str, Any]:
    body = {
        "agent_number": agent,
        "destination_number": "+919812345678",
        "caller_id": "+919240202904",
        "async": "1",
        "custom_identifier": ident,
        "get_call_id": 1,
        **extra,
    }
    response = client.post("/v1/click_to_call", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def play(sim: Simulator, idents: list[str], **extra: Any) -> None:
    with running(sim) as client:
        for n, ident in enumerate(idents):
            # A distinct agent per call, so no call meets a busy agent.
            place(client, ident, agent=f"+9180000{n:05d}", **extra)
    assert sim.wait_idle(30)


def dial(client: httpx.Client, ident: str, agent: str = "+918287842425", **headers: str) -> httpx.Response:
    """POST one click_to_call and return the response whatever its status."""
    body = {"agent_number": agent, "destination_number": "919812345678", "custom_identifier": ident}
    return client.post("/v1/click_to_call", json=body, headers={**AUTH, **headers})


# ---- API rules -------------------------------------------------------------------------------


@pytest.fixture
def api(receiver: Receiver) -> Iterator[httpx.Client]:
    sim = make_sim(receiver, caller_ids=["+919240202904"], offline_agents=["+918000000009"])
    with running(sim) as client:
        yield client
    sim.wait_idle(10)
    sim.close()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_click_to_call_requires_the_bearer_token(api: httpx.Client, headers: dict[str, str]) -> None:
    body = {"agent_number": "+918287842425", "destination_number": "919812345678"}
    response = api.post("/v1/click_to_call", json=body, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"success": False, "message": "Unauthenticated"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"destination_number": "919812345678"}, "Please provide a valid agent_number."),
        ({"agent_number": "+918287842425"}, "Please provide a valid destination_number."),
        (
            {"agent_number": "+918287842425", "destination_number": "12345"},
            "Please provide a valid destination_number.",
        ),
        (
            {"agent_number": "+918287842425", "destination_number": "+91981234567890123"},
            "Please provide a valid destination_number.",
        ),
        (
            {"agent_number": "+918287842425", "destination_number": "91981234x678"},
            "Please provide a valid destination_number.",
        ),
        (
            {"agent_number": "+918287842425", "destination_number": "919812345678", "caller_id": "+911111111111"},
            "Please provide a valid caller_id.",
        ),
        (
            {"agent_number": "+918000000009", "destination_number": "919812345678"},
            "Agent is offline.",
        ),
    ],
)
def test_click_to_call_rejects_bad_input(api: httpx.Client, body: dict[str, str], message: str) -> None:
    response = api.post("/v1/click_to_call", json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json() == {"success": False, "message": message}


def test_click_to_call_queues_a_call(api: httpx.Client) -> None:
    body = place(api, "attempt-1")
    assert set(body) == {"success", "message", "ref_id", "call_id"}
    assert body["success"] is True
    assert body["message"] == "Originate successfully queued"
    assert uuid.UUID(body["ref_id"]).version == 4
    assert body["call_id"] is None


def test_health_and_ground_truth_endpoints(receiver: Receiver) -> None:
    sim = make_sim(receiver)
    try:
        with running(sim) as client:
            assert client.get("/healthz").json() == {"ok": True}
            ref_id = place(client, "attempt-1")["ref_id"]
            assert sim.wait_idle(10)
            calls = client.get("/sim/calls").json()
        assert [c["ref_id"] for c in calls] == [ref_id]
        assert calls == sim.calls()
    finally:
        sim.close()


# ---- playback --------------------------------------------------------------------------------


def assert_strings(body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key not in ("answered_agent", "missed_agent"):
            assert isinstance(value, str), key


def test_webhooks_follow_the_documented_shapes(receiver: Receiver) -> None:
    idents = [f"attempt-{n}" for n in range(40)]
    sim = make_sim(receiver, webhook_token="hook-secret", **MIX)
    try:
        play(sim, idents)
        truth = {c["custom_identifier"]: c for c in sim.calls()}
    finally:
        sim.close()

    assert set(truth) == set(idents)
    assert {c["outcome"] for c in truth.values()} == {
        "answered",
        "busy",
        "no_answer",
        "agent_missed",
        "failed",
    }
    hooks = receiver.by_call()
    for ident, record in truth.items():
        calls = hooks[ident]
        bodies = [h.body for h in calls]
        statuses = [b["call_status"] for b in bodies]
        outcome = record["outcome"]
        assert record["agent_was_busy"] is False
        assert record["webhooks_delivered"] == len(calls)
        assert (record["api_status"], record["api_response"]) == (200, "originated")
        assert record["reordered"] is False
        assert [w["call_status"] for w in record["webhooks"]] == statuses
        for webhook in record["webhooks"]:
            assert (webhook["encoding"], webhook["dropped"], webhook["copies"], webhook["delivered"]) == (
                "json",
                False,
                1,
                1,
            )
        assert record["webhook_order"] == [w["kind"] for w in record["webhooks"]]
        for hook in calls:
            assert hook.content_type == "application/json"
            assert hook.headers["X-Webhook-Token"] == "hook-secret"
            body = hook.body
            assert_strings(body)
            assert body["uuid"] == record["uuid"] and re.fullmatch(r"[0-9a-f]{13}", body["uuid"])
            assert body["call_id"] == record["call_id"] and re.fullmatch(r"\d{10}\.\d{6}", body["call_id"])
            assert body["ref_id"] == record["ref_id"]
            assert body["campaign_name"] == "$campaign_name"
            assert body["call_to_number"] == record["agent_number"].lstrip("+")
            assert body["caller_id_number"] == "+919240202904"
            assert STAMP.fullmatch(body["start_stamp"])

        hangup = bodies[-1]
        assert STAMP.fullmatch(hangup["end_stamp"])
        assert hangup["direction"] == "clicktocall"
        assert hangup["customer_number"] == "+919812345678"
        assert hangup["customer_number_with_prefix"] == "+919812345678"
        assert int(hangup["billsec"]) == record["billsec"]
        assert hangup["hangup_cause"] == hangup["hangup_cause_key"]
        if outcome == "answered":
            assert statuses == ["Answered by agent", "Answered by customer", "answered"]
            agent, customer = bodies[0], bodies[1]
            assert agent["direction"] == customer["direction"] == "click_to_call"
            assert agent["answer_agent_number"] == record["agent_number"]
            assert STAMP.fullmatch(customer["answer_stamp"])
            assert record["billsec"] > 0
            assert hangup["hangup_cause_key"] == "NORMAL_CLEARING"
            assert hangup["hangup_cause_code"] == "16"
            assert hangup["reason_key"] == "Call Disconnected By Callee"
            assert hangup["recording_url"] == f"https://sim.invalid/rec/{record['uuid']}.mp3"
            assert hangup["answer_stamp"] == customer["answer_stamp"]
            assert hangup["answered_agent"]["number"] == record["agent_number"]
            assert set(hangup["answered_agent"]) == {"id", "name", "number"}
            assert hangup["missed_agent"] == "$missed_agent"
            assert hangup["call_connected"] == "1"
        elif outcome in ("busy", "no_answer"):
            assert statuses == ["Answered by agent", "missed", "missed"]
            missed = bodies[1]
            expected = ("USER_BUSY", "17", "busy") if outcome == "busy" else ("NO_ANSWER", "19", "noanswer")
            assert (missed["hangup_cause_key"], missed["hangup_cause_code"], missed["reason_key"]) == expected
            assert (hangup["hangup_cause_key"], hangup["hangup_cause_code"], hangup["reason_key"]) == expected
            assert missed["direction"] == "clicktocall"
            assert missed["call_connected"] == hangup["call_connected"] == "1"
            assert missed["customer_ring_time"] == hangup["customer_ring_time"]
            assert int(missed["customer_ring_time"]) > 0
        elif outcome == "agent_missed":
            assert statuses == ["missed"]
            assert hangup["call_connected"] == "0"
            assert hangup["customer_ring_time"] == "0"
            assert hangup["reason_key"] == "Agent Missed"
            assert hangup["answered_agent"] == "$answered_agent"
            assert hangup["missed_agent"] == [{"number": record["agent_number"]}]
        else:
            assert statuses == ["Answered by agent", "missed"]
            assert (hangup["hangup_cause_key"], hangup["hangup_cause_code"]) == ("UNALLOCATED_NUMBER", "1")
            assert hangup["reason_key"] == "Call Failed"
            assert hangup["call_connected"] == "1"
        if outcome != "answered":
            assert record["billsec"] == 0
            assert hangup["billsec"] == "0"
            assert hangup["recording_url"] == "$recording_url"
            assert hangup["answer_stamp"] == "$answer_stamp"


def test_same_seed_gives_same_outcomes_in_any_order(receiver: Receiver) -> None:
    idents = [f"attempt-{n}" for n in range(20)]
    outcomes = []
    for order in (idents, idents[::-1]):
        sim = make_sim(receiver, **MIX)
        try:
            play(sim, order)
            outcomes.append({c["custom_identifier"]: (c["outcome"], c["billsec"]) for c in sim.calls()})
        finally:
            sim.close()
    assert outcomes[0] == outcomes[1]
    assert len({o for o, _ in outcomes[0].values()}) > 1

    sim = make_sim(receiver, **{**MIX, "seed": 8})
    try:
        play(sim, idents)
        other = {c["custom_identifier"]: (c["outcome"], c["billsec"]) for c in sim.calls()}
    finally:
        sim.close()
    assert other != outcomes[0]


def test_form_rate_one_sends_form_bodies(receiver: Receiver) -> None:
    sim = make_sim(receiver, form_rate=1.0, **ALL_ANSWERED)
    try:
        play(sim, ["attempt-1", "attempt-2"])
    finally:
        sim.close()
    assert len(receiver.hooks) == 6
    for hook in receiver.hooks:
        assert hook.content_type == "application/x-www-form-urlencoded"
        assert "X-Webhook-Token" not in hook.headers
        assert hook.body["campaign_name"] == "$campaign_name"
    hangups = [h.body for h in receiver.hooks if h.body["call_status"] == "answered"]
    assert len(hangups) == 2
    for hangup in hangups:
        assert json.loads(hangup["answered_agent"])["number"] == hangup["answer_agent_number"]
        assert hangup["missed_agent"] == "$missed_agent"


def test_missing_custom_identifier_is_sent_as_a_placeholder(receiver: Receiver) -> None:
    sim = make_sim(receiver, **ALL_ANSWERED)
    try:
        with running(sim) as client:
            body = {"agent_number": "918287842425", "destination_number": "919812345678"}
            assert client.post("/v1/click_to_call", json=body, headers=AUTH).status_code == 200
        assert sim.wait_idle(10)
    finally:
        sim.close()
    assert [h.body["custom_identifier"] for h in receiver.hooks] == ["$custom_identifier"] * 3
    assert {h.body["caller_id_number"] for h in receiver.hooks} == {"$caller_id_number"}
    assert sim.calls()[0]["custom_identifier"] is None


def test_ringing_a_busy_agent_is_recorded(receiver: Receiver) -> None:
    # speed 0.01 and a 60 s talk keep the first call up for about 0.7 s, ample for the second request.
    sim = make_sim(receiver, speed=0.01, **ALL_ANSWERED, talk_seconds=(60, 60), ring_seconds=(5, 5))
    try:
        with running(sim) as client:
            place(client, "first")
            place(client, "second")
            assert sim.wait_idle(10)
            place(client, "third")
            assert sim.wait_idle(10)
        truth = {c["custom_identifier"]: c for c in sim.calls()}
    finally:
        sim.close()
    assert truth["first"]["outcome"] == "answered"
    assert truth["first"]["agent_was_busy"] is False
    assert truth["second"]["outcome"] == "agent_missed"
    assert truth["second"]["agent_was_busy"] is True
    # The agent is free again once the first call has hung up.
    assert truth["third"]["agent_was_busy"] is False
    assert truth["third"]["outcome"] == "answered"
    second = receiver.by_call()["second"]
    assert [h.body["call_status"] for h in second] == ["missed"]
    assert second[0].body["call_connected"] == "0"
    assert sim.summary()["agent_was_busy"] == 1


def test_call_timeout_caps_talk_time(receiver: Receiver) -> None:
    sim = make_sim(receiver, **ALL_ANSWERED, talk_seconds=(100, 100))
    try:
        with running(sim) as client:
            place(client, "attempt-1", call_timeout=30)
        assert sim.wait_idle(10)
    finally:
        sim.close()
    assert sim.calls()[0]["billsec"] == 30


def test_webhooks_survive_a_restarting_receiver(receiver: Receiver) -> None:
    receiver.fail_first = 2
    sim = make_sim(receiver, **ALL_ANSWERED)
    try:
        play(sim, ["attempt-1"])
    finally:
        sim.close()
    assert [h.body["call_status"] for h in receiver.hooks] == [
        "Answered by agent",
        "Answered by customer",
        "answered",
    ]
    assert sim.calls()[0]["webhooks_delivered"] == 3


def test_ground_truth_is_written_as_jsonl(receiver: Receiver, tmp_path: Path) -> None:
    path = tmp_path / "truth" / "calls.jsonl"
    sim = make_sim(receiver, record_path=str(path), **MIX)
    try:
        play(sim, [f"attempt-{n}" for n in range(5)])
    finally:
        sim.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == sim.calls()
    assert len(lines) == 5
    for record in lines:
        assert set(record) == {
            "custom_identifier",
            "ref_id",
            "uuid",
            "call_id",
            "agent_number",
            "destination_number",
            "caller_id",
            "outcome",
            "billsec",
            "agent_was_busy",
            "api_status",
            "api_response",
            "requested_at",
            "ended_at",
            "webhooks_delivered",
            "webhooks",
            "reordered",
            "webhook_order",
        }
        assert record["requested_at"].endswith("+00:00") and record["ended_at"] >= record["requested_at"]


# ---- webhook delivery quirks -----------------------------------------------------------------


def test_duplicates_arrive_byte_for_byte(receiver: Receiver) -> None:
    sim = make_sim(receiver, duplicate_rate=1.0, max_copies=11, **ALL_ANSWERED)
    try:
        play(sim, [f"attempt-{n}" for n in range(3)])
        truth = {c["custom_identifier"]: c for c in sim.calls()}
        summary = sim.summary()
    finally:
        sim.close()

    copies_seen = []
    for ident, hooks in receiver.by_call().items():
        for webhook in truth[ident]["webhooks"]:
            copies = [h for h in hooks if h.body["call_status"] == ANSWERED_STATUS[webhook["kind"]]]
            assert 2 <= webhook["copies"] <= 11
            assert len(copies) == webhook["copies"] == webhook["sent"] == webhook["delivered"]
            assert len({(h.method, h.content_type, h.raw) for h in copies}) == 1, "copies differ"
            copies_seen.append(len(copies))
    assert len(copies_seen) == 9 and max(copies_seen) > 3
    assert len(receiver.hooks) == sum(copies_seen) == summary["webhooks"]["delivered"]
    assert summary["webhooks"]["duplicated"] == 9
    assert summary["webhooks"]["extra_copies"] == sum(copies_seen) - 9


def test_reordered_calls_deliver_the_hangup_first_in_some_call(receiver: Receiver) -> None:
    sim = make_sim(receiver, reorder_rate=1.0, **ALL_ANSWERED)
    try:
        play(sim, [f"attempt-{n}" for n in range(8)])
        truth = {c["custom_identifier"]: c for c in sim.calls()}
    finally:
        sim.close()

    natural = ["Answered by agent", "Answered by customer", "answered"]
    hangup_first = 0
    for ident, hooks in receiver.by_call().items():
        statuses = [h.body["call_status"] for h in hooks]
        assert sorted(statuses) == sorted(natural)
        assert statuses != natural
        assert truth[ident]["reordered"] is True
        assert [ANSWERED_STATUS[k] for k in truth[ident]["webhook_order"]] == statuses
        hangup_first += statuses.index("answered") < statuses.index("Answered by agent")
    assert hangup_first > 0


def test_dropped_webhooks_are_missing_and_recorded(receiver: Receiver) -> None:
    sim = make_sim(receiver, drop_rate=0.4, **MIX)
    try:
        play(sim, [f"attempt-{n}" for n in range(12)])
        truth = sim.calls()
        summary = sim.summary()
    finally:
        sim.close()

    received = Counter((h.body["custom_identifier"], h.body["call_status"]) for h in receiver.hooks)
    dropped = 0
    for record in truth:
        for webhook in record["webhooks"]:
            if webhook["dropped"]:
                dropped += 1
                assert (webhook["copies"], webhook["sent"], webhook["delivered"]) == (0, 0, 0)
                assert webhook["kind"] not in record["webhook_order"]
        sent = Counter((record["custom_identifier"], w["call_status"]) for w in record["webhooks"] if not w["dropped"])
        assert {k: v for k, v in received.items() if k[0] == record["custom_identifier"]} == dict(sent)
    hangups_lost = sum(w["dropped"] for r in truth for w in r["webhooks"] if w["kind"] == "hangup")
    assert 0 < dropped < summary["webhooks"]["planned"]
    assert hangups_lost > 0
    assert summary["webhooks"]["dropped"] == dropped
    assert summary["webhooks"]["delivered"] == len(receiver.hooks)


def test_get_form_and_json_mix(receiver: Receiver) -> None:
    receiver.url += "?token=hook-secret"
    sim = make_sim(receiver, get_rate=0.4, form_rate=0.5, **ALL_ANSWERED)
    try:
        play(sim, [f"attempt-{n}" for n in range(6)])
        truth = {c["custom_identifier"]: c for c in sim.calls()}
    finally:
        sim.close()

    seen = Counter()
    for ident, hooks in receiver.by_call().items():
        encodings = {ANSWERED_STATUS[w["kind"]]: w["encoding"] for w in truth[ident]["webhooks"]}
        for hook in hooks:
            encoding = encodings[hook.body["call_status"]]
            seen[encoding] += 1
            if encoding == "get":
                assert hook.method == "GET" and hook.raw.startswith(b"token=hook-secret&")
                assert hook.body["token"] == "hook-secret"
            else:
                assert hook.method == "POST"
                expected = "application/json" if encoding == "json" else "application/x-www-form-urlencoded"
                assert hook.content_type == expected
            if hook.body["call_status"] == "answered" and encoding != "json":
                assert json.loads(hook.body["answered_agent"])["number"] == truth[ident]["agent_number"]
    assert set(seen) == {"get", "form", "json"}


def test_quirks_are_deterministic_per_call_whatever_the_order(receiver: Receiver) -> None:
    idents = [f"attempt-{n}" for n in range(10)]
    quirks = {"drop_rate": 0.2, "duplicate_rate": 0.3, "reorder_rate": 0.3, "get_rate": 0.2, "form_rate": 0.3}
    seen = []
    for order in (idents, idents[::-1]):
        sim = make_sim(receiver, **MIX, **quirks)
        try:
            play(sim, order)
            seen.append(
                {c["custom_identifier"]: (c["outcome"], c["webhooks"], c["webhook_order"]) for c in sim.calls()}
            )
        finally:
            sim.close()
    assert seen[0] == seen[1]


# ---- API failure modes -----------------------------------------------------------------------


def test_rate_limited_with_and_without_retry_after(receiver: Receiver) -> None:
    sim = make_sim(receiver, rate_limit_rate=1.0, retry_after_share=0.5, retry_after_seconds=7)
    try:
        with running(sim) as client:
            responses = [dial(client, f"attempt-{n}") for n in range(12)]
            logged = client.get("/sim/requests").json()
        assert sim.wait_idle(5)
        assert sim.calls() == []
    finally:
        sim.close()

    assert {r.status_code for r in responses} == {429}
    assert {r.json()["success"] for r in responses} == {False}
    headers = [r.headers.get("retry-after") for r in responses]
    assert set(headers) == {"7", None}
    assert [e["retry_after"] for e in logged] == [None if h is None else int(h) for h in headers]
    assert {(e["status"], e["response"], e["injected"], e["placed"]) for e in logged} == {
        (429, "rate_limited", True, False)
    }
    assert [e["custom_identifier"] for e in logged] == [f"attempt-{n}" for n in range(12)]


def test_unauthorized_and_bad_request_at_configured_rates(receiver: Receiver) -> None:
    sim = make_sim(
        receiver, unauthorized_rate=0.5, bad_request_rate=0.5, bad_request_messages=["Agent is not available."]
    )
    try:
        with running(sim) as client:
            responses = [dial(client, f"attempt-{n}") for n in range(10)]
        assert sim.wait_idle(5)
        logged = sim.requests()
    finally:
        sim.close()

    bodies = {(r.status_code, r.json()["message"]) for r in responses}
    assert bodies == {(401, "Unauthenticated"), (400, "Agent is not available.")}
    assert {(e["response"], e["placed"]) for e in logged} == {("unauthorized", False), ("bad_request", False)}
    assert sim.calls() == []


def test_requests_fates_repeat_with_the_seed(receiver: Receiver) -> None:
    mix = {
        "unauthorized_rate": 0.2,
        "bad_request_rate": 0.2,
        "rate_limit_rate": 0.2,
        "server_error_after_place_rate": 0.2,
    }
    runs = []
    for _ in range(2):
        sim = make_sim(receiver, **mix)
        try:
            with running(sim) as client:
                runs.append(
                    [(r.status_code, r.headers.get("retry-after")) for r in (dial(client, "x") for _ in range(15))]
                )
            assert sim.wait_idle(10)
        finally:
            sim.close()
    assert runs[0] == runs[1]
    assert len({status for status, _ in runs[0]}) >= 3


def test_server_error_after_place_still_places_the_call(receiver: Receiver) -> None:
    sim = make_sim(receiver, server_error_after_place_rate=1.0, **ALL_ANSWERED)
    try:
        with running(sim) as client:
            response = dial(client, "attempt-1")
            assert sim.wait_idle(10)
            calls = client.get("/sim/calls").json()
            logged = client.get("/sim/requests").json()
    finally:
        sim.close()

    assert response.status_code == 500
    assert response.json()["success"] is False
    [call] = calls
    assert (call["custom_identifier"], call["api_status"], call["api_response"]) == (
        "attempt-1",
        500,
        "server_error_after_place",
    )
    assert [h.body["call_status"] for h in receiver.hooks] == ["Answered by agent", "Answered by customer", "answered"]
    [entry] = logged
    assert (entry["status"], entry["placed"], entry["ref_id"]) == (500, True, call["ref_id"])


def test_slow_answer_outlasts_the_client_timeout_and_places_the_call(receiver: Receiver) -> None:
    sim = make_sim(receiver, slow_rate=1.0, slow_seconds=1.0, **ALL_ANSWERED)
    try:
        with running(sim) as client:
            with pytest.raises(httpx.ReadTimeout):
                body = {
                    "agent_number": "+918287842425",
                    "destination_number": "919812345678",
                    "custom_identifier": "s-1",
                }
                client.post("/v1/click_to_call", json=body, headers=AUTH, timeout=0.2)
            assert sim.wait_idle(10)
            [entry] = client.get("/sim/requests").json()
    finally:
        sim.close()

    [call] = sim.calls()
    assert (call["custom_identifier"], call["api_response"]) == ("s-1", "slow")
    assert (entry["response"], entry["placed"], entry["ref_id"]) == ("slow", True, call["ref_id"])
    assert len(receiver.hooks) == 3


def test_per_second_limit_refuses_the_excess(receiver: Receiver) -> None:
    clock = FakeClock()
    sim = make_sim(receiver, clock, max_requests_per_second=3, retry_after_share=1.0)
    try:
        with running(sim) as client:
            first = [dial(client, f"a-{n}", agent=f"+9180000000{n}") for n in range(4)]
            clock.now += 0.5
            still = dial(client, "a-4", agent="+91800000004")
            clock.now += 0.5
            later = dial(client, "a-5", agent="+91800000005")
            assert sim.wait_idle(10)
        logged = sim.requests()
    finally:
        sim.close()

    assert [r.status_code for r in first] == [200, 200, 200, 429]
    assert first[3].headers["retry-after"] == "1"
    assert still.status_code == 429
    assert later.status_code == 200
    assert [e["response"] for e in logged] == ["originated"] * 3 + ["over_limit"] * 2 + ["originated"]
    assert len(sim.calls()) == 4


# ---- call records ----------------------------------------------------------------------------


def test_call_records_filters_and_pages(receiver: Receiver) -> None:
    sim = make_sim(receiver, records_per_second=0, caller_ids=["+919240202904"], **MIX)
    zone = ZoneInfo("Asia/Kolkata")
    try:
        with running(sim) as client:
            for n in range(5):
                place(client, f"attempt-{n}", agent=f"+9180000{n:05d}", destination_number=f"+9198123456{n:02d}")
            assert sim.wait_idle(10)
            truth = {c["custom_identifier"]: c for c in sim.calls()}

            def records(**params: Any) -> dict[str, Any]:
                response = client.get("/v1/call/records", params=params, headers=AUTH)
                assert response.status_code == 200, response.text
                return dict(response.json())

            everything = records()
            pages = [records(limit=2, page=p) for p in (1, 2, 3, 4)]
            by_call_id = records(call_id=truth["attempt-2"]["call_id"])
            by_customer = records(callerid="9812345603")
            by_did = records(did_number="9240202904")
            answered = records(call_type="c")
            now = datetime.now(zone)
            stamp = "%Y-%m-%d %H:%M:%S"
            window = records(
                from_date=(now - timedelta(hours=1)).strftime(stamp), to_date=(now + timedelta(hours=1)).strftime(stamp)
            )
            future = records(from_date=(now + timedelta(hours=1)).strftime(stamp))
            past = records(to_date=(now - timedelta(hours=1)).strftime(stamp))
            capped = records(limit=500)
            bad_date = client.get("/v1/call/records", params={"from_date": "2026-04-09"}, headers=AUTH)
            bad_page = client.get("/v1/call/records", params={"page": "0"}, headers=AUTH)
            no_token = client.get("/v1/call/records")
    finally:
        sim.close()

    assert (everything["count"], everything["page"], everything["limit"], len(everything["results"])) == (5, 1, 10, 5)
    ids = [r["call_id"] for page in pages for r in page["results"]]
    assert [len(page["results"]) for page in pages] == [2, 2, 1, 0]
    assert {page["count"] for page in pages} == {5}
    assert ids == sorted(ids, reverse=True) == [r["call_id"] for r in everything["results"]]
    for row in everything["results"]:
        record = truth[row["custom_identifier"]]
        assert (row["call_id"], row["uuid"], row["ref_id"]) == (record["call_id"], record["uuid"], record["ref_id"])
        assert (row["agent_number"], row["client_number"]) == (record["agent_number"], record["destination_number"])
        assert row["status"] == ("answered" if record["outcome"] == "answered" else "missed")
        assert row["billsec"] == record["billsec"] and row["duration"] >= row["billsec"]
        assert STAMP.fullmatch(row["start_stamp"]) and STAMP.fullmatch(row["end_stamp"])
        assert row["hangup_cause"]
        assert (row["recording_url"] is not None) == (record["outcome"] == "answered")
    assert [r["custom_identifier"] for r in by_call_id["results"]] == ["attempt-2"]
    assert [r["custom_identifier"] for r in by_customer["results"]] == ["attempt-3"]
    assert by_did["count"] == 5
    assert answered["count"] == sum(c["outcome"] == "answered" for c in truth.values())
    assert (window["count"], future["count"], past["count"]) == (5, 0, 0)
    assert capped["limit"] == 100
    assert bad_date.status_code == 400 and "Y-m-d H:i:s" in bad_date.json()["message"]
    assert bad_page.status_code == 400
    assert no_token.status_code == 401


def test_call_records_are_rate_limited(receiver: Receiver) -> None:
    clock = FakeClock()
    sim = make_sim(receiver, clock, records_per_second=2, retry_after_share=0.0)
    try:
        with running(sim) as client:
            statuses = [client.get("/v1/call/records", headers=AUTH) for _ in range(3)]
            clock.now += 1.0
            after = client.get("/v1/call/records", headers=AUTH)
        summary = sim.summary()
    finally:
        sim.close()
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert "retry-after" not in statuses[2].headers
    assert after.status_code == 200
    assert summary["by_endpoint"]["call_records"] == {"200": 3, "429": 1}


# ---- login and refresh -----------------------------------------------------------------------


def test_login_refresh_and_expiry(receiver: Receiver) -> None:
    clock = FakeClock()
    sim = make_sim(receiver, clock, login_id="ops@example.com", password="s3cret", token_ttl=60)
    try:
        with running(sim) as client:
            wrong = client.post("/v1/auth/login", json={"login_id": "ops@example.com", "password": "nope"})
            login = client.post("/v1/auth/login", json={"email": "ops@example.com", "password": "s3cret"})
            token = login.json()["access_token"]
            bearer = {"Authorization": f"Bearer {token}"}
            by_form = client.post("/v1/auth/login", data={"login_id": "ops@example.com", "password": "s3cret"})
            assert dial(client, "t-1", **bearer).status_code == 200
            assert client.get("/v1/call/records", headers=bearer).status_code == 200
            refresh_long_lived = client.post("/v1/auth/refresh", headers=AUTH)
            clock.now += 30
            refreshed = client.post("/v1/auth/refresh", headers=bearer)
            new_bearer = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
            old_still_good = dial(client, "t-2", agent="+918000000002", **bearer)
            clock.now += 31  # the first token is 61 s old, the refreshed one 31 s
            old_expired = dial(client, "t-3", agent="+918000000003", **bearer)
            refresh_expired = client.post("/v1/auth/refresh", headers=bearer)
            new_good = dial(client, "t-4", agent="+918000000004", **new_bearer)
            clock.now += 30
            new_expired = client.get("/v1/call/records", headers=new_bearer)
            long_lived = dial(client, "t-5", agent="+918000000005")
            assert sim.wait_idle(10)
        logged = json.dumps(sim.requests())
    finally:
        sim.close()

    assert wrong.status_code == 401
    assert login.status_code == 200
    assert login.json()["success"] is True
    assert (login.json()["token_type"], login.json()["expires_in"]) == ("bearer", 60)
    assert by_form.status_code == 200
    assert refresh_long_lived.status_code == 401
    assert refreshed.status_code == 200 and refreshed.json()["access_token"] != token
    assert old_still_good.status_code == 200
    assert old_expired.status_code == 401
    assert refresh_expired.status_code == 401
    assert new_good.status_code == 200
    assert new_expired.status_code == 401
    assert long_lived.status_code == 200
    assert token not in logged and "s3cret" not in logged


def test_login_is_off_without_credentials(receiver: Receiver) -> None:
    sim = make_sim(receiver)
    try:
        with running(sim) as client:
            response = client.post("/v1/auth/login", json={"login_id": "", "password": ""})
    finally:
        sim.close()
    assert response.status_code == 401


# ---- ground truth summary --------------------------------------------------------------------


def test_summary_adds_up(receiver: Receiver) -> None:
    sim = make_sim(
        receiver,
        rate_limit_rate=0.2,
        server_error_after_place_rate=0.2,
        drop_rate=0.2,
        duplicate_rate=0.3,
        reorder_rate=0.3,
        **MIX,
    )
    try:
        with running(sim) as client:
            responses = [dial(client, f"attempt-{n}", agent=f"+9180000{n:05d}") for n in range(15)]
            assert sim.wait_idle(10)
            summary = client.get("/sim/summary").json()
        calls, requests = sim.calls(), sim.requests()
    finally:
        sim.close()

    statuses = Counter(str(r.status_code) for r in responses)
    assert summary["by_status"] == dict(sorted(statuses.items()))
    assert summary["requests"] == 15
    assert summary["placed"] == len(calls) == statuses["200"] + statuses["500"]
    assert summary["calls"] == len(calls) and summary["in_progress"] == 0
    assert sum(summary["by_outcome"].values()) == len(calls)
    assert summary["by_response"] == dict(sorted(Counter(e["response"] for e in requests).items()))
    hooks = summary["webhooks"]
    assert hooks["planned"] == sum(len(c["webhooks"]) for c in calls)
    assert hooks["delivered"] == hooks["sent"] == len(receiver.hooks)
    assert hooks["sent"] == hooks["planned"] - hooks["dropped"] + hooks["extra_copies"]
    assert hooks["reordered_calls"] == sum(c["reordered"] for c in calls)
    assert hooks["dropped"] > 0 and hooks["duplicated"] > 0


# ---- configuration: validation, scenario files, the command line -----------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"drop_rate": 1.5}, "drop_rate must be between 0 and 1"),
        ({"answer_rate": 0.9, "busy_rate": 0.3}, "answer_rate + busy_rate + no_answer_rate + agent_miss_rate"),
        ({"rate_limit_rate": 0.6, "slow_rate": 0.6}, "must add up to at most 1"),
        ({"max_copies": 12}, "max_copies must be between 2 and 11"),
        ({"login_id": "ops"}, "login_id + password go together"),
        ({"token_ttl": 0}, "token_ttl"),
    ],
)
def test_config_is_validated(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Simulator(SimulatorConfig(**overrides))


def test_scenario_files_read_json_and_toml(tmp_path: Path) -> None:
    toml = tmp_path / "night.toml"
    toml.write_text(
        'drop_rate = 0.1\nmax_copies = 11\ntalk_seconds = [5, 9]\nbad_request_messages = ["Agent is offline."]\n'
    )
    assert load_scenario(toml) == {
        "drop_rate": 0.1,
        "max_copies": 11,
        "talk_seconds": (5, 9),
        "bad_request_messages": ["Agent is offline."],
    }
    as_json = tmp_path / "night.json"
    as_json.write_text('{"answer_rate": 1, "caller_ids": null, "ring_seconds": "2-4"}')
    assert load_scenario(as_json) == {"answer_rate": 1.0, "caller_ids": None, "ring_seconds": (2, 4)}
    for text, problem in (
        ('{"speeed": 2}', "unknown setting(s) speeed"),
        ('{"max_copies": "many"}', "max_copies in scenario"),
        ("[1, 2]", "must be a JSON object"),
        ("drop_rate = ", "not valid JSON or TOML"),
    ):
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(problem)):
            load_scenario(bad)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[SimulatorConfig]]:
    """Run `dialer simulate` in-process with serve() captured instead of started."""
    from dialer import simulator
    from dialer.config import get_settings

    served: list[SimulatorConfig] = []
    monkeypatch.setattr(simulator, "serve", served.append)
    monkeypatch.setenv("DIALER_ACEFONE_TOKEN", "env-token")
    monkeypatch.setenv("DIALER_PUBLIC_URL", "http://127.0.0.1:8123")
    get_settings.cache_clear()
    yield served
    get_settings.cache_clear()


def run_simulate(*args: str) -> Any:
    from typer.testing import CliRunner

    from dialer.cli import app

    return CliRunner().invoke(app, ["simulate", *args])


def test_simulate_flags_override_the_scenario_file(cli: list[SimulatorConfig], tmp_path: Path) -> None:
    scenario = tmp_path / "quirky.toml"
    scenario.write_text("drop_rate = 0.3\nduplicate_rate = 0.2\nseed = 42\nslow_rate = 0.1\n")
    result = run_simulate(
        "--scenario", str(scenario), "--drop-rate", "0.05", "--max-copies", "11", "--talk-seconds", "5-9",
        "--bad-request-message", "Agent is busy.", "--bad-request-message", "Please provide a valid caller_id.",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [config] = cli
    assert (config.drop_rate, config.duplicate_rate, config.seed, config.slow_rate) == (0.05, 0.2, 42, 0.1)
    assert (config.max_copies, config.talk_seconds) == (11, (5, 9))
    assert config.bad_request_messages == ["Agent is busy.", "Please provide a valid caller_id."]
    assert (config.token, config.webhook_url) == ("env-token", "http://127.0.0.1:8123/webhooks/acefone")
    # Untouched flags keep the defaults.
    assert (config.answer_rate, config.records_per_second, config.retry_after_share) == (0.5, 2, 0.5)


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--drop-rate", "1.2"], "--drop-rate must be between 0 and 1"),
        (["--answer-rate", "0.9", "--busy-rate", "0.2"], "--answer-rate + --busy-rate"),
        (["--slow-rate", "0.7", "--rate-limit-rate", "0.7"], "--rate-limit-rate + --server-error-after-place-rate"),
        (["--max-copies", "1"], "--max-copies must be between 2 and 11"),
        (["--ring-seconds", "9-x"], "--ring-seconds must be LOW-HIGH"),
    ],
)
def test_simulate_rejects_bad_settings_in_one_line(cli: list[SimulatorConfig], args: list[str], flag: str) -> None:
    result = run_simulate(*args)
    assert result.exit_code == 1
    assert cli == []
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], result.output
