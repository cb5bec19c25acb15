"""Lead import against real Postgres: formats, every reject reason, duplicates, DNC, rejects file, failures."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer import importer, reports
from dialer.importer import ImportFailed, ImportReport, NumberList, import_leads, read_numbers
from dialer.models import Campaign, DncNumber, ImportJob, Lead
from dialer.states import CampaignState, LeadStatus

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "campaigns" / "sample_leads.csv"
UK_MOBILE_ZONES = ["Europe/Guernsey", "Europe/Isle_of_Man", "Europe/Jersey", "Europe/London"]


@pytest.fixture
def campaign(session: Session) -> Campaign:
    return _campaign(session)


def _campaign(session: Session, name: str = "Spring renewals") -> Campaign:
    c = Campaign(name=name, caller_id="+442079460000", region="GB", timezone="Europe/London")
    session.add(c)
    session.flush()
    return c


def _csv(tmp_path: Path, text: str, name: str = "leads.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _leads(session: Session, campaign: Campaign) -> list[Lead]:
    return list(session.scalars(sa.select(Lead).where(Lead.campaign_id == campaign.id).order_by(Lead.source_row)))


def _count(session: Session, model: type) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def _read_rejects(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


FORMATS = [
    ("+44 7911 123456", "+447911123456"),
    ("07911 123457", "+447911123457"),
    ("0044-7911-123458", "+447911123458"),
    ("(07911) 123 459", "+447911123459"),
    ("447911123460", "+447911123460"),
    ("07911.123.461", "+447911123461"),
    ("'07911 123462", "+447911123462"),
    ("(020) 7946 0123", "+442079460123"),
    ("0161 496 0456", "+441614960456"),
    ("+44 (0)113 496 0789", "+441134960789"),
    ("07700 900123", "+447700900123"),
    ("7911123463", "+447911123463"),
]


def test_each_number_format_is_accepted(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    body = "".join(f'"{raw}",Lead {i}\n' for i, (raw, _) in enumerate(FORMATS))
    path = _csv(tmp_path, "phone,name\n" + body)

    report = import_leads(session=session, campaign=campaign, path=path)

    assert (report.total_rows, report.accepted, report.rejected) == (len(FORMATS), len(FORMATS), 0)
    assert report.rejects_by_reason == {}
    leads = _leads(session, campaign)
    assert [lead.phone_e164 for lead in leads] == [e164 for _, e164 in FORMATS]
    assert [lead.source_row for lead in leads] == list(range(2, 2 + len(FORMATS)))
    first = leads[0]
    assert first.status == LeadStatus.PENDING
    assert (first.priority, first.attempts, first.attempt_seq) == (0, 0, 0)
    assert first.next_attempt_at is not None
    assert first.import_job_id == report.job_id
    assert first.timezones == UK_MOBILE_ZONES
    assert leads[7].timezones == ["Europe/London"]


def test_every_reject_reason(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    session.add(DncNumber(phone_e164="+442079460002", reason="asked not to be called"))
    session.add(Lead(campaign_id=campaign.id, phone_e164="+442079460003", timezones=["Europe/London"]))
    session.flush()
    path = _csv(
        tmp_path,
        "phone,timezone,name\n"
        "020 7946 0001,,ok\n"  # row 2
        ",,missing\n"  # 3
        "call me,,unparseable\n"  # 4
        "0161 496,,invalid\n"  # 5
        "0909 879 0123,,premium\n"  # 6
        "020 7946 0004,Mars/Olympus,bad zone\n"  # 7
        "+44 20 7946 0001,,duplicate in file\n"  # 8
        "020 7946 0002,,dnc\n"  # 9
        "020 7946 0003,,already in campaign\n",  # 10
    )

    report = import_leads(session=session, campaign=campaign, path=path)

    assert report.rejects_by_reason == {
        "missing_number": 1,
        "unparseable": 1,
        "invalid_number": 1,
        "not_dialable_type": 1,
        "invalid_timezone": 1,
        "duplicate_in_file": 1,
        "dnc": 1,
        "duplicate_in_campaign": 1,
    }
    assert (report.total_rows, report.accepted, report.rejected) == (9, 1, 8)
    phones = [lead.phone_e164 for lead in _leads(session, campaign)]
    assert sorted(phones) == ["+442079460001", "+442079460003"]


def test_import_job_records_the_counters(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    path = _csv(tmp_path, "phone\n020 7946 0001\n020 7946 0001\nnope\n", name="june.csv")

    report = import_leads(session=session, campaign=campaign, path=path)

    job = session.get(ImportJob, report.job_id)
    assert job is not None
    assert (job.campaign_id, job.filename) == (campaign.id, "june.csv")
    assert (job.total_rows, job.accepted, job.rejected) == (3, 1, 2)
    assert job.rejects_by_reason == {"unparseable": 1, "duplicate_in_file": 1}
    assert report.to_dict() == {
        "job_id": job.id,
        "filename": "june.csv",
        "total_rows": 3,
        "accepted": 1,
        "rejected": 2,
        "rejects_by_reason": {"unparseable": 1, "duplicate_in_file": 1},
        "phone_column": "phone",
        "duplicates": 1,
        "dnc": 0,
        "callbacks": 0,
        "source": {"format": "csv", "encoding": "utf-8", "delimiter": "comma"},
        "columns": {"phone": "phone", "timezone": None, "callback_at": None, "priority": None, "agent": None},
    }


def test_first_occurrence_wins_across_formats(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.csv"
    path = _csv(
        tmp_path,
        "phone,name\n07911 123456,first\n+44 7911 123456,second\n447911123456,third\n0044 7911 123456,fourth\n",
    )

    report = import_leads(session=session, campaign=campaign, path=path, rejects_path=rejects)

    assert report.rejects_by_reason == {"duplicate_in_file": 3}
    (lead,) = _leads(session, campaign)
    assert (lead.source_row, lead.custom_fields) == (2, {"name": "first"})
    rows = _read_rejects(rejects)
    assert [r["row"] for r in rows] == ["3", "4", "5"]
    assert all(r["message"] == "same number as row 2 (+447911123456)" for r in rows)


def test_reimport_adds_nothing_and_reports_every_row_duplicate(
    session: Session, campaign: Campaign, tmp_path: Path
) -> None:
    path = _csv(tmp_path, "phone,name\n" + "".join(f"020 7946 0{i:03d},n{i}\n" for i in range(50)))
    first = import_leads(session=session, campaign=campaign, path=path)
    assert first.accepted == 50

    second = import_leads(session=session, campaign=campaign, path=path)

    assert (second.total_rows, second.accepted, second.rejected) == (50, 0, 50)
    assert second.rejects_by_reason == {"duplicate_in_campaign": 50}
    assert second.job_id != first.job_id
    assert len(_leads(session, campaign)) == 50


def test_same_number_in_another_campaign_is_fine(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    path = _csv(tmp_path, "phone\n020 7946 0001\n")
    import_leads(session=session, campaign=campaign, path=path)
    other = _campaign(session, "Autumn")

    report = import_leads(session=session, campaign=other, path=path)

    assert report.accepted == 1


def test_dnc_numbers_are_screened_in_any_format(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    session.add(DncNumber(phone_e164="+447700900111"))
    session.flush()
    path = _csv(tmp_path, "phone\n07700 900111\n+447700900112\n0044 7700 900 111\n")

    report = import_leads(session=session, campaign=campaign, path=path)

    assert report.rejects_by_reason == {"dnc": 1, "duplicate_in_file": 1}
    assert [lead.phone_e164 for lead in _leads(session, campaign)] == ["+447700900112"]


def test_custom_fields_keep_every_other_column(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        " First Name ,Mobile,email,notes,,Notes\n"
        'Ada,07911 123456,ada@example.com,"Likes tea, not coffee",x,  second  \n',
    )

    import_leads(session=session, campaign=campaign, path=path)

    (lead,) = _leads(session, campaign)
    # The phone column is the lead's number; a column with no header is named by its letter.
    assert lead.custom_fields == {
        "First Name": "Ada",
        "email": "ada@example.com",
        "notes": "Likes tea, not coffee",
        "column E": "x",
        "Notes": "second",
    }


def test_custom_fields_are_stored_compactly_and_exported(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    # Stored as one text[] per lead against the import job's headers (custom_keys); every cell
    # comes back as it was typed, trimmed, and a column empty on every stored row is in no lead.
    odd = ' back\\slash\\ "quoted", {braced} tab\there\nline \\N NULL é '
    path = tmp_path / "leads.csv"
    rows = [
        ["phone", "name", "notes", "empty", "only rejected"],
        ["07911 123456", "Ada", odd, "", ""],
        ["07911 123457", "  ", "plain", " ", ""],
        ["not a number", "Zed", "x", "", "kept nowhere"],
        ["07911 123458", "Bo\x1fb", "", "", ""],
    ]
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)

    report = import_leads(session=session, campaign=campaign, path=path)

    ada, second, bob = _leads(session, campaign)
    assert ada.custom_fields == {"name": "Ada", "notes": odd.strip()}
    assert second.custom_fields == {"notes": "plain"}
    assert bob.custom_fields == {"name": "Bo\x1fb"}
    job = session.get(ImportJob, report.job_id)
    assert job is not None and job.custom_keys == ["name", "notes", None, None]
    assert session.scalars(sa.select(Lead.custom_fields).where(Lead.id == ada.id)).one() == ada.custom_fields
    exported = list(csv.DictReader(io.StringIO(reports.leads_csv(session=session, campaign_id=campaign.id))))
    assert set(exported[0]) == {*reports.EXPORT_COLUMNS, "name", "notes"}
    assert [(r["name"], r["notes"]) for r in exported] == [("Ada", odd.strip()), ("", "plain"), ("Bo\x1fb", "")]


def test_timezone_column(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "phone,Time Zone,name\n"
        "07911 123456,america/new_york,explicit\n"
        "07911 123457,,derived\n"
        "07911 123458,Europe/Londres,bad\n",
    )

    report = import_leads(session=session, campaign=campaign, path=path)

    assert report.rejects_by_reason == {"invalid_timezone": 1}
    explicit, derived = _leads(session, campaign)
    assert explicit.timezones == ["America/New_York"]
    assert derived.timezones == UK_MOBILE_ZONES
    assert explicit.custom_fields == {"name": "explicit"}


def test_number_without_zone_uses_campaign_timezone(session: Session, tmp_path: Path) -> None:
    c = Campaign(name="Global", caller_id="+442079460000", region="GB", timezone="Asia/Kolkata")
    session.add(c)
    session.flush()
    # A satellite phone (+881) is dialable and has no zone of its own.
    path = _csv(tmp_path, "phone\n+881 612 345 678\n")

    import_leads(session=session, campaign=c, path=path)

    (lead,) = _leads(session, c)
    assert lead.timezones == ["Asia/Kolkata"]


def test_rejects_file(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    session.add(DncNumber(phone_e164="+442079460002"))
    session.flush()
    rejects = tmp_path / "out" / "rejects.csv"
    rejects.parent.mkdir()
    path = _csv(
        tmp_path,
        "name,phone,notes\n"
        'Ada,020 7946 0001,"two\nlines"\n'  # row 2 (one spreadsheet row, two file lines)
        "\n"  # row 3: blank, skipped
        'Bob,,=HYPERLINK("http://example.com")\n'  # row 4
        "Cy,020 7946 0002,@SUM(A1)\n"  # row 5
        "Di,+44 20 7946 0001,-dup\n",  # row 6
    )

    report = import_leads(session=session, campaign=campaign, path=path, rejects_path=rejects)

    assert (report.total_rows, report.accepted, report.rejected) == (4, 1, 3)
    with rejects.open(encoding="utf-8-sig", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header == ["row", "reason", "message", "name", "phone", "notes"]
    assert [r[:2] for r in rows] == [["4", "missing_number"], ["5", "dnc"], ["6", "duplicate_in_file"]]
    # Formulas are neutralised so the file is safe to open in a spreadsheet.
    assert rows[0][3:] == ["Bob", "", '\'=HYPERLINK("http://example.com")']
    assert rows[1][3:] == ["Cy", "020 7946 0002", "'@SUM(A1)"]
    assert rows[2][3:] == ["Di", "'+44 20 7946 0001", "'-dup"]
    assert "do-not-call" in rows[1][2]
    assert not list(tmp_path.joinpath("out").glob("*.part"))


def test_rejects_file_has_a_header_when_nothing_is_rejected(
    session: Session, campaign: Campaign, tmp_path: Path
) -> None:
    rejects = tmp_path / "rejects.csv"
    path = _csv(tmp_path, "phone\n020 7946 0001\n")

    import_leads(session=session, campaign=campaign, path=path, rejects_path=rejects)

    assert rejects.read_text(encoding="utf-8-sig").splitlines() == ["row,reason,message,phone"]


def test_row_numbers_and_duplicates_across_chunks(
    session: Session, campaign: Campaign, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "CHUNK_ROWS", 3)
    rejects = tmp_path / "rejects.csv"
    numbers = [f"020 7946 0{i:03d}" for i in range(10)]
    numbers[8] = numbers[1]
    numbers[5] = "bad"
    path = _csv(tmp_path, "phone\n" + "\n".join(numbers) + "\n")

    report = import_leads(session=session, campaign=campaign, path=path, rejects_path=rejects)

    assert (report.total_rows, report.accepted) == (10, 8)
    assert [(r["row"], r["reason"]) for r in _read_rejects(rejects)] == [
        ("7", "unparseable"),
        ("10", "duplicate_in_file"),
    ]
    assert [lead.source_row for lead in _leads(session, campaign)] == [2, 3, 4, 5, 6, 8, 9, 11]


def test_blank_rows_are_skipped_but_keep_numbering(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    path = _csv(tmp_path, "phone,name\n\n020 7946 0001,a\n,\n , \n020 7946 0002,b\n,,\n")

    report = import_leads(session=session, campaign=campaign, path=path)

    assert (report.total_rows, report.accepted, report.rejected) == (2, 2, 0)
    assert [lead.source_row for lead in _leads(session, campaign)] == [3, 6]


def test_explicit_phone_column(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    path = _csv(tmp_path, "name,Cell Phone,phone\nAda,07911 123456,020 7946 0001\n")

    report = import_leads(session=session, campaign=campaign, path=path, phone_column="cell phone")

    assert report.phone_column == "Cell Phone"
    (lead,) = _leads(session, campaign)
    assert lead.phone_e164 == "+447911123456"
    assert lead.custom_fields == {"name": "Ada", "phone": "020 7946 0001"}


@pytest.mark.parametrize(
    "header",
    [
        "Phone",
        "MOBILE",
        "Telephone",
        "tel",
        "Number",
        "MSISDN",
        "destination_number",
        "Contact Number",
        "contact_number",
        "Phone Number",
    ],
)
def test_phone_column_detection(session: Session, campaign: Campaign, tmp_path: Path, header: str) -> None:
    path = _csv(tmp_path, f"name,{header}\nAda,020 7946 0001\n")

    report = import_leads(session=session, campaign=campaign, path=path)

    assert report.accepted == 1
    assert report.phone_column == header


def test_semicolons_bom_and_windows_1252(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    utf8 = _csv(tmp_path, "\ufeffphone;notes\n020 7946 0001;Budget £5k\n", name="bom.csv")
    cp1252 = _csv(tmp_path, "phone\tnotes\n020 7946 0002\tBudget £6k\n", name="excel.csv", encoding="cp1252")

    import_leads(session=session, campaign=campaign, path=utf8)
    import_leads(session=session, campaign=campaign, path=cp1252)

    assert [lead.custom_fields for lead in _leads(session, campaign)] == [
        {"notes": "Budget £5k"},
        {"notes": "Budget £6k"},
    ]


def test_sample_file_imports(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.csv"
    with SAMPLE.open(encoding="utf-8", newline="") as f:
        data_rows = sum(1 for _ in csv.reader(f)) - 1

    report = import_leads(session=session, campaign=campaign, path=SAMPLE, rejects_path=rejects)

    assert data_rows >= 220
    assert report.total_rows == data_rows
    assert report.accepted + report.rejected == report.total_rows
    assert report.accepted == len(_leads(session, campaign)) >= 200
    assert sum(report.rejects_by_reason.values()) == report.rejected
    for reason in ("missing_number", "unparseable", "invalid_number", "not_dialable_type", "duplicate_in_file"):
        assert report.rejects_by_reason.get(reason, 0) >= 1, reason
    assert len(_read_rejects(rejects)) == report.rejected
    lead = _leads(session, campaign)[0]
    assert set(lead.custom_fields) == {"first_name", "last_name", "email", "company", "city", "notes"}


def _assert_nothing_stored(session: Session) -> None:
    assert _count(session, Lead) == 0
    assert _count(session, ImportJob) == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "leads.csv: the file is empty"),
        ("\n\n  \n", "leads.csv: the file is empty"),
        ("phone,name\n", "leads.csv: the file has a header row but no data rows"),
        ("phone,name\n,\n\n", "leads.csv: the file has a header row but no data rows"),
        ("name,email\nAda,ada@example.com\n", "leads.csv: no phone column"),
        ("phone,mobile\n020 7946 0001,07911 123456\n", "several phone columns ('phone', 'mobile')"),
        ("phone,name\n020 7946 0001,a\n020 7946 0002,b,c\n", "leads.csv: row 3 has 3 fields, the header has 2"),
        ("phone,name\n020 7946 0001,a\n020 7946 0002,b,c,d\n", "leads.csv: row 3 has 4 fields, the header has 2"),
        ('phone,name\n020 7946 0001,"a\n', "leads.csv: not a well-formed CSV file: a quoted value starting on line 2"),
        ("\nphone\n020 7946 0001\n", "leads.csv: row 1 is blank"),
    ],
)
def test_bad_files_fail_and_store_nothing(
    session: Session, campaign: Campaign, tmp_path: Path, text: str, expected: str
) -> None:
    rejects = tmp_path / "rejects.csv"
    path = _csv(tmp_path, text)

    with pytest.raises(ImportFailed) as failed:
        import_leads(session=session, campaign=campaign, path=path, rejects_path=rejects)

    assert expected in str(failed.value)
    _assert_nothing_stored(session)
    assert not rejects.exists()
    assert not list(tmp_path.glob("*.part"))


def test_failure_late_in_the_file_rolls_back_earlier_chunks(
    session: Session, campaign: Campaign, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "CHUNK_ROWS", 2)
    rows = "".join(f"020 7946 0{i:03d},n\n" for i in range(7))
    path = _csv(tmp_path, "phone,name\n" + rows + "020 7946 0999,n,extra\n")

    with pytest.raises(ImportFailed, match="row 9 has 3 fields"):
        import_leads(session=session, campaign=campaign, path=path)

    _assert_nothing_stored(session)
    # The session is still usable: the failure rolled back to the importer's own savepoint.
    assert session.get(Campaign, campaign.id) is campaign


def test_unknown_phone_column_names_it_and_the_columns_found(
    session: Session, campaign: Campaign, tmp_path: Path
) -> None:
    path = _csv(tmp_path, "name,phone\nAda,020 7946 0001\n")

    with pytest.raises(ImportFailed) as failed:
        import_leads(session=session, campaign=campaign, path=path, phone_column="mobile")

    assert str(failed.value) == "leads.csv: no column 'mobile'; columns found: 'name', 'phone'"
    _assert_nothing_stored(session)


def test_missing_file(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="nowhere.csv: no such file"):
        import_leads(session=session, campaign=campaign, path=tmp_path / "nowhere.csv")


def test_closed_campaign_takes_no_leads(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    campaign.state = CampaignState.CANCELLED
    session.flush()
    path = _csv(tmp_path, "phone\n020 7946 0001\n")

    with pytest.raises(ImportFailed, match="is cancelled"):
        import_leads(session=session, campaign=campaign, path=path)

    _assert_nothing_stored(session)


def test_report_type(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    path = _csv(tmp_path, "phone\n020 7946 0001\n")
    assert isinstance(import_leads(session=session, campaign=campaign, path=path), ImportReport)


def test_unwritable_rejects_file_fails_before_storing(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    path = _csv(tmp_path, "phone\n020 7946 0001\n")

    with pytest.raises(ImportFailed, match="cannot write the rejects file"):
        import_leads(session=session, campaign=campaign, path=path, rejects_path=tmp_path / "no" / "rejects.csv")

    _assert_nothing_stored(session)


def test_read_numbers_for_the_dnc_list(tmp_path: Path) -> None:
    path = _csv(tmp_path, "name,Mobile\na,07911 123456\nb,+44 7911 123456\nc,nope\nd,\ne,020 7946 0001\n")

    numbers = read_numbers(path=path)

    assert numbers == NumberList(
        total=5,
        valid=["+447911123456", "+442079460001"],
        rejected=2,
        duplicates=1,
        rejects_by_reason={"missing_number": 1, "unparseable": 1},
        phone_column="Mobile",
        source={"format": "csv", "encoding": "utf-8", "delimiter": "comma"},
    )


def test_read_numbers_from_a_bare_list(tmp_path: Path) -> None:
    path = _csv(tmp_path, "07911 123456\n020 7946 0001\n")

    assert read_numbers(path=path).valid == ["+447911123456", "+442079460001"]


def test_read_numbers_needs_a_phone_column(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="no phone column"):
        read_numbers(path=_csv(tmp_path, "name,email\na,b\n"))
