"""The rejects file: every rejected row with its reason, written whole or not at all.

UTF-8 with a BOM (Excel then reads it right), `row, reason, message` and then the row's original
cells. Written to a temporary name beside the target and moved into place only when the import
succeeds. Every cell a spreadsheet would run as a formula is made inert (`reports.safe_cell`).
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import IO, Any

from dialer.importing import ImportFailed
from dialer.reports import safe_cell

REJECTS_COLUMNS = ("row", "reason", "message")


class RejectsFile:
    """An optional rejects CSV being written; `finish()` publishes it, `abort()` removes it."""

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
        self._file = os.fdopen(fd, "w", encoding="utf-8-sig", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow([safe_cell(c) for c in (*REJECTS_COLUMNS, *names)])

    def write(self, rows: list[tuple[int, str, str, list[str]]]) -> None:
        """Append rejected rows: (row number, reason, message, original cells), in row order."""
        if self._writer is None:
            return
        for row, reason, message, cells in sorted(rows, key=lambda r: r[0]):
            self._writer.writerow([str(row), reason, safe_cell(message), *(safe_cell(c) for c in cells)])

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
