"""Property tests: hostile files never crash the importer and never leave half an import behind."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from dialer import importer
from dialer.importer import ImportFailed, import_leads
from dialer.models import Campaign, DncNumber, ImportJob, Lead

NUMBERS = ["07700 900001", "+44 7700 900002", "0044-7700-900003", "'07700900004", "020 7946 0001", "0909 879 0123"]
HOSTILE = [
    "",
    " ",
    '"',
    '""',
    ",",
    ";",
    "\t",
    "|",
    "\n",
    "\r\n",
    "\r",
    "\x1f",
    "\\",
    "\\N",
    '=HYPERLINK("http://x")',
    "+SUM(A1)",
    "@cmd",
    "-1",
    "n/a",
    "\ufeff",
    "\u2028",
    "Zoë £5 “quoted” 日本",
    "x" * 300,
    "2030-01-07 14:30",
    "Europe/London",
    "101",
    "%s%d",
]
OTHER_HEADERS = ["name", "notes", "timezone", "callback_at", "priority", "agent", "", "Name", "notes"]
cells = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(HOSTILE), st.text(max_size=12))


@st.composite
def hostile_files(draw: st.DrawFn) -> bytes:
    """Mostly CSVs with one phone column and hostile cells; sometimes raw bytes or broken shapes."""
    kind = draw(st.integers(0, 19))
    if kind == 0:
        return draw(st.binary(max_size=300))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    others = draw(st.lists(st.sampled_from(OTHER_HEADERS), max_size=4, unique=kind > 2))
    header = [*others]
    header.insert(draw(st.integers(0, len(others))), draw(st.sampled_from(["phone", "Mobile", "Contact Number"])))
    width = len(header)
    row = st.lists(cells, min_size=width, max_size=width)
    if kind == 1:
        row = st.lists(cells, min_size=0, max_size=width + 3)  # ragged
    rows = draw(st.lists(row, max_size=25))
    quote = draw(st.booleans())

    def line(values: list[str]) -> str:
        if quote:
            values = ['"' + v.replace('"', '""') + '"' for v in values]
        return delimiter.join(values)

    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join([line(header), *(line(r) for r in rows)]) + draw(st.sampled_from(["", newline]))
    if kind == 2:
        text = text.replace("e", "\x00", 1)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "cp1252"]))
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="surrogatepass")


def _counts(session: Session) -> tuple[int, int]:
    leads = session.scalar(sa.select(sa.func.count()).select_from(Lead)) or 0
    jobs = session.scalar(sa.select(sa.func.count()).select_from(ImportJob)) or 0
    return leads, jobs


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=hostile_files(), chunk=st.sampled_from([2, 7, 50_000]))
def test_hostile_files_import_whole_or_not_at_all(
    session: Session, monkeypatch: pytest.MonkeyPatch, data: bytes, chunk: int
) -> None:
    monkeypatch.setattr(importer, "CHUNK_ROWS", chunk)
    with session.begin_nested() as outer:
        campaign = Campaign(name="hostile", caller_id="+442079460000", region="GB", timezone="Europe/London")
        session.add(campaign)
        session.add(DncNumber(phone_e164="+447700900003"))
        session.flush()
        before = _counts(session)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "hostile.csv"
            path.write_bytes(data)
            rejects = Path(tmp) / "rejects.csv"
            try:
                report = import_leads(session=session, campaign=campaign, path=path, rejects_path=rejects)
            except ImportFailed as exc:
                assert str(exc).startswith("hostile.csv: ")
                assert _counts(session) == before
                assert not rejects.exists()
            else:
                leads, jobs = _counts(session)
                assert (leads - before[0], jobs - before[1]) == (report.accepted, 1)
                assert report.total_rows == report.accepted + report.rejected
                assert report.rejected == sum(report.rejects_by_reason.values())
                with rejects.open(encoding="utf-8-sig", newline="") as f:
                    assert sum(1 for _ in csv.reader(f)) == report.rejected + 1
        outer.rollback()
