"""Every input form people upload, and every kind of bad file, through the importer."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.importer import ImportFailed, import_leads, read_numbers
from dialer.importing.sources import MAX_CELL_CHARS, open_table
from dialer.models import Campaign, ImportJob, Lead

ANN, BOB = "+447700900001", "+447700900002"


@pytest.fixture
def campaign(session: Session) -> Campaign:
    c = Campaign(name="Inputs", caller_id="+442079460000", region="GB", timezone="Europe/London")
    session.add(c)
    session.flush()
    return c


def _leads(session: Session, campaign: Campaign) -> list[Lead]:
    return list(session.scalars(sa.select(Lead).where(Lead.campaign_id == campaign.id).order_by(Lead.source_row)))


def _count(session: Session, model: type) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


def _write(tmp_path: Path, data: bytes, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _import(session: Session, campaign: Campaign, path: Path, **kwargs: object) -> list[tuple[str, dict[str, str]]]:
    import_leads(session=session, campaign=campaign, path=path, **kwargs)  # type: ignore[arg-type]
    return [(lead.phone_e164, lead.custom_fields) for lead in _leads(session, campaign)]


TEXT = 'phone{d}name{d}notes\r\n07700 900001{d}Ann{d}"Says ""hi""{d} twice"\r\n07700 900002{d}Bob{d}\r\n'


@pytest.mark.parametrize(("delimiter", "label"), [(",", "comma"), (";", "semicolon"), ("\t", "tab"), ("|", "pipe")])
def test_delimiters_are_sniffed(
    session: Session, campaign: Campaign, tmp_path: Path, delimiter: str, label: str
) -> None:
    path = _write(tmp_path, TEXT.format(d=delimiter).encode())

    report = import_leads(session=session, campaign=campaign, path=path)

    assert report.source == {"format": "csv", "encoding": "utf-8", "delimiter": label}
    assert [(lead.phone_e164, lead.custom_fields) for lead in _leads(session, campaign)] == [
        (ANN, {"name": "Ann", "notes": f'Says "hi"{delimiter} twice'}),
        (BOB, {"name": "Bob"}),
    ]


@pytest.mark.parametrize(
    ("encoding", "detected"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf-16"),  # with BOM, as Excel's "Unicode text" writes it
        ("utf-16-le", "utf-16-le"),
        ("cp1252", "cp1252"),
    ],
)
def test_encodings_are_detected(
    session: Session, campaign: Campaign, tmp_path: Path, encoding: str, detected: str
) -> None:
    text = "phone,name,notes\n07700 900001,Zoë Brontë,Budget £5k – “soon”\n"
    path = _write(tmp_path, text.encode(encoding))

    report = import_leads(session=session, campaign=campaign, path=path)

    assert report.source["encoding"] == detected
    (lead,) = _leads(session, campaign)
    assert lead.custom_fields == {"name": "Zoë Brontë", "notes": "Budget £5k – “soon”"}


def test_encoding_override(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    # Latin-1 and Windows-1252 agree on "é" but only the override reads "¤" as latin-1 would.
    path = _write(tmp_path, "phone,name\n07700 900001,Ren\xe9e \xa4\n".encode("latin-1"))

    import_leads(session=session, campaign=campaign, path=path, encoding="latin-1")

    assert _leads(session, campaign)[0].custom_fields == {"name": "Renée ¤"}
    with pytest.raises(ImportFailed, match="unknown encoding 'klingon'"):
        import_leads(session=session, campaign=campaign, path=path, encoding="klingon")
    with pytest.raises(ImportFailed, match="not valid utf-8 text"):
        import_leads(session=session, campaign=campaign, path=path, encoding="utf-8")


def test_quoted_newlines_crlf_and_trailing_empty_columns(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    data = (
        b"phone,name,notes,,\r\n"
        b'07700 900001,"Smith, Ann","line one\r\nline two",,\r\n'  # row 2 spans two lines
        b"07700 900002,Bob,,,,,\r\n"  # more trailing empty fields than the header
        b"07700 900003,Cy\r\n"  # fewer fields: padded
    )
    path = _write(tmp_path, data)

    report = import_leads(session=session, campaign=campaign, path=path)

    assert (report.total_rows, report.accepted) == (3, 3)
    leads = _leads(session, campaign)
    assert [lead.source_row for lead in leads] == [2, 3, 4]
    assert leads[0].custom_fields == {"name": "Smith, Ann", "notes": "line one\r\nline two"}
    assert leads[2].custom_fields == {"name": "Cy"}


def _xlsx(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def test_xlsx_first_sheet_and_named_sheet(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    path = _xlsx(
        tmp_path / "leads.xlsx",
        {
            "Leads": [
                ["Mobile", "Name", "Score", "Callback_at"],
                [447700900001, "Ann", 5.0, dt.datetime(2030, 1, 7, 14, 30)],
                [None, None, None, None],
                ["07700 900002", "Bob", 2.5, None],
            ],
            "Other": [["phone"], ["07700 900003"]],
        },
    )

    report = import_leads(session=session, campaign=campaign, path=path)

    assert report.source == {"format": "xlsx", "sheet": "Leads"}
    leads = _leads(session, campaign)
    assert [(lead.source_row, lead.phone_e164) for lead in leads] == [(2, ANN), (4, BOB)]
    assert leads[0].custom_fields == {"Name": "Ann", "Score": "5"}
    assert leads[1].custom_fields == {"Name": "Bob", "Score": "2.5"}
    assert leads[0].callback_at == dt.datetime(2030, 1, 7, 14, 30, tzinfo=dt.UTC)

    other = Campaign(name="Other", caller_id="+442079460000", region="GB")
    session.add(other)
    session.flush()
    report = import_leads(session=session, campaign=other, path=path, sheet="Other")
    assert (report.accepted, report.source["sheet"]) == (1, "Other")
    with pytest.raises(ImportFailed, match="no sheet 'Nope'; sheets: 'Leads', 'Other'"):
        import_leads(session=session, campaign=other, path=path, sheet="Nope")


def test_xlsx_renamed_csv_is_still_a_workbook(tmp_path: Path) -> None:
    path = _xlsx(tmp_path / "export.csv", {"Sheet1": [["phone"], ["07700 900001"]]})
    assert read_numbers(path=path).valid == [ANN]


def test_xlsx_value_without_a_header_is_named(tmp_path: Path) -> None:
    path = _xlsx(tmp_path / "leads.xlsx", {"S": [["phone"], ["07700 900001", None, "stray"]]})
    with pytest.raises(ImportFailed, match=r"leads.xlsx: row 2, column C has a value but no header"):
        read_numbers(path=path)


def _assert_nothing_stored(session: Session) -> None:
    assert _count(session, Lead) == 0
    assert _count(session, ImportJob) == 0


def _zip(path: Path, members: dict[str, bytes]) -> bytes:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path.read_bytes()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "leads.csv: the file is empty"),
        (b"\n \r\n\n", "leads.csv: the file is empty"),
        (b"phone,name\r\n", "leads.csv: the file has a header row but no data rows"),
        (b"phone,name\n,\n\n , \n", "leads.csv: the file has a header row but no data rows"),
        (b"name,email\nAnn,a@example.com\n", "leads.csv: no phone column"),
        (b"\nphone\n07700 900001\n", "leads.csv: row 1 is blank"),
        (b"phone,name\n07700 900001,a\n07700 900002,b,c\n", "leads.csv: row 3 has 3 fields, the header has 2"),
        (b"phone\n07700 900001\n" * 1 + b"07700 900002" + b",x" * 40 + b"\n", "leads.csv: not a well-formed CSV"),
        (b'phone,name\n07700 900001,a\n07700 900002,"b\n', "never ends (a missing closing quote)"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "leads.csv: a PDF document, not a CSV or XLSX file"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(200), "leads.csv: an Excel 97-2003 workbook (.xls)"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "leads.csv: a PNG image"),
        (b"phone\n07700\x00900001\n", "line 2 holds a NUL character"),
        (bytes(range(256)) * 4, "binary data"),
        (b"phone,name\n07700 900001,\x81\x8d\x8f\x90\x9d\n", "not text in UTF-8, UTF-16 or Windows-1252"),
    ],
)
def test_bad_files_fail_clearly_and_store_nothing(
    session: Session, campaign: Campaign, tmp_path: Path, data: bytes, expected: str
) -> None:
    rejects = tmp_path / "rejects.csv"
    path = _write(tmp_path, data)

    with pytest.raises(ImportFailed) as failed:
        import_leads(session=session, campaign=campaign, path=path, rejects_path=rejects)

    assert expected in str(failed.value)
    _assert_nothing_stored(session)
    assert not rejects.exists()


def test_zip_and_ods_are_refused_by_name(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    _zip(tmp_path / "leads.csv", {"leads.csv": b"phone\n07700 900001\n"})
    with pytest.raises(ImportFailed, match="a ZIP archive, not a CSV or XLSX file"):
        import_leads(session=session, campaign=campaign, path=tmp_path / "leads.csv")
    _zip(tmp_path / "leads.ods", {"mimetype": b"application/vnd.oasis.opendocument.spreadsheet", "content.xml": b""})
    with pytest.raises(ImportFailed, match="an OpenDocument spreadsheet"):
        import_leads(session=session, campaign=campaign, path=tmp_path / "leads.ods")
    _assert_nothing_stored(session)


def test_a_huge_cell_is_named_by_row_and_column(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    big = "x" * (1 << 20)
    path = _write(tmp_path, f"phone,notes\n07700 900001,ok\n07700 900002,{big}\n".encode())

    with pytest.raises(ImportFailed) as failed:
        import_leads(session=session, campaign=campaign, path=path)

    assert str(failed.value) == (
        f"leads.csv: row 3, column 'notes': a cell of 1,048,576 characters; the limit is {MAX_CELL_CHARS:,}"
    )
    _assert_nothing_stored(session)


def test_a_file_over_the_size_limit(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    path = _write(tmp_path, b"phone\n" + b"07700 900001\n" * 1000)

    with pytest.raises(ImportFailed, match=r"leads.csv: the file is 0.0 MB; the limit is 0.0 MB"):
        import_leads(session=session, campaign=campaign, path=path, max_bytes=1000)

    _assert_nothing_stored(session)


def test_formulas_are_stored_as_text(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    formula = '=HYPERLINK("http://example.com","click")'
    path = _write(tmp_path, f'phone,notes\n07700 900001,"{formula.replace(chr(34), chr(34) * 2)}"\n'.encode())

    import_leads(session=session, campaign=campaign, path=path)

    assert _leads(session, campaign)[0].custom_fields == {"notes": formula}


def test_json_special_characters_survive(session: Session, campaign: Campaign, tmp_path: Path) -> None:
    tricky = 'back\\slash "quoted" tab\there \\N'
    path = _write(
        tmp_path, ('phone,"we\\ird ""key"" %s",notes\n07700 900001,"' + tricky.replace('"', '""') + '",x\n').encode()
    )

    import_leads(session=session, campaign=campaign, path=path)

    assert _leads(session, campaign)[0].custom_fields == {'we\\ird "key" %s': tricky, "notes": "x"}


def test_open_table_reports_how_it_read(tmp_path: Path) -> None:
    table = open_table(_write(tmp_path, "\ufeffMobile;Name\n07700 900001;Ann\n".encode()))
    assert (table.names, table.encoding, table.delimiter) == (["Mobile", "Name"], "utf-8-sig", ";")
    assert [c.columns for c in table.chunks(10)] == [[["07700 900001"], ["Ann"]]]
