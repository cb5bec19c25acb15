"""Lead import: a CSV of people to ring becomes leads of one campaign, whole or not at all.

Decisions (the file format is described in campaigns/README.md):
- Text is UTF-8 (with or without BOM), else Windows-1252, which is what Excel's plain
  "CSV (Comma delimited)" writes in the UK (the pound sign). The delimiter is , ; tab or |,
  whichever the header line uses most.
- Row numbers are spreadsheet rows: the header is row 1, blank lines and multi-line cells count as
  Excel counts them. Rows whose cells are all blank (Excel's trailing ",,,,") are skipped and not
  counted in total_rows.
- A file with a header but no data rows is an error, not a 0-row import: it is nearly always the
  wrong sheet or a failed export, and a script that expects empty deltas can catch ImportFailed.
- If several recognised phone columns exist (say phone and mobile) the import fails and asks for
  one: which number to ring is the manager's decision, not the importer's guess.
- A `timezone` cell that is not an IANA zone rejects the row (`invalid_timezone`): the manager said
  where this person is, and compliance fails closed. An empty cell falls back to the number's zones.
- Checks run in this order and the first failure is the row's reason: the number, the timezone,
  duplicate_in_file (the first otherwise-valid row wins), dnc, duplicate_in_campaign.
- A row with more fields than the header (usually an unquoted comma) is fatal and named; one
  trailing empty field is tolerated.
- Completed and cancelled campaigns take no new leads: nothing would ever dial them.
- The rejects file is UTF-8 with a BOM (Excel reads it right), written to a temporary name and
  moved into place only when the import succeeds; cells that a spreadsheet would run as a formula
  get a leading apostrophe.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import tempfile
import zoneinfo
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import pandas as pd
from sqlalchemy.orm import Session

from dialer.models import Campaign, ImportJob
from dialer.phones import INVALID_NUMBER, MISSING_NUMBER, NOT_DIALABLE_TYPE, UNPARSEABLE, normalise, zones_for
from dialer.states import CampaignState, LeadStatus

INVALID_TIMEZONE = "invalid_timezone"
DUPLICATE_IN_FILE = "duplicate_in_file"
DUPLICATE_IN_CAMPAIGN = "duplicate_in_campaign"
DNC = "dnc"
REASONS = (
    MISSING_NUMBER,
    UNPARSEABLE,
    INVALID_NUMBER,
    NOT_DIALABLE_TYPE,
    INVALID_TIMEZONE,
    DUPLICATE_IN_FILE,
    DNC,
    DUPLICATE_IN_CAMPAIGN,
)

# Header names recognised as the number to ring, compared without case, spaces, _ - or dots.
PHONE_COLUMNS = (
    "phone",
    "mobile",
    "telephone",
    "tel",
    "number",
    "msisdn",
    "destination_number",
    "contact number",
    "phone number",
    "mobile number",
    "telephone number",
)
TIMEZONE_COLUMNS = ("timezone", "time zone")
CHUNK_ROWS = 20_000
REJECTS_COLUMNS = ("row", "reason", "message")

_CLOSED = frozenset({CampaignState.COMPLETED, CampaignState.CANCELLED})
_DELIMITERS = (",", ";", "\t", "|")
# A cell starting with one of these is a formula to Excel, LibreOffice and Sheets (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_STAGING = "lead_import_staging"
_EXTRA = "__extra__"
_SEPARATORS = re.compile(r"[\s_\-.]+")


class ImportFailed(Exception):
    """The file cannot be imported at all; nothing was stored."""


@dataclass
class ImportReport:
    """What one import did: counts per outcome and the import job that records them."""

    job_id: int
    filename: str
    total_rows: int
    accepted: int
    rejected: int
    # Only reasons that occurred, in the order of REASONS.
    rejects_by_reason: dict[str, int]
    # The header of the column the numbers were read from.
    phone_column: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return asdict(self)


@dataclass
class _Layout:
    """How to read one file: encoding, delimiter and what each column is for."""

    encoding: str
    sep: str
    names: list[str]
    header_lines: int
    phone: int
    timezone: int | None
    custom: list[tuple[int, str]] = field(default_factory=list)


# (source_row, phone_e164, timezones, custom_fields as JSON): one staging row.
_Row = tuple[int, str, list[str], str]


@dataclass
class _Reject:
    row: int
    reason: str
    message: str


def import_leads(
    *,
    session: Session,
    campaign: Campaign,
    path: Path,
    phone_column: str | None = None,
    rejects_path: Path | None = None,
) -> ImportReport:
    """Import a CSV of leads into `campaign`, screening numbers, duplicates and DNC; flush only."""
    path = Path(path)
    layout = _read_layout(path, phone_column)
    if campaign.id is None:
        session.flush()
    if campaign.state in _CLOSED:
        raise ImportFailed(f"{path.name}: campaign {campaign.id} is {campaign.state.value} and takes no new leads")
    rejects = _RejectsFile(rejects_path, layout.names)
    try:
        # A savepoint, so a failure half way leaves this session as it was, whoever commits it.
        with session.begin_nested():
            report = _import(session, campaign, path, layout, rejects)
    except BaseException:
        rejects.abort()
        raise
    rejects.finish()
    return report


def _import(session: Session, campaign: Campaign, path: Path, layout: _Layout, rejects: _RejectsFile) -> ImportReport:
    job = ImportJob(campaign_id=campaign.id, filename=path.name, total_rows=0, accepted=0, rejected=0)
    session.add(job)
    session.flush()
    dbapi = session.connection().connection.driver_connection
    assert dbapi is not None
    counts: Counter[str] = Counter()
    seen: dict[str, int] = {}
    total = accepted = 0
    with dbapi.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE {_STAGING} (source_row integer NOT NULL, phone_e164 varchar(20) NOT NULL,"
            " timezones varchar(64)[] NOT NULL, custom_fields jsonb NOT NULL) ON COMMIT DROP"
        )
        for chunk in _chunks(path, layout):
            values = [chunk[key].tolist() for key in chunk.columns if key != _EXTRA]
            first_row = int(chunk.index[0]) + 2
            rows, found, screened = _screen(values, first_row, layout, campaign, seen)
            total += screened
            inserted, db_rejects = _store(cur, rows, campaign.id, job.id)
            accepted += inserted
            found.extend(db_rejects)
            for r in found:
                counts[r.reason] += 1
            rejects.write(found, values, first_row)
        cur.execute(f"DROP TABLE {_STAGING}")
    if total == 0:
        raise ImportFailed(f"{path.name}: the file has a header row but no data rows")
    job.total_rows = total
    job.accepted = accepted
    job.rejected = total - accepted
    job.rejects_by_reason = {reason: counts[reason] for reason in REASONS if counts[reason]}
    session.flush()
    return ImportReport(
        job_id=job.id,
        filename=path.name,
        total_rows=job.total_rows,
        accepted=job.accepted,
        rejected=job.rejected,
        rejects_by_reason=dict(job.rejects_by_reason),
        phone_column=layout.names[layout.phone],
    )


@dataclass
class NumberList:
    """Numbers read from a file for the DNC list: the valid ones in E.164, each once."""

    total: int
    valid: list[str]
    rejected: int
    duplicates: int = 0


def read_numbers(*, path: Path, phone_column: str | None = None, region: str = "GB") -> NumberList:
    """Read and normalise the phone column of a CSV (or a bare list of numbers); store nothing."""
    path = Path(path)
    layout = _read_layout(path, phone_column, bare_region=region)
    seen: dict[str, None] = {}
    total = rejected = duplicates = 0
    for chunk in _chunks(path, layout):
        for raw in chunk[f"c{layout.phone}"].tolist():
            if not raw.strip():
                continue
            total += 1
            e164 = normalise(raw, region).e164
            if e164 is None:
                rejected += 1
            elif e164 in seen:
                duplicates += 1
            else:
                seen[e164] = None
    return NumberList(total=total, valid=list(seen), rejected=rejected, duplicates=duplicates)


def _screen(
    values: list[list[str]], first_row: int, layout: _Layout, campaign: Campaign, seen: dict[str, int]
) -> tuple[list[_Row], list[_Reject], int]:
    """Check one chunk's rows in Python: number, timezone, duplicates within the file."""
    region, default_tz = campaign.region, campaign.timezone
    phones = values[layout.phone]
    zones = values[layout.timezone] if layout.timezone is not None else None
    custom = [(name, values[i]) for i, name in layout.custom]
    rows: list[_Row] = []
    rejects: list[_Reject] = []
    counted = 0
    for pos, raw in enumerate(phones):
        if not raw.strip() and all(not col[pos].strip() for col in values):
            continue
        counted += 1
        row = first_row + pos
        number = normalise(raw, region)
        e164 = number.e164
        if e164 is None:
            rejects.append(_Reject(row, number.reason or UNPARSEABLE, number.message or ""))
            continue
        tz_cell = zones[pos].strip() if zones is not None else ""
        if tz_cell:
            zone = _canonical_zone(tz_cell)
            if zone is None:
                message = f"not an IANA time zone: {tz_cell!r}; use a name such as Europe/London"
                rejects.append(_Reject(row, INVALID_TIMEZONE, message))
                continue
            tzs = [zone]
        else:
            tzs = zones_for(e164, default_tz)
        first = seen.get(e164)
        if first is not None:
            rejects.append(_Reject(row, DUPLICATE_IN_FILE, f"same number as row {first} ({e164})"))
            continue
        seen[e164] = row
        fields = {name: _clean_text(col[pos]) for name, col in custom}
        rows.append((row, e164, tzs, json.dumps(fields, ensure_ascii=False)))
    return rows, rejects, counted


