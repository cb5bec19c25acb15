"""Campaign numbers on a seeded campaign whose right values are worked out by hand, in every view.

The seeded campaign (`seed_campaign`), at NOW, two agents A1 (free) and A2 (on a call):

    lead  status     attempts (agent, minutes before NOW, outcome, duration/billsec, cause)
    L1    contacted  1: A1 -50 no_answer 30s NO_ANSWER      2: A2 -30 completed 130s/120s NORMAL_CLEARING
    L2    contacted  1: A1 -20 completed 70s/60s NORMAL_CLEARING
    L3    exhausted  1: A1 -55 busy 5s USER_BUSY  2: A2 -40 busy 5s USER_BUSY  3: A1 -5 no_answer 30s NO_ANSWER
    L4    pending    1: A2 -8 no_answer 30s NO_ANSWER; waiting_for_retry until NOW+30m
    L5    pending    outside_window until NOW+10h, never called
    L6    pending    due since NOW-1h; 1: cancelled before dialling (not a call)
    L7    pending    1: A1 -3 agent_missed 20s; waiting_for_retry but due since NOW-1m
    L8    dnc        never called
    L9    in_call    1: A2 -1 originated (on the line)
    L10   invalid    1: A1 -45 failed (Acefone refused the number)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from factories import ALL_DAYS, ALWAYS, agents_of, make_campaign
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from dialer import reports
from dialer.campaigns import pause_campaign
from dialer.config import get_settings
from dialer.db import session_scope
from dialer.identifiers import format_identifier
from dialer.models import Agent, CallAttempt, Campaign, ImportJob, Lead
from dialer.outcomes import settle_attempt
from dialer.states import AttemptStatus, CampaignState, LeadStatus

NOW = dt.datetime(2026, 4, 8, 11, 0, tzinfo=dt.UTC)
API_TOKEN = "report-api-token-1"

# The hand-worked truth for the seeded campaign (see the module docstring).
EXPECTED: dict[str, Any] = {
    "total_leads": 10,
    "leads": {"pending": 4, "in_call": 1, "contacted": 2, "exhausted": 1, "dnc": 1, "invalid": 1, "cancelled": 0},
    "finished_leads": 5,
    "open_leads": 5,
    "contacted": 2,
    "calls_in_progress": 1,
    "due_leads": 2,
    "dialable_now": 2,
    "blocked_by_reason": {"outside_window": 1, "waiting_for_retry": 1},
    "pending_by_reason": {"due": 1, "outside_window": 1, "waiting_for_retry": 2},
    "penetration": 0.5,
    "agents_summary": {"total": 2, "free": 1, "on_call": 1, "paused": 0},
    "leads_attempted": 7,
    "attempts": 10,
    "calls_placed": 10,
    "outcomes": {
        "queued": 0,
        "dialing": 0,
        "ambiguous": 0,
        "originated": 1,
        "agent_answered": 0,
        "customer_answered": 0,
        "completed": 2,
        "failed": 1,
        "no_answer": 3,
        "busy": 2,
        "agent_missed": 1,
        "lost": 0,
        "cancelled": 1,
    },
    "hangup_causes": {"NO_ANSWER": 3, "NORMAL_CLEARING": 2, "USER_BUSY": 2},
    # 2 contacted of 7 leads with a placed call; 2 completed of 10 calls placed.
    "contact_rate": 0.2857,
    "answer_rate": 0.2,
    "talk_seconds": 180,
    "avg_talk_seconds": 90.0,
    "passes": [
        {"attempt": 1, "calls": 7, "contacts": 1, "contact_rate": 0.1429},
        {"attempt": 2, "calls": 2, "contacts": 1, "contact_rate": 0.5},
        {"attempt": 3, "calls": 1, "contacts": 0, "contact_rate": 0.0},
    ],
}
# A1: 6 calls, 1 contact (L2, 60 s); on calls 30+70+5+30+20+0 = 155 s between its first dial
# (-55 min) and last hang-up (L7: -3 min + 20 s): idle 3140 - 155 = 2985 s.
# A2: 4 calls, 1 contact (L1, 120 s); on calls 130+5+30 = 165 s (L9 still on the line) between
# -40 min and -8 min + 30 s: idle 1950 - 165 = 1785 s.
EXPECTED_AGENTS = [
    {"calls": 6, "contacts": 1, "talk_seconds": 60, "busy_seconds": 155, "idle_seconds": 2985, "state": "free"},
    {"calls": 4, "contacts": 1, "talk_seconds": 120, "busy_seconds": 165, "idle_seconds": 1785, "state": "on_call"},
]


@dataclass
class Seeded:
    campaign_id: int
    agent_numbers: list[str]
    lead_ids: dict[str, int]
    phones: dict[str, str]
    import_job_id: int


def _minutes(n: float, now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(minutes=n)


def seed_campaign(session: Session, now: dt.datetime = NOW) -> Seeded:
    """Create the campaign of the module docstring, as the pacer, dialler and webhooks would leave it."""
    campaign = make_campaign(session, agents=2, window=ALWAYS, days=list(ALL_DAYS), max_attempts=3)
    a1, a2 = agents_of(campaign)
    job = ImportJob(
        campaign_id=campaign.id,
        filename="leads.csv",
        total_rows=13,
        accepted=10,
        rejected=3,
        rejects_by_reason={"invalid_number": 2, "duplicate": 1},
    )
    session.add(job)
    session.flush()
    # (status, charged attempts, next_attempt_at, blocked_reason, last_outcome, custom fields)
    plan: dict[str, tuple[LeadStatus, int, dt.datetime, str | None, str | None, dict[str, Any]]] = {
        "L1": (
            LeadStatus.CONTACTED,
            2,
            now,
            None,
            "completed",
            {
                "name": '=HYPERLINK("http://evil.example","x")',
                "status": "VIP",
                "note": "-5",
                "crm": "@SUM(A1)",
                "tab": "\tx",
                "wide": "\uff1d1+1",
            },
        ),
        "L2": (LeadStatus.CONTACTED, 1, now, None, "completed", {"name": "Bob"}),
        "L3": (LeadStatus.EXHAUSTED, 3, now, None, "no_answer", {"name": "Cy"}),
        "L4": (LeadStatus.PENDING, 1, now + dt.timedelta(minutes=30), "waiting_for_retry", "no_answer", {}),
        "L5": (LeadStatus.PENDING, 0, now + dt.timedelta(hours=10), "outside_window", None, {}),
        "L6": (LeadStatus.PENDING, 0, now - dt.timedelta(hours=1), None, "cancelled", {}),
        "L7": (LeadStatus.PENDING, 0, now - dt.timedelta(minutes=1), "waiting_for_retry", "agent_missed", {}),
        "L8": (LeadStatus.DNC, 0, now, "dnc", None, {}),
        "L9": (LeadStatus.IN_CALL, 0, now, None, None, {}),
        "L10": (LeadStatus.INVALID, 1, now, None, "failed", {}),
    }
    leads: dict[str, Lead] = {}
    for i, (name, (status, charged, due, reason, last, fields)) in enumerate(plan.items()):
        leads[name] = Lead(
            campaign_id=campaign.id,
            import_job_id=job.id,
            source_row=i + 2,
            phone_e164=f"+4477009{campaign.id % 100:02d}{i:03d}",
            timezones=["Europe/London"],
            custom_fields=fields,
            status=status,
            attempts=charged,
            attempt_seq=0,
            next_attempt_at=due,
            blocked_reason=reason,
            last_outcome=last,
        )
    session.add_all(leads.values())
    session.flush()

    def call(
        lead: str,
        agent: Agent,
        minutes_ago: float,
        status: AttemptStatus,
        duration: int | None = None,
        billsec: int | None = None,
        cause: str | None = None,
        recording: str | None = None,
        ended: bool = True,
    ) -> CallAttempt:
        row = leads[lead]
        row.attempt_seq += 1
        dialed = _minutes(minutes_ago, now)
        attempt = CallAttempt(
            campaign_id=campaign.id,
            lead_id=row.id,
            agent_id=agent.id,
            attempt_no=row.attempt_seq,
            custom_identifier=format_identifier(campaign_id=campaign.id, lead_id=row.id, attempt_no=row.attempt_seq),
            status=status,
            charged=status not in (AttemptStatus.AGENT_MISSED, AttemptStatus.CANCELLED, AttemptStatus.ORIGINATED),
            send_count=0 if status == AttemptStatus.CANCELLED else 1,
            dialed_at=None if status == AttemptStatus.CANCELLED else dialed,
            ended_at=dialed + dt.timedelta(seconds=duration or 10) if ended else None,
            duration=duration,
            billsec=billsec,
            hangup_cause=cause,
            recording_url=recording,
        )
        session.add(attempt)
        session.flush()
        return attempt

    call("L1", a1, 50, AttemptStatus.NO_ANSWER, 30, 0, "NO_ANSWER")
    call("L1", a2, 30, AttemptStatus.COMPLETED, 130, 120, "NORMAL_CLEARING", "https://rec.example/1.mp3")
    call("L2", a1, 20, AttemptStatus.COMPLETED, 70, 60, "NORMAL_CLEARING")
    call("L3", a1, 55, AttemptStatus.BUSY, 5, 0, "USER_BUSY")
    call("L3", a2, 40, AttemptStatus.BUSY, 5, 0, "USER_BUSY")
    call("L3", a1, 5, AttemptStatus.NO_ANSWER, 30, 0, "NO_ANSWER")
    call("L4", a2, 8, AttemptStatus.NO_ANSWER, 30, 0, "NO_ANSWER")
    call("L6", a1, 61, AttemptStatus.CANCELLED, ended=False)
    call("L7", a1, 3, AttemptStatus.AGENT_MISSED, 20, 0)
    live = call("L9", a2, 1, AttemptStatus.ORIGINATED, ended=False)
    call("L10", a1, 45, AttemptStatus.FAILED)
    a1.available_at = _minutes(2, now)
    a2.reserved_attempt_id = live.id
    a2.lease_until = now + dt.timedelta(minutes=5)
    session.flush()
    # When each lead reached its final status (the pace and the ETA read it); last, so no
    # later flush moves it.
    finished = {"L1": 29, "L2": 19, "L3": 4, "L8": 120, "L10": 44}
    for name, minutes_ago in finished.items():
        session.execute(sa.update(Lead).where(Lead.id == leads[name].id).values(updated_at=_minutes(minutes_ago, now)))
    session.expire_all()
    return Seeded(
        campaign_id=campaign.id,
        agent_numbers=[a1.number, a2.number],
        lead_ids={k: v.id for k, v in leads.items()},
        phones={k: v.phone_e164 for k, v in leads.items()},
        import_job_id=job.id,
    )


def install_counters(session: Session) -> None:
    """Create campaign_counters and its triggers inside the test's transaction (rolled back after)."""
    session.connection().exec_driver_sql(reports.counters_table_ddl())
    session.connection().exec_driver_sql(reports.counters_ddl())


