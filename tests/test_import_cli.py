"""Import as a manager runs it: `dialer campaign import`, `dialer dnc import` and the REST upload."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from dialer.config import get_settings
from dialer.db import session_scope
from dialer.models import DncNumber, Lead

ROOT = Path(__file__).resolve().parent.parent
API_TOKEN = "api-secret-import"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
LEADS = 'Name,Mobile,Notes\nAnn,07700 900001,=HYPERLINK("x")\nBob,+44 7700 900002,\nAnn again,07700900001,\nNo one,,\n'


def dialer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dialer", *args], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )


def create_campaign() -> int:
    r = dialer("campaign", "create", "--name", "cli", "--caller-id", "+441134960000", "--agents", "101", "--json")
    assert r.returncode == 0, r.stderr
    return int(json.loads(r.stdout)["id"])


def test_import_json_is_one_document_and_rejects_are_written(clean_db: sa.Engine, tmp_path: Path) -> None:
    cid = create_campaign()
    leads = tmp_path / "leads.csv"
    leads.write_text(LEADS)
    rejects = tmp_path / "rejects.csv"

    r = dialer("campaign", "import", str(cid), str(leads), "--rejects", str(rejects), "--json")

    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert (report["total_rows"], report["accepted"], report["rejected"]) == (4, 2, 2)
    assert report["rejects_by_reason"] == {"missing_number": 1, "duplicate_in_file": 1}
    assert report["phone_column"] == "Mobile"
    assert rejects.read_text(encoding="utf-8-sig").splitlines() == [
        "row,reason,message,Name,Mobile,Notes",
        "4,duplicate_in_file,same number as row 2 (+447700900001),Ann again,07700900001,",
        "5,missing_number,no phone number,No one,,",
    ]
    with session_scope() as s:
        notes = s.scalars(sa.select(Lead.custom_fields).where(Lead.campaign_id == cid).order_by(Lead.id)).all()
    assert notes[0] == {"Name": "Ann", "Notes": '=HYPERLINK("x")'}


def test_import_summary_without_a_terminal_has_no_progress_bar(clean_db: sa.Engine, tmp_path: Path) -> None:
    cid = create_campaign()
    leads = tmp_path / "leads.csv"
    leads.write_text(LEADS)

    r = dialer("campaign", "import", str(cid), str(leads))

    assert r.returncode == 0, r.stderr
    assert "importing leads.csv" not in r.stdout and "\x1b[" not in r.stdout
    for words in ("Import into campaign", "accepted", "duplicate_in_file", "read as CSV, utf-8, comma-separated"):
        assert words in r.stdout


def test_import_on_a_terminal_draws_a_progress_bar(clean_db: sa.Engine, tmp_path: Path) -> None:
    cid = create_campaign()
    leads = tmp_path / "leads.csv"
    leads.write_text("phone\n" + "".join(f"07700 900{i:03d}\n" for i in range(300)))
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "dialer", "campaign", "import", str(cid), str(leads)])
    output = b""
    while True:
        try:
            block = os.read(fd, 65536)
        except OSError:
            break
        if not block:
            break
        output += block
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "importing leads.csv" in text
    assert "300" in text and "accepted" in text


def test_bad_file_is_one_line_on_stderr(clean_db: sa.Engine, tmp_path: Path) -> None:
    cid = create_campaign()
    bad = tmp_path / "leads.csv"
    bad.write_bytes(b"%PDF-1.4 not a list")

    r = dialer("campaign", "import", str(cid), str(bad), "--json")

    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.strip() == "error: leads.csv: a PDF document, not a CSV or XLSX file"


def test_dnc_import_reports(clean_db: sa.Engine, tmp_path: Path) -> None:
    numbers = tmp_path / "dnc.csv"
    numbers.write_text("Phone;Name\n07700 900001;a\n+44 7700 900001;b\nnope;c\n07700 900002;d\n")
    with session_scope() as s:
        s.add(DncNumber(phone_e164="+447700900002"))

    r = dialer("dnc", "import", str(numbers), "--json")

    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report == {
        "filename": "dnc.csv",
        "total_rows": 4,
        "valid": 2,
        "added": 1,
        "already_listed": 1,
        "duplicates": 1,
        "rejected": 1,
        "rejects_by_reason": {"unparseable": 1},
        "phone_column": "Phone",
        "source": {"format": "csv", "encoding": "utf-8", "delimiter": "semicolon"},
    }
    r = dialer("dnc", "import", str(numbers))
    assert r.returncode == 0 and "Do-not-call import" in r.stdout and "already" in r.stdout


@pytest.fixture
def client(clean_db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("DIALER_API_TOKEN", API_TOKEN)
    get_settings.cache_clear()
    from dialer.web.app import create_app

    with TestClient(create_app()) as c:
        yield c
    get_settings.cache_clear()


def _api_campaign(client: TestClient) -> int:
    r = client.post(
        "/api/campaigns", json={"name": "api", "caller_id": "+441134960000", "agents": ["101"]}, headers=AUTH
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_upload_returns_the_same_report(client: TestClient) -> None:
    cid = _api_campaign(client)
    body = "name;Cell\nAnn;07700 900001\nBob;07700 900002\n"

    r = client.post(
        f"/api/campaigns/{cid}/leads",
        files={"file": ("my leads.csv", body)},
        data={"phone_column": "cell"},
        headers=AUTH,
    )

    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["filename"], report["accepted"], report["phone_column"]) == ("my leads.csv", 2, "Cell")
    assert report["source"]["delimiter"] == "semicolon"


def test_upload_xlsx_with_a_sheet(client: TestClient) -> None:
    cid = _api_campaign(client)
    book = openpyxl.Workbook()
    book.active.append(["ignored"])  # type: ignore[union-attr]
    sheet = book.create_sheet("Leads")
    sheet.append(["phone", "name"])
    sheet.append(["07700 900001", "Ann"])
    data = io.BytesIO()
    book.save(data)

    r = client.post(
        f"/api/campaigns/{cid}/leads",
        files={"file": ("leads.xlsx", data.getvalue())},
        data={"sheet": "Leads"},
        headers=AUTH,
    )

    assert r.status_code == 200, r.text
    assert (r.json()["accepted"], r.json()["source"]) == (1, {"format": "xlsx", "sheet": "Leads"})


def test_upload_over_the_limit_is_413_and_bad_files_422(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:

    cid = _api_campaign(client)
    monkeypatch.setenv("DIALER_MAX_UPLOAD_BYTES", "100")
    get_settings.cache_clear()
    big = "phone\n" + "07700 900001\n" * 20

    r = client.post(f"/api/campaigns/{cid}/leads", files={"file": ("big.csv", big)}, headers=AUTH)

    assert r.status_code == 413
    assert r.json()["detail"] == "big.csv: the upload is over the limit of 100 bytes"
    monkeypatch.setenv("DIALER_MAX_UPLOAD_BYTES", str(1 << 20))
    get_settings.cache_clear()
    r = client.post(f"/api/campaigns/{cid}/leads", files={"file": ("x.csv", "name\nAnn\n")}, headers=AUTH)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("x.csv: no phone column")
    assert (
        client.post("/api/campaigns/999/leads", files={"file": ("x.csv", "phone\n1\n")}, headers=AUTH).status_code
        == 404
    )
    with session_scope() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Lead)) == 0