def _store(cur: Any, rows: list[_Row], campaign_id: int, job_id: int) -> tuple[int, list[_Reject]]:
    """COPY screened rows into staging, drop DNC numbers, insert the rest; return (inserted, rejects)."""
    if not rows:
        return 0, []
    with cur.copy(f"COPY {_STAGING} (source_row, phone_e164, timezones, custom_fields) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    cur.execute(
        f"DELETE FROM {_STAGING} s USING dnc_numbers d WHERE d.phone_e164 = s.phone_e164"
        " RETURNING s.source_row, s.phone_e164"
    )
    dnc = cur.fetchall()
    # ON CONFLICT also covers a lead another import committed while this one ran.
    cur.execute(
        "INSERT INTO leads (campaign_id, import_job_id, source_row, phone_e164, timezones, custom_fields,"
        " status, priority, attempts, attempt_seq, next_attempt_at)"
        f" SELECT %s, %s, source_row, phone_e164, timezones, custom_fields, %s, 0, 0, 0, now() FROM {_STAGING}"
        " ORDER BY source_row"
        " ON CONFLICT (campaign_id, phone_e164) DO NOTHING RETURNING source_row",
        (campaign_id, job_id, LeadStatus.PENDING.value),
    )
    inserted = {r for (r,) in cur.fetchall()}
    cur.execute(f"TRUNCATE {_STAGING}")
    rejects = [_Reject(r, DNC, f"on the do-not-call list ({e164})") for r, e164 in dnc]
    dnc_rows = {r for r, _ in dnc}
    rejects.extend(
        _Reject(r, DUPLICATE_IN_CAMPAIGN, f"already a lead of campaign {campaign_id} ({e164})")
        for r, e164, _, _ in rows
        if r not in inserted and r not in dnc_rows
    )
    return len(inserted), rejects


