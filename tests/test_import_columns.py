"""Lead settings from columns (timezone, callback_at, priority, agent) and the summary's arithmetic."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.campaigns import create_campaign
from dialer.importer import CALLBACK_PRIORITY, REASONS, import_leads, read_numbers
from dialer.models import Agent, Campaign, DncNumber, Lead


@pytest.fixture
def campaign(session: Session) -> Campaign:
    return create_campaign(
        session=session, name="Columns", caller_id="+442079460000", agents=["101", "102"], timezone="Europe/London"
    )


def _write(tmp_path: Path, text: str, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _leads(session: Session, campaign: Campaign) -> dict[int, Lead]:
    leads = session.scalars(sa.select(Lead).where(Lead.campaign_id == campaign.id))
    return {lead.source_row or 0: lead for lead in leads}


def _agent_id(session: Session, number: str) -> int:
    agent_id = session.scalar(sa.select(Agent.id).where(Agent.number == number))
    assert agent_id is not None
    return agent_id


def test_callback_priority_and_agent_columns(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "Phone,Callback At,Priority,Agent,name\n"
        "07700 900001,2030-01-07 14:30,,101,naive in the campaign zone (winter)\n"  # 2
        "07700 900002,2030-07-01T09:15:00+02:00,5,,aware\n"  # 3
        "07700 900003,2030-07-01T09:15Z,250,102,aware UTC and a higher priority\n"  # 4
        "07700 900004,,7,,priority only\n"  # 5
        "07700 900005,,,,plain\n",  # 6
    )

    report = import_leads(session=session, campaign=campaign, path=path)

    assert (report.accepted, report.callbacks) == (5, 3)
    assert report.columns == {
        "phone": "Phone",
        "timezone": None,
        "callback_at": "Callback At",
        "priority": "Priority",
        "agent": "Agent",
    }
    leads = _leads(session, campaign)
    first = leads[2]
    assert first.callback_at == dt.datetime(2030, 1, 7, 14, 30, tzinfo=dt.UTC)
    assert first.next_attempt_at == first.callback_at
    assert (first.priority, first.agent_id) == (CALLBACK_PRIORITY, _agent_id(session, "101"))
    assert leads[3].callback_at == dt.datetime(2030, 7, 1, 7, 15, tzinfo=dt.UTC)
    # A callback raises the row's own priority (given back once the callback is dialled).
    assert leads[3].priority == 5 + CALLBACK_PRIORITY
    assert (leads[4].priority, leads[4].agent_id) == (250 + CALLBACK_PRIORITY, _agent_id(session, "102"))
    assert (leads[5].priority, leads[5].callback_at, leads[5].agent_id) == (7, None, None)
    plain = leads[6]
    assert (plain.priority, plain.callback_at) == (0, None)
    assert plain.next_attempt_at < first.next_attempt_at
    assert plain.custom_fields == {"name": "plain"}


def test_summer_callback_uses_the_campaign_zone(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    path = _write(tmp_path, "phone,callback_at\n07700 900001,2030-07-01 09:00\n")
    import_leads(session=session, campaign=campaign, path=path)
    assert _leads(session, campaign)[2].callback_at == dt.datetime(2030, 7, 1, 8, 0, tzinfo=dt.UTC)


def test_every_reason_code_and_the_sum_adds_up(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    session.add(DncNumber(phone_e164="+447700900008"))
    session.add(Lead(campaign_id=campaign.id, phone_e164="+447700900009", timezones=["Europe/London"]))
    session.flush()
    rejects = tmp_path / "rejects.csv"
    path = _write(
        tmp_path,
        "phone,timezone,callback_at,priority,agent\n"
        "07700 900001,,,,\n"  # 2 accepted
        ",,,,101\n"  # 3 missing_number
        "call me,,,,\n"  # 4 unparseable
        "0161 496,,,,\n"  # 5 invalid_number
        "0909 879 0123,,,,\n"  # 6 not_dialable_type
        "07700 900002,Mars/Olympus,,,\n"  # 7 invalid_timezone
        "07700 900003,,next tuesday,,\n"  # 8 invalid_callback_at
        "07700 900004,,2030-01-07,,\n"  # 9 invalid_callback_at (a date is not a time)
        "07700 900005,,,high,\n"  # 10 invalid_priority
        "07700 900006,,,1.5,\n"  # 11 invalid_priority
        "07700 900007,,,,999\n"  # 12 unknown_agent
        "+44 7700 900001,,,,\n"  # 13 duplicate_in_file
        "07700 900008,,,,\n"  # 14 dnc
        "07700 900009,,,,\n"  # 15 duplicate_in_campaign
        "bad,Mars/Olympus,never,x,999\n",  # 16 unparseable: the first failure wins
    )

    report = import_leads(session=session, campaign=campaign, path=path, rejects_path=rejects)

    assert report.rejects_by_reason == {
        "missing_number": 1,
        "unparseable": 2,
        "invalid_number": 1,
        "not_dialable_type": 1,
        "invalid_timezone": 1,
        "invalid_callback_at": 2,
        "invalid_priority": 2,
        "unknown_agent": 1,
        "duplicate_in_file": 1,
        "dnc": 1,
        "duplicate_in_campaign": 1,
    }
    assert list(report.rejects_by_reason) == [r for r in REASONS if r in report.rejects_by_reason]
    assert report.total_rows == 15 == report.accepted + report.rejected
    assert report.rejected == sum(report.rejects_by_reason.values())
    assert (report.duplicates, report.dnc) == (2, 1)
    with rejects.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["row"], r["reason"]) for r in rows][5:9] == [
        ("8", "invalid_callback_at"),
        ("9", "invalid_callback_at"),
        ("10", "invalid_priority"),
        ("11", "invalid_priority"),
    ]
    by_row = {r["row"]: r for r in rows}
    assert by_row["12"]["message"] == "agent '999' is not one of this campaign's agents (101, 102)"
    assert "YYYY-MM-DD HH:MM" in by_row["8"]["message"]
    assert by_row["16"]["callback_at"] == "never"


def test_reimport_reports_every_row_as_a_duplicate(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    path = _write(tmp_path, "phone\n" + "".join(f"07700 900{i:03d}\n" for i in range(40)) + "07700 900000\n")
    first = import_leads(session=session, campaign=campaign, path=path)
    assert (first.accepted, first.duplicates) == (40, 1)

    second = import_leads(session=session, campaign=campaign, path=path)

    assert (second.total_rows, second.accepted, second.duplicates) == (41, 0, 41)
    assert second.rejects_by_reason == {"duplicate_in_file": 1, "duplicate_in_campaign": 40}
    assert len(_leads(session, campaign)) == 40


def test_read_numbers_from_a_bare_list_and_reports(tmp_path: Path) -> None:
    path = _write(tmp_path, "07700 900001\n07700 900002\nnope\n07700900001\n")

    numbers = read_numbers(path=path)

    assert numbers.valid == ["+447700900001", "+447700900002"]
    assert (numbers.total, numbers.rejected, numbers.duplicates) == (4, 1, 1)
    assert numbers.rejects_by_reason == {"unparseable": 1}
    assert numbers.phone_column is None


def test_agent_column_links_leads_to_the_campaigns_agents(
    session: Session, campaign: Campaign, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, "phone,agent\n07700 900001,102\n07700 900002,\n")

    report = import_leads(session=session, campaign=campaign, path=path)

    assert report.accepted == 2
    assert _leads(session, campaign)[2].agent_id == _agent_id(session, "102")
