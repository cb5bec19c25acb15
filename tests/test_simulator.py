"""The Acefone simulator: API rules, webhook shapes per outcome, determinism and agent tracking."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import uvicorn

from dialer.simulator import Simulator, SimulatorConfig

TOKEN = "sim-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
# An outcome mix where each outcome shows up among a few dozen calls.
MIX = {"answer_rate": 0.3, "busy_rate": 0.2, "no_answer_rate": 0.2, "agent_miss_rate": 0.15}
ALL_ANSWERED = {"answer_rate": 1.0, "busy_rate": 0.0, "no_answer_rate": 0.0, "agent_miss_rate": 0.0}


@dataclass
class Hook:
    """One webhook as the receiver saw it."""

    content_type: str
    headers: dict[str, str]
    body: dict[str, Any]


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
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            with rec.lock:
                rec.seen += 1
                failing = rec.seen <= rec.fail_first
                if not failing:
                    ctype = self.headers.get("content-type", "")
                    if ctype.startswith("application/json"):
                        body = json.loads(raw)
                    else:
                        body = dict(parse_qsl(raw.decode(), keep_blank_values=True))
                    rec.hooks.append(Hook(ctype, dict(self.headers.items()), body))
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


@contextmanager
def running(sim: Simulator) -> Iterator[httpx.Client]:
    """Serve the simulator's app with uvicorn on a free 127.0.0.1 port; yield a client for it."""
    # A real server rather than starlette's TestClient, which warns when httpx2 is not installed.
    server = uvicorn.Server(uvicorn.Config(sim.app(), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            thread.join(0.01)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join()


def make_sim(receiver: Receiver, **overrides: Any) -> Simulator:
    options: dict[str, Any] = {"webhook_url": receiver.url, "speed": 0.001, "seed": 7, **overrides}
    return Simulator(SimulatorConfig(**options))


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
            "requested_at",
            "ended_at",
            "webhooks_delivered",
        }
        assert record["requested_at"].endswith("+00:00") and record["ended_at"] >= record["requested_at"]