def _chunks(path: Path, layout: _Layout) -> Iterator[pd.DataFrame]:
    """Read the data rows in chunks of strings, turning parser errors into ImportFailed."""
    keys = [f"c{i}" for i in range(len(layout.names))]
    try:
        reader = pd.read_csv(
            path,
            sep=layout.sep,
            header=None,
            skiprows=layout.header_lines,
            # One spare column catches a row with one field too many instead of pandas' silent shift.
            names=[*keys, _EXTRA],
            index_col=False,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            encoding=layout.encoding,
            chunksize=CHUNK_ROWS,
            engine="c",
        )
        with reader:
            for chunk in reader:
                if chunk.empty:
                    continue
                extra = chunk[_EXTRA] != ""
                if extra.any():
                    row = int(chunk.index[extra.to_numpy().argmax()]) + 2
                    raise ImportFailed(
                        f"{path.name}: row {row} has more fields than the header's {len(keys)}; "
                        f"quote values that contain {layout.sep!r}"
                    )
                yield chunk
    except pd.errors.ParserError as exc:
        raise ImportFailed(f"{path.name}: not a well-formed CSV file: {_parser_message(exc)}") from exc


def _parser_message(exc: Exception) -> str:
    text = str(exc).strip().removeprefix("Error tokenizing data. C error: ")
    # pandas counts lines from 1 with the header as line 1, as a spreadsheet does.
    return re.sub(r"Expected (\d+) fields in line (\d+), saw (\d+)", _fields_message, text)


def _fields_message(match: re.Match[str]) -> str:
    expected, line, saw = match.groups()
    return f"row {line} has {saw} fields, the header has {int(expected) - 1}"


