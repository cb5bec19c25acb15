"""The command line as a user runs it: a real `dialer` process against the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer.db import session_scope
from dialer.models import Campaign, Lead

ROOT = Path(__file__).resolve().parent.parent


def dialer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dialer", *args],
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        cwd=ROOT,
        timeout=120,
    )


def create(*extra: str) -> int:
    r = dialer(
        "campaign", "create", "--name", "cli", "--caller-id", "+441134960000", "--agents", "101,102", "--json", *extra
    )
    assert r.returncode == 0, r.stderr
    return int(json.loads(r.stdout)["id"])


def test_create_import_status_report_json(clean_db: sa.Engine, tmp_path: Path) -> None:
    cid = create("--window", "08:00-21:00", "--days", "mon-sat", "--retry-delay", "30m")
    leads = tmp_path / "leads.csv"
    leads.write_text("Name,Mobile,Notes\nAnn,07700 900001,vip\nBob,+44 7700 900002,\nAnn again,07700900001,\n")
    rejects = tmp_path / "rejects.csv"
    r = dialer("campaign", "import", str(cid), str(leads), "--rejects", str(rejects), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["total_rows"], summary["accepted"], summary["rejected"]) == (3, 2, 1)
    assert summary["rejects_by_reason"] == {"duplicate_in_file": 1}
    assert "duplicate_in_file" in rejects.read_text()

    status = json.loads(dialer("campaign", "status", str(cid), "--json").stdout)
    assert status["state"] == "draft"
    assert status["leads"]["pending"] == 2
    assert dialer("campaign", "start", str(cid)).returncode == 0
    assert json.loads(dialer("campaign", "status", str(cid), "--json").stdout)["state"] == "running"
    assert dialer("campaign", "pause", str(cid)).returncode == 0
    assert json.loads(dialer("campaign", "status", str(cid), "--json").stdout)["state"] == "paused"

    report = json.loads(dialer("report", str(cid), "--format", "json").stdout)
    assert {"leads", "contacted", "attempts", "outcomes"} <= report.keys()
    assert report["leads"]["pending"] == 2 and report["attempts"] == 0
    listing = json.loads(dialer("campaign", "list", "--json").stdout)
    assert [c["id"] for c in listing] == [cid]

    with session_scope() as s:
        campaign = s.get(Campaign, cid)
        assert campaign is not None
        assert campaign.days == [1, 2, 3, 4, 5, 6]
        assert campaign.retry_policy["no_answer"]["delay"] == 1800
        custom = s.scalars(sa.select(Lead.custom_fields).where(Lead.campaign_id == cid).order_by(Lead.id)).all()
        assert custom[0] == {"Name": "Ann", "Notes": "vip"}


def test_unknown_campaign_is_a_one_line_error(clean_db: sa.Engine) -> None:
    for args in (("campaign", "status", "999"), ("campaign", "start", "999"), ("report", "999")):
        r = dialer(*args)
        assert r.returncode == 1
        assert r.stderr.strip() == "error: campaign 999 does not exist"
        assert r.stdout == ""


def test_bad_files_fail_clearly_and_store_nothing(clean_db: sa.Engine, tmp_path: Path) -> None:
    cid = create()
    no_phone = tmp_path / "nophone.csv"
    no_phone.write_text("name,email\nAnn,ann@example.com\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for path, words in ((no_phone, "phone column"), (empty, "empty")):
        r = dialer("campaign", "import", str(cid), str(path))
        assert r.returncode == 1, r.stdout
        assert words in r.stderr.lower(), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    r = dialer("campaign", "import", str(cid), str(tmp_path / "missing.csv"))
    assert r.returncode == 1 and "no such file" in r.stderr
    with session_scope() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Lead)) == 0


def test_bad_options_name_the_problem(clean_db: sa.Engine) -> None:
    r = dialer("campaign", "create", "--name", "x", "--caller-id", "1", "--agents", "101", "--window", "9-5")
    assert r.returncode == 1 and "window" in r.stderr
    r = dialer("campaign", "create", "--name", "x", "--caller-id", "1", "--agents", "101", "--timezone", "Mars/Base")
    assert r.returncode == 1 and "Mars/Base" in r.stderr
    with session_scope() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Campaign)) == 0


def test_dnc_add_list_remove(clean_db: sa.Engine) -> None:
    assert dialer("dnc", "add", "07700 900123", "+447700900124", "--reason", "asked").returncode == 0
    listed = json.loads(dialer("dnc", "list", "--json").stdout)
    assert sorted(r["phone"] for r in listed) == ["+447700900123", "+447700900124"]
    assert dialer("dnc", "remove", "07700900123").returncode == 0
    assert [r["phone"] for r in json.loads(dialer("dnc", "list", "--json").stdout)] == ["+447700900124"]
    r = dialer("dnc", "add", "not a number")
    assert r.returncode == 1 and "not a number" in r.stderr


@pytest.mark.embedded
def test_embedded_servers_start_are_shared_and_stop(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALER_")}
    env["DIALER_VAR_DIR"] = str(tmp_path / "var")
    try:
        assert dialer("db", "upgrade", env=env).returncode == 0
        first = json.loads(dialer("services", "status", "--json", env=env).stdout)
        r = dialer("campaign", "create", "--name", "e", "--caller-id", "1", "--agents", "101", "--json", env=env)
        assert r.returncode == 0, r.stderr
        # A second process finds the same servers (and the campaign the first one made).
        assert json.loads(dialer("services", "status", "--json", env=env).stdout) == first
        assert json.loads(dialer("campaign", "list", "--json", env=env).stdout)[0]["name"] == "e"
    finally:
        stopped = dialer("services", "stop", env=env)
    assert "postgres" in stopped.stdout and "redis" in stopped.stdout