def remove_counters(session: Session) -> None:
    """Drop what migration 0004 installed, inside the test's transaction (rolled back after)."""
    session.connection().exec_driver_sql(reports.drop_counters_ddl())
    session.connection().exec_driver_sql(f"DROP TABLE {reports.COUNTERS_TABLE}")


def _check_numbers(data: dict[str, Any], *, clock: bool = True) -> None:
    clock_keys = {"due_leads", "dialable_now", "blocked_by_reason", "pending_by_reason", "agents_summary"}
    for key, value in EXPECTED.items():
        if key in data and (clock or key not in clock_keys):
            assert data[key] == value, key


@pytest.fixture(params=["computed", "triggers", "backfill"])
def seeded(request: pytest.FixtureRequest, session: Session) -> Seeded:
    """The seeded campaign, its numbers read three ways: computed from rows, maintained, backfilled."""
    # Migrations install the counters; "computed" and "backfill" start without them.
    if request.param != "triggers":
        remove_counters(session)
    result = seed_campaign(session)
    if request.param == "backfill":
        install_counters(session)
    assert reports.counters_installed(session=session) == (request.param != "computed")
    return result


def test_report_numbers(session: Session, seeded: Seeded) -> None:
    report = reports.campaign_report(session=session, campaign_id=seeded.campaign_id, now=NOW)
    _check_numbers(report)
    agents = [{k: a[k] for k in EXPECTED_AGENTS[0]} for a in report["agents"]]
    assert [a["agent"] for a in report["agents"]] == seeded.agent_numbers
    assert agents == EXPECTED_AGENTS


