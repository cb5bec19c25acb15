"""Lead files as tables of text: CSV in the dialects and encodings people export, or an XLSX sheet.

Decisions:
- The kind is read from the bytes, not the name: an XLSX renamed .csv still imports, and a PDF,
  an old .xls, an .ods, a ZIP or an image is refused by name before anything else happens.
- Encoding: `encoding` when given; else a BOM (UTF-8, UTF-16, UTF-32); else UTF-16 without BOM
  when every other byte of the start is NUL; else UTF-8 if the whole file decodes; else
  Windows-1252 (Excel's plain "CSV" in the UK). A NUL character left after decoding, or a start
  that is mostly control characters, means a binary file.
- Delimiter: of , ; tab and |, the one that splits the header into the most fields (quotes
  respected); a header with none of them is one column.
- Row numbers are spreadsheet rows: the header is row 1, a multi-line cell is one row. Rows whose
  cells are all blank are skipped (Excel's trailing ",,,,") and not counted.
- A row with more fields than the header is fatal unless the extra fields are empty (trailing
  delimiters); a shorter row is padded with empty cells, as Excel writes them.
- A cell longer than 32,767 characters (Excel's own limit) is fatal: it is never a lead's data.
- XLSX: values as Excel shows them when saved (formulas give their cached result), numbers
  without a trailing .0, dates as ISO text. A value in a column with no header is fatal.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dialer.config import get_settings
from dialer.importing import ImportFailed

MAX_CELL_CHARS = 32_767
# Uncompressed size an XLSX may unpack to (a ZIP bomb guard).
MAX_XLSX_UNPACKED = 2 << 30
DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_SAMPLE_BYTES = 1 << 20
# Extra fields a row may carry beyond the header if they are empty (trailing delimiters).
_SPARE = 16
_BINARY_MAGIC = (
    (b"%PDF", "a PDF document"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls); save it as .xlsx or CSV UTF-8"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"SQLite format 3", "an SQLite database"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


@dataclass
class Chunk:
    """Consecutive data rows: their spreadsheet row numbers and one list of strings per column."""

    rows: np.ndarray
    columns: list[list[str]]
    # Fraction of the file read so far (for progress bars).
    done: float


@dataclass
class Table:
    """An opened lead file: how it is read and its header; `chunks()` yields its data rows."""

    path: Path
    name: str
    kind: str
    names: list[str]
    size: int
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    _header_lines: int = field(default=1, repr=False)

    def describe(self) -> dict[str, Any]:
        """Return how the file was read, for reports."""
        if self.kind == "xlsx":
            return {"format": "xlsx", "sheet": self.sheet}
        return {
            "format": "csv",
            "encoding": self.encoding,
            "delimiter": _DELIMITER_NAMES.get(self.delimiter or ",", self.delimiter),
        }

    def chunks(self, size: int) -> Iterator[Chunk]:
        """Yield the data rows in chunks of about `size`, blank rows dropped."""
        source = self._xlsx_chunks(size) if self.kind == "xlsx" else self._csv_chunks(size)
        for chunk in source:
            kept = _drop_blank_rows(chunk)
            if len(kept.rows):
                _check_cells(self.name, self.names, kept)
                yield kept

    def _csv_chunks(self, size: int) -> Iterator[Chunk]:
        width = len(self.names)
        keys = [f"c{i}" for i in range(width + _SPARE)]
        with self.path.open("rb") as raw:
            try:
                reader = pd.read_csv(
                    raw,
                    sep=self.delimiter,
                    header=None,
                    skiprows=self._header_lines,
                    names=keys,
                    index_col=False,
                    dtype=object,
                    keep_default_na=False,
                    na_filter=False,
                    skip_blank_lines=False,
                    encoding=self.encoding,
                    chunksize=size,
                    engine="c",
                )
                with reader:
                    for frame in reader:
                        rows = frame.index.to_numpy(dtype=np.int64) + 2
                        _check_spare(self, frame, keys[width:], rows)
                        columns = [frame[k].tolist() for k in keys[:width]]
                        yield Chunk(rows=rows, columns=columns, done=min(1.0, raw.tell() / max(self.size, 1)))
            except pd.errors.ParserError as exc:
                raise ImportFailed(f"{self.name}: not a well-formed CSV file: {_parser_message(exc)}") from None
            except UnicodeDecodeError as exc:
                raise ImportFailed(
                    f"{self.name}: not valid {self.encoding} text ({exc.reason}); pass the right --encoding"
                ) from None

    def _xlsx_chunks(self, size: int) -> Iterator[Chunk]:
        width = len(self.names)
        with _workbook(self.path, self.name) as book:
            sheet = book[self.sheet]
            total = max(sheet.max_row or 1, 1)
            rows: list[int] = []
            cells: list[list[str]] = [[] for _ in range(width)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for number, values in enumerate(_rows_of(sheet, self.name), start=2):
                    texts = [_cell_text(v) for v in values]
                    for col in range(width, len(texts)):
                        if texts[col].strip():
                            letter = column_letter(col)
                            raise ImportFailed(
                                f"{self.name}: row {number}, column {letter} has a value but no header; "
                                "name the column or clear it"
                            )
                    texts.extend([""] * (width - len(texts)))
                    rows.append(number)
                    for col in range(width):
                        cells[col].append(texts[col])
                    if len(rows) >= size:
                        yield Chunk(np.array(rows, dtype=np.int64), cells, min(1.0, number / total))
                        rows, cells = [], [[] for _ in range(width)]
            if rows:
                yield Chunk(np.array(rows, dtype=np.int64), cells, 1.0)


def open_table(
    path: Path,
    *,
    name: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    max_bytes: int | None = None,
) -> Table:
    """Open a lead file and read its header; raise ImportFailed for anything that is not a table."""
    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise ImportFailed(f"{name}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise ImportFailed(f"{name}: the file is empty")
    # One limit for the CLI and the REST upload: DIALER_MAX_UPLOAD_BYTES unless the caller says.
    max_bytes = max_bytes or get_settings().max_upload_bytes
    if size > max_bytes:
        raise ImportFailed(f"{name}: the file is {_megabytes(size)}; the limit is {_megabytes(max_bytes)}")
    with path.open("rb") as f:
        start = f.read(8192)
    if start.startswith(b"PK\x03\x04"):
        if encoding is not None:
            raise ImportFailed(f"{name}: --encoding applies to CSV files; this is an XLSX workbook")
        return _open_xlsx(path, name, size, sheet)
    for magic, what in _BINARY_MAGIC:
        if start.startswith(magic):
            raise ImportFailed(f"{name}: {what}, not a CSV or XLSX file")
    if sheet is not None:
        raise ImportFailed(f"{name}: --sheet applies to XLSX workbooks; this is a CSV file")
    return _open_csv(path, name, size, start, encoding)


def _open_csv(path: Path, name: str, size: int, start: bytes, encoding: str | None) -> Table:
    if encoding is not None:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise ImportFailed(f"{name}: unknown encoding {encoding!r}") from None
        if encoding == "utf-8" and start.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
        _check_decodes(path, name, encoding, explicit=True)
    else:
        encoding = _detect_encoding(path, name, start)
    with path.open("rb") as f:
        decoder = codecs.getincrementaldecoder(encoding)()
        sample = decoder.decode(f.read(_SAMPLE_BYTES), final=size <= _SAMPLE_BYTES)
    if len(_CONTROL.findall(sample[:8192])) > max(8, len(sample[:8192]) // 100):
        raise ImportFailed(f"{name}: binary data, not a CSV or XLSX file")
    if not sample.strip():
        raise ImportFailed(f"{name}: the file is empty")
    first_line = sample.splitlines()[0] if sample.splitlines() else ""
    if not first_line.strip():
        raise ImportFailed(f"{name}: row 1 is blank; the header must be on row 1")
    delimiter = _sniff_delimiter(sample)
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise ImportFailed(f"{name}: row 1 (the header) is not well-formed CSV: {exc}") from None
    if any("\n" in h or "\r" in h for h in header):
        raise ImportFailed(f"{name}: row 1 (the header) has a line break inside a column name; check its quotes")
    names = _header_names(name, header)
    return Table(
        path=path,
        name=name,
        kind="csv",
        names=names,
        size=size,
        encoding=encoding,
        delimiter=delimiter,
        _header_lines=reader.line_num,
    )


def _header_names(name: str, header: list[Any]) -> list[str]:
    names = ["" if h is None else str(h).strip() for h in header]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ImportFailed(f"{name}: row 1 is blank; the header must be on row 1")
    for i, n in enumerate(names):
        if len(n) > 200:
            raise ImportFailed(f"{name}: the header of column {column_letter(i)} is {len(n):,} characters long")
    return names


def _detect_encoding(path: Path, name: str, start: bytes) -> str:
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if start.startswith(bom):
            _check_decodes(path, name, encoding, explicit=False)
            return encoding
    if b"\x00" in start:
        even, odd = start[0::2], start[1::2]
        if len(start) >= 4 and odd.count(0) >= 0.9 * len(odd) and even.count(0) == 0:
            encoding = "utf-16-le"
        elif len(start) >= 4 and even.count(0) >= 0.9 * len(even) and odd.count(0) == 0:
            encoding = "utf-16-be"
        else:
            line = start[: start.index(b"\x00")].count(b"\n") + 1
            raise ImportFailed(f"{name}: line {line} holds a NUL character: binary data, not a CSV file")
        _check_decodes(path, name, encoding, explicit=False)
        return encoding
    for encoding in ("utf-8", "cp1252"):
        try:
            line = _scan(path, encoding)
        except UnicodeDecodeError:
            continue
        if line:
            raise ImportFailed(f"{name}: line {line} holds a NUL character: binary data, not a CSV file")
        return encoding
    raise ImportFailed(
        f"{name}: the file is not text in UTF-8, UTF-16 or Windows-1252; save it as 'CSV UTF-8' or pass --encoding"
    )


def _check_decodes(path: Path, name: str, encoding: str, *, explicit: bool) -> None:
    """Decode the whole file once; refuse undecodable text and NUL characters."""
    try:
        line = _scan(path, encoding)
    except UnicodeDecodeError as exc:
        hint = "check --encoding" if explicit else "pass --encoding"
        raise ImportFailed(f"{name}: not valid {encoding} text ({exc.reason}); {hint}") from None
    if line:
        raise ImportFailed(f"{name}: line {line} holds a NUL character: binary data, not a CSV file")


def _scan(path: Path, encoding: str) -> int:
    """Decode the file; return the line of the first NUL character, or 0."""
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 0
    with path.open("rb") as f:
        while True:
            block = f.read(1 << 22)
            text = decoder.decode(block, final=not block)
            nul = text.find("\x00")
            if nul >= 0:
                return lines + text.count("\n", 0, nul) + 1
            lines += text.count("\n")
            if not block:
                return 0


def _sniff_delimiter(sample: str) -> str:
    """Pick the delimiter that splits the header into the most fields; comma when none does."""
    best, best_fields = ",", 1
    for delimiter in DELIMITERS:
        try:
            header = next(csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter))
        except (csv.Error, StopIteration):
            continue
        if len(header) > best_fields:
            best, best_fields = delimiter, len(header)
    return best


def _check_spare(table: Table, frame: pd.DataFrame, spare: list[str], rows: np.ndarray) -> None:
    """Refuse a row whose fields beyond the header are not empty."""
    extra = np.zeros(len(frame), dtype=bool)
    last = np.full(len(frame), -1)
    for i, key in enumerate(spare):
        filled = frame[key].to_numpy(dtype=object) != ""
        if filled.any():
            filled &= np.fromiter((bool(v.strip()) for v in frame[key]), dtype=bool, count=len(frame))
            extra |= filled
            last[filled] = i
    if extra.any():
        pos = int(np.flatnonzero(extra)[0])
        fields = len(table.names) + int(last[pos]) + 1
        raise ImportFailed(
            f"{table.name}: row {int(rows[pos])} has {fields} fields, the header has {len(table.names)}; "
            f"quote values that contain the {_DELIMITER_NAMES.get(table.delimiter or ',', 'delimiter')}"
        )


def _drop_blank_rows(chunk: Chunk) -> Chunk:
    n = len(chunk.rows)
    blank = np.ones(n, dtype=bool)
    for column in chunk.columns:
        candidates = np.flatnonzero(blank)
        if not len(candidates):
            break
        if len(candidates) == n:
            blank = np.fromiter((not v or v.isspace() for v in column), dtype=bool, count=n)
        else:
            blank[candidates] = [not column[i] or column[i].isspace() for i in candidates]
    if not blank.any():
        return chunk
    keep = np.flatnonzero(~blank)
    return Chunk(chunk.rows[keep], [[column[i] for i in keep] for column in chunk.columns], chunk.done)


def _check_cells(name: str, names: list[str], chunk: Chunk) -> None:
    for col, values in enumerate(chunk.columns):
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
        if len(lengths) and lengths.max() > MAX_CELL_CHARS:
            pos = int(lengths.argmax())
            label = f"'{names[col]}'" if names[col] else column_letter(col)
            raise ImportFailed(
                f"{name}: row {int(chunk.rows[pos])}, column {label}: a cell of {int(lengths[pos]):,} characters; "
                f"the limit is {MAX_CELL_CHARS:,}"
            )


def _parser_message(exc: Exception) -> str:
    text = str(exc).strip().removeprefix("Error tokenizing data. C error: ")
    text = re.sub(r"EOF inside string starting at row (\d+)", _eof_message, text)
    return re.sub(r"Expected (\d+) fields in line (\d+), saw (\d+)", _fields_message, text)


def _eof_message(match: re.Match[str]) -> str:
    return f"a quoted value starting on line {int(match.group(1)) + 1} never ends (a missing closing quote)"


def _fields_message(match: re.Match[str]) -> str:
    expected, line, saw = match.groups()
    return f"line {line} has {saw} fields, the header has fewer"


# --- XLSX


class _workbook:
    """Open an XLSX read-only with openpyxl's warnings silenced; close it on exit."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.book: Any = None
        self.handle: Any = None

    def __enter__(self) -> Any:
        import openpyxl
        from openpyxl.utils.exceptions import InvalidFileException

        try:
            with zipfile.ZipFile(self.path) as archive:
                if "xl/workbook.xml" not in archive.namelist():
                    what = "an OpenDocument spreadsheet" if "content.xml" in archive.namelist() else "a ZIP archive"
                    raise ImportFailed(f"{self.name}: {what}, not a CSV or XLSX file; save it as .xlsx or CSV")
                if sum(i.file_size for i in archive.infolist()) > MAX_XLSX_UNPACKED:
                    raise ImportFailed(
                        f"{self.name}: the workbook unpacks to more than {_megabytes(MAX_XLSX_UNPACKED)}"
                    )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # A file object, so the workbook's name (an upload's temporary name, .csv) does not matter.
                self.handle = self.path.open("rb")
                self.book = openpyxl.load_workbook(self.handle, read_only=True, data_only=True)
        except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError, TypeError) as exc:
            if self.handle is not None:
                self.handle.close()
            raise ImportFailed(f"{self.name}: not a readable XLSX workbook ({exc})") from None
        return self.book

    def __exit__(self, *exc: object) -> None:
        if self.book is not None:
            self.book.close()
        if self.handle is not None:
            self.handle.close()