def _read_layout(path: Path, phone_column: str | None, bare_region: str | None = None) -> _Layout:
    """Read the header and decide the encoding, delimiter, phone, timezone and custom columns.

    With `bare_region`, a one-column file whose first cell is a number has no header at all.
    """
    if not path.is_file():
        raise ImportFailed(f"{path.name}: no such file")
    encoding = _detect_encoding(path)
    with path.open(encoding=encoding, newline="") as f:
        head = f.read(1 << 20)
    if not head.strip():
        raise ImportFailed(f"{path.name}: the file is empty")
    first_line = head.splitlines()[0]
    if not first_line.strip():
        raise ImportFailed(f"{path.name}: row 1 is blank; the header must be on row 1")
    sep = max(_DELIMITERS, key=first_line.count) if any(d in first_line for d in _DELIMITERS) else ","
    reader = csv.reader(io.StringIO(head), delimiter=sep)
    names = [n.strip() for n in next(reader)]
    if bare_region and phone_column is None and len(names) == 1 and normalise(names[0], bare_region).ok:
        return _Layout(encoding=encoding, sep=sep, names=["phone"], header_lines=0, phone=0, timezone=None)
    phone = _find_phone_column(path, names, phone_column)
    tz_keys = {_key(n) for n in TIMEZONE_COLUMNS}
    timezone = next((i for i, n in enumerate(names) if i != phone and _key(n) in tz_keys), None)
    layout = _Layout(
        encoding=encoding, sep=sep, names=names, header_lines=reader.line_num, phone=phone, timezone=timezone
    )
    used: set[str] = set()
    for i, name in enumerate(names):
        if i in (phone, timezone) or not name:
            continue
        unique, n = name, 1
        while unique in used:
            n += 1
            unique = f"{name}.{n}"
        used.add(unique)
        layout.custom.append((i, unique))
    return layout


def _find_phone_column(path: Path, names: list[str], phone_column: str | None) -> int:
    found = ", ".join(repr(n) for n in names)
    if phone_column is not None:
        exact = [i for i, n in enumerate(names) if n == phone_column.strip()]
        loose = [i for i, n in enumerate(names) if _key(n) == _key(phone_column)]
        if exact or loose:
            return (exact or loose)[0]
        raise ImportFailed(f"{path.name}: no column {phone_column!r}; columns found: {found}")
    wanted = {_key(n) for n in PHONE_COLUMNS}
    matches = [i for i, n in enumerate(names) if _key(n) in wanted]
    if not matches:
        raise ImportFailed(
            f"{path.name}: no phone column; name one (--phone-column) or call a column one of "
            f"{', '.join(PHONE_COLUMNS)}; columns found: {found}"
        )
    if len(matches) > 1:
        several = ", ".join(repr(names[i]) for i in matches)
        raise ImportFailed(f"{path.name}: several phone columns ({several}); name the one to ring (--phone-column)")
    return matches[0]


def _key(name: str) -> str:
    return _SEPARATORS.sub(" ", name.strip().lower()).strip()


def _detect_encoding(path: Path) -> str:
    """Return the codec for the file: UTF-8 (BOM dropped) if it decodes, else Windows-1252."""
    for encoding in ("utf-8-sig", "cp1252"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with path.open("rb") as f:
                while block := f.read(1 << 20):
                    decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return encoding
    raise ImportFailed(f"{path.name}: the file is not text in UTF-8 or Windows-1252; save it as 'CSV UTF-8'")


@lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    names = zoneinfo.available_timezones() - {"Factory", "localtime", "posixrules"}
    return {name.lower(): name for name in names}


def _canonical_zone(text: str) -> str | None:
    """Return the IANA zone `text` names (any letter case), or None."""
    return _zone_names().get(text.lower())


def _clean_text(value: str) -> str:
    # Postgres text and jsonb cannot hold NUL.
    return value.strip().replace("\x00", "") if "\x00" in value else value.strip()


def _neutralise(cell: str) -> str:
    """Make a cell inert in a spreadsheet: a leading apostrophe before formula characters."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


class _RejectsFile:
    """The optional rejects CSV: row, reason, message, then the row as it was; written whole or not at all."""

    def __init__(self, path: Path | None, names: list[str]) -> None:
        self.path = Path(path) if path is not None else None
        self._tmp: Path | None = None
        self._file: IO[str] | None = None
        self._writer: Any = None
        if self.path is None:
            return
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part")
        except OSError as exc:
            raise ImportFailed(f"{self.path}: cannot write the rejects file: {exc.strerror}") from exc
        self._tmp = Path(tmp)
        # With a BOM, because the reader is usually Excel, which otherwise guesses the wrong encoding.
        self._file = os.fdopen(fd, "w", encoding="utf-8-sig", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow([_neutralise(c) for c in (*REJECTS_COLUMNS, *names)])

    def write(self, rejects: list[_Reject], values: list[list[str]], first_row: int) -> None:
        """Append one chunk's rejected rows in row order."""
        if self._writer is None:
            return
        for r in sorted(rejects, key=lambda r: r.row):
            pos = r.row - first_row
            cells = [str(r.row), r.reason, r.message, *(col[pos] for col in values)]
            self._writer.writerow([_neutralise(c) for c in cells])

    def finish(self) -> None:
        """Close the file and move it into place."""
        if self._file is None or self._tmp is None or self.path is None:
            return
        self._file.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Close and delete the partial file."""
        if self._file is not None:
            self._file.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