def test_status_numbers(session: Session, seeded: Seeded) -> None:
    status = reports.campaign_status(session=session, campaign_id=seeded.campaign_id, now=NOW)
    _check_numbers(status)
    assert {
        "id",
        "name",
        "state",
        "state_reason",
        "total_leads",
        "leads",
        "finished_leads",
        "calls_in_progress",
        "dialable_now",
        "pending_by_reason",
    } <= status.keys()
    assert status["state"] == "running"


def test_timelines(session: Session, seeded: Seeded) -> None:
    report = reports.campaign_report(session=session, campaign_id=seeded.campaign_id, now=NOW)
    minutes = report["calls_per_minute"]
    assert len(minutes) == reports.TIMELINE_MINUTES
    assert minutes[-1]["t"] == "2026-04-08T11:00:00Z" and minutes[0]["t"] == "2026-04-08T10:01:00Z"
    busy = {m["t"][11:16]: (m["calls"], m["contacts"]) for m in minutes if m["calls"]}
    # Ten calls placed, each in its own minute; the two completed ones are contacts.
    assert busy == {
        "10:05": (1, 0),
        "10:10": (1, 0),
        "10:15": (1, 0),
        "10:20": (1, 0),
        "10:30": (1, 1),
        "10:40": (1, 1),
        "10:52": (1, 0),
        "10:55": (1, 0),
        "10:57": (1, 0),
        "10:59": (1, 0),
    }
    assert report["calls_per_hour"] == [{"t": "2026-04-08T10:00:00Z", "calls": 10, "contacts": 2}]