def _rows_of(sheet: Any, name: str) -> Iterator[tuple[Any, ...]]:
    """Yield a sheet's rows from row 2; a damaged sheet is an ImportFailed, not a crash."""
    rows = sheet.iter_rows(min_row=2, values_only=True)
    while True:
        try:
            values = next(rows)
        except StopIteration:
            return
        except Exception as exc:  # openpyxl and its XML parser raise many kinds
            raise ImportFailed(f"{name}: not a readable XLSX workbook ({type(exc).__name__}: {exc})") from None
        yield values


def _open_xlsx(path: Path, name: str, size: int, sheet: str | None) -> Table:
    with _workbook(path, name) as book:
        sheets = list(book.sheetnames)
        if sheet is None:
            if not sheets:
                raise ImportFailed(f"{name}: the workbook has no sheets")
            sheet = sheets[0]
        elif sheet not in sheets:
            listed = ", ".join(repr(s) for s in sheets)
            raise ImportFailed(f"{name}: no sheet {sheet!r}; sheets: {listed}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            first = next(book[sheet].iter_rows(min_row=1, max_row=1, values_only=True), None)
    if first is None or not any(_cell_text(v).strip() for v in first):
        rows = "the sheet is empty" if first is None else "row 1 is blank; the header must be on row 1"
        raise ImportFailed(f"{name}: sheet {sheet!r}: {rows}")
    names = _header_names(name, [_cell_text(v) for v in first])
    return Table(path=path, name=name, kind="xlsx", names=names, size=size, sheet=sheet)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e17:
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def column_letter(index: int) -> str:
    """Return the spreadsheet letter of a 0-based column index (0 -> A)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _megabytes(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MB" if n < (1 << 30) else f"{n / (1 << 30):,.1f} GB"