def test_pace_and_eta(session: Session, seeded: Seeded) -> None:
    status = reports.campaign_status(session=session, campaign_id=seeded.campaign_id, now=NOW)
    # Window 10:51-11:00 (9 minutes): one lead finished (L3), four calls placed.
    assert status["pace"] == {"since": "2026-04-08T10:51:00+00:00", "leads_per_minute": 0.11, "calls_per_minute": 0.44}
    # Five open leads at 1/9 lead a minute.
    assert status["eta_seconds"] == 2700
    assert status["eta_at"] == (NOW + dt.timedelta(seconds=2700)).isoformat()


def test_no_free_agent_blocks_due_leads(session: Session, seeded: Seeded) -> None:
    a1 = session.scalars(sa.select(Agent).where(Agent.number == seeded.agent_numbers[0])).one()
    a1.paused_until = NOW + dt.timedelta(minutes=5)
    session.flush()
    status = reports.campaign_status(session=session, campaign_id=seeded.campaign_id, now=NOW)
    assert status["dialable_now"] == 0
    assert status["blocked_by_reason"] == {"no_agent": 2, "outside_window": 1, "waiting_for_retry": 1}
    assert status["agents_summary"] == {"total": 2, "free": 0, "on_call": 1, "paused": 1}


def test_paused_campaign_blocks_due_leads_and_has_no_eta(session: Session, seeded: Seeded) -> None:
    pause_campaign(session=session, campaign_id=seeded.campaign_id, reason="operator")
    status = reports.campaign_status(session=session, campaign_id=seeded.campaign_id, now=NOW)
    assert status["dialable_now"] == 0
    assert status["blocked_by_reason"]["campaign_paused"] == 2
    assert status["eta_seconds"] is None
    assert status["state_reason"] == "operator"


def test_due_time_is_to_the_second(session: Session, seeded: Seeded) -> None:
    # L4 becomes due at NOW + 30 min: one second before it waits, at that second it is due.
    before = reports.campaign_status(
        session=session, campaign_id=seeded.campaign_id, now=NOW + dt.timedelta(minutes=30, seconds=-1)
    )
    at = reports.campaign_status(session=session, campaign_id=seeded.campaign_id, now=NOW + dt.timedelta(minutes=30))
    assert (before["due_leads"], at["due_leads"]) == (2, 3)
    assert "waiting_for_retry" not in at["blocked_by_reason"]


def test_import_jobs(session: Session, seeded: Seeded) -> None:
    jobs = reports.campaign_report(session=session, campaign_id=seeded.campaign_id, now=NOW)["import_jobs"]
    assert [(j["filename"], j["total_rows"], j["accepted"], j["rejected"], j["rejects_by_reason"]) for j in jobs] == [
        ("leads.csv", 13, 10, 3, {"invalid_number": 2, "duplicate": 1})
    ]


def test_maintained_counters_follow_calls_and_compaction(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    assert reports.counters_installed(session=session)  # installed by migration 0004
    seeded = seed_campaign(session)
    # The live call ends (a hangup), then the waiting lead L7 is claimed and its call fails.
    live = session.scalars(
        sa.select(CallAttempt).where(
            CallAttempt.lead_id == seeded.lead_ids["L9"], CallAttempt.status == AttemptStatus.ORIGINATED
        )
    ).one()
    live.billsec, live.duration, live.hangup_cause = 45, 50, "NORMAL_CLEARING"
    settle_attempt(session=session, attempt=live, status=AttemptStatus.COMPLETED, now=NOW, wrapup_seconds=5)
    live.ended_at = NOW
    session.flush()
    counted = reports.campaign_facts(session=session, campaign_id=seeded.campaign_id)
    computed = reports.compute_facts(session=session, campaign_id=seeded.campaign_id)
    assert counted.sums == computed.sums
    report = reports.campaign_report(session=session, campaign_id=seeded.campaign_id, now=NOW)
    assert (report["contacted"], report["outcomes"]["completed"], report["talk_seconds"]) == (3, 3, 225)
    assert report["calls_in_progress"] == 0
    rows_before = counted.rows
    removed = reports.compact_counters(session=session, campaign_id=seeded.campaign_id, now=NOW)
    assert removed > 0
    compacted = reports.campaign_facts(session=session, campaign_id=seeded.campaign_id)
    assert compacted.rows == len(compacted.sums) < rows_before
    # Due leads now share a key per reason; every number stays the same.
    assert reports.campaign_report(session=session, campaign_id=seeded.campaign_id, now=NOW) == report
    monkeypatch.setattr(reports, "counters_installed", lambda session: False)
    assert reports.campaign_report(session=session, campaign_id=seeded.campaign_id, now=NOW) == report


def test_counters_ddl_has_no_bind_markers() -> None:
    # Run through SQLAlchemy text() by a migration, ":name" would become a bind parameter.
    import re

    ddl = reports.counters_ddl()
    assert not re.search(r"(?<![:\w]):[A-Za-z_]\w*", ddl)
    assert "%" not in ddl


# --- lead-level CSV ----------------------------------------------------------------------------------


def test_safe_cell_neutralises_formulas() -> None:
    for dangerous in ("=1+1", "+44 7700", "-5", "@SUM(A1)", "\tx", "\rx", "\uff1d1", "\uff0b1", "\uff0d1", "\uff201"):
        assert reports.safe_cell(dangerous) == "'" + dangerous
    for harmless in ("Ann", "07700 900001", "a=b", "", "1-2"):
        assert reports.safe_cell(harmless) == harmless
    assert reports.safe_cell(None) == ""


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_leads_csv(session: Session) -> None:
    seeded = seed_campaign(session)
    text = reports.leads_csv(session=session, campaign_id=seeded.campaign_id)
    rows = _csv_rows(text)
    assert len(rows) == 10
    header = next(csv.reader(io.StringIO(text)))
    assert header[: len(reports.EXPORT_COLUMNS)] == list(reports.EXPORT_COLUMNS)
    # A custom column named like one of ours is renamed, never shadows it.
    assert set(header[len(reports.EXPORT_COLUMNS) :]) == {"crm", "custom_status", "name", "note", "tab", "wide"}
    by_id = {int(r["lead_id"]): r for r in rows}
    l1 = by_id[seeded.lead_ids["L1"]]
    assert l1["phone"] == "'" + seeded.phones["L1"]
    assert (l1["status"], l1["attempts"], l1["last_outcome"], l1["talk_seconds"]) == (
        "contacted",
        "2",
        "completed",
        "120",
    )
    assert l1["recording_url"] == "https://rec.example/1.mp3"
    assert l1["last_call_at"] == _minutes(30, NOW).isoformat()
    assert l1["name"] == "'" + '=HYPERLINK("http://evil.example","x")'
    assert (l1["custom_status"], l1["note"], l1["crm"], l1["tab"], l1["wide"]) == (
        "VIP",
        "'-5",
        "'@SUM(A1)",
        "'\tx",
        "'\uff1d1+1",
    )
    l3 = by_id[seeded.lead_ids["L3"]]
    assert (l3["status"], l3["attempts"], l3["talk_seconds"], l3["recording_url"]) == ("exhausted", "3", "0", "")
    assert by_id[seeded.lead_ids["L5"]]["last_call_at"] == ""
    # No cell anywhere starts a formula.
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_leads_csv_streams_in_chunks(session: Session) -> None:
    seeded = seed_campaign(session)
    chunks = list(reports.iter_leads_csv(session=session, campaign_id=seeded.campaign_id, batch=3))
    assert len(chunks) == 4  # header with 3 leads, then 3, 3, 1
    assert "".join(chunks) == reports.leads_csv(session=session, campaign_id=seeded.campaign_id)


# --- the same numbers through the API and the CLI ----------------------------------------------------


@pytest.fixture
def committed(clean_db: sa.Engine) -> Iterator[Seeded]:
    """The seeded campaign, committed (the app and the CLI open their own sessions), at the real now."""
    with session_scope() as s:
        seeded = seed_campaign(s, now=dt.datetime.now(dt.UTC))
    yield seeded


@pytest.fixture
def client(committed: Seeded, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("DIALER_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("DIALER_WEBHOOK_TOKEN", "report-hook-token")
    get_settings.cache_clear()
    from dialer.web.app import create_app

    with TestClient(create_app()) as c:
        yield c
    get_settings.cache_clear()


AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def test_api_report_json_round_trip(client: TestClient, committed: Seeded) -> None:
    cid = committed.campaign_id
    report = client.get(f"/api/campaigns/{cid}/report", headers=AUTH)
    assert report.status_code == 200, report.text
    data = report.json()
    _check_numbers(data, clock=False)
    assert [{k: a[k] for k in ("calls", "contacts", "talk_seconds")} for a in data["agents"]] == [
        {k: a[k] for k in ("calls", "contacts", "talk_seconds")} for a in EXPECTED_AGENTS
    ]
    assert data["import_jobs"][0]["rejected"] == 3
    status = client.get(f"/api/campaigns/{cid}/status", headers=AUTH).json()
    assert (status["total_leads"], status["calls_in_progress"], status["dialable_now"]) == (10, 1, 2)
    one = client.get(f"/api/campaigns/{cid}", headers=AUTH).json()
    assert one["total_leads"] == 10 and one["settings"]["window"] == "00:00-23:59"
    assert [c["id"] for c in client.get("/api/campaigns", headers=AUTH).json()] == [cid]
    for path in ("", "/status", "/report", "/report.csv", "/report.html"):
        assert client.get(f"/api/campaigns/{cid}{path}").status_code == 401
        assert client.get(f"/api/campaigns/999999{path}", headers=AUTH).status_code == 404
    schema = client.get("/openapi.json").json()
    assert "CampaignReportOut" in schema["components"]["schemas"]


def test_api_report_csv_round_trip(client: TestClient, committed: Seeded) -> None:
    response = client.get(f"/api/campaigns/{committed.campaign_id}/report.csv", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = {int(r["lead_id"]): r for r in _csv_rows(response.text)}
    assert len(rows) == 10
    l1 = rows[committed.lead_ids["L1"]]
    assert (l1["phone"], l1["status"], l1["talk_seconds"]) == ("'" + committed.phones["L1"], "contacted", "120")
    assert l1["name"].startswith("'=")


def test_api_report_html(client: TestClient, committed: Seeded) -> None:
    response = client.get(f"/api/campaigns/{committed.campaign_id}/report.html", headers=AUTH)
    assert response.status_code == 200
    _check_numbers(_embedded_report(response.text), clock=False)


def _embedded_report(page: str) -> dict[str, Any]:
    start = page.index('<script id="report-data" type="application/json">') + len(
        '<script id="report-data" type="application/json">'
    )
    return dict(json.loads(page[start : page.index("</script>", start)]))


def test_cli_report_formats(committed: Seeded, tmp_path: Any) -> None:
    from dialer.cli import app

    runner = CliRunner()
    cid = str(committed.campaign_id)
    out = runner.invoke(app, ["report", cid, "--format", "json"])
    assert out.exit_code == 0, out.output
    _check_numbers(json.loads(out.stdout), clock=False)
    table = runner.invoke(app, ["report", cid])
    assert table.exit_code == 0 and "Pass report" in table.stdout and "28.6%" in table.stdout
    csv_file = tmp_path / "leads.csv"
    assert runner.invoke(app, ["report", cid, "--format", "csv", "--output", str(csv_file)]).exit_code == 0
    assert len(_csv_rows(csv_file.read_text())) == 10
    html_file = tmp_path / "report.html"
    assert runner.invoke(app, ["report", cid, "--format", "html", "--output", str(html_file)]).exit_code == 0
    page = html_file.read_text()
    _check_numbers(_embedded_report(page), clock=False)
    # Self-contained: no external script, stylesheet or image.
    assert "<script src" not in page and "<link" not in page and "http://" not in page.split('id="report-data"')[0]
    assert runner.invoke(app, ["report", cid, "--format", "xml"]).exit_code == 1
    missing = runner.invoke(app, ["report", "999999", "--format", "csv", "--output", str(tmp_path / "none.csv")])
    assert missing.exit_code == 1 and not (tmp_path / "none.csv").exists()


def test_cli_status_and_list(committed: Seeded) -> None:
    from dialer.cli import app

    runner = CliRunner()
    cid = str(committed.campaign_id)
    status = runner.invoke(app, ["campaign", "status", cid, "--json"])
    assert status.exit_code == 0, status.output
    data = json.loads(status.stdout)
    assert (data["total_leads"], data["dialable_now"], data["calls_in_progress"]) == (10, 2, 1)
    shown = runner.invoke(app, ["campaign", "status", cid])
    assert shown.exit_code == 0 and "finished" in shown.stdout and "dialable now" in shown.stdout
    listed = runner.invoke(app, ["campaign", "list", "--json"])
    assert [r["id"] for r in json.loads(listed.stdout)] == [committed.campaign_id]
    assert runner.invoke(app, ["campaign", "list"]).exit_code == 0


def test_cli_watch_stops_when_campaign_ends(committed: Seeded) -> None:
    from dialer.cli import app

    with session_scope() as s:
        campaign = s.get(Campaign, committed.campaign_id)
        assert campaign is not None
        campaign.state = CampaignState.COMPLETED
    result = CliRunner().invoke(app, ["campaign", "status", str(committed.campaign_id), "--watch", "--interval", "0.2"])
    assert result.exit_code == 0 and "COMPLETED" in result.stdout


def test_compaction_folds_old_keys_without_changing_a_number(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    assert reports.counters_installed(session=session)  # installed by migration 0004
    seeded = seed_campaign(session)
    later = NOW + dt.timedelta(days=3)
    reports.compact_counters(session=session, campaign_id=seeded.campaign_id, now=later)
    facts = reports.campaign_facts(session=session, campaign_id=seeded.campaign_id)
    # Every pending lead is due by then: one key per reason; minutes three days old are hours.
    assert set(facts.keys("pending_at")) == {
        f"{r}@{reports.LONG_AGO_KEY}" for r in ("", "outside_window", "waiting_for_retry")
    }
    assert set(facts.keys("calls_minute")) == {"2026-04-08T10"}
    folded = reports.campaign_report(session=session, campaign_id=seeded.campaign_id, now=later)
    monkeypatch.setattr(reports, "counters_installed", lambda session: False)
    computed = reports.campaign_report(session=session, campaign_id=seeded.campaign_id, now=later)
    assert folded == computed
    assert folded["due_leads"] == 4 and folded["calls_per_hour"][0]["calls"] == 10
