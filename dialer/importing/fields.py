"""Per-column checks and conversions of a chunk, done once per distinct value or per column.

Decisions:
- `timezone`: an IANA name in any letter case; anything else rejects the row (`invalid_timezone`):
  the manager said where this person is, and compliance fails closed. Empty: the number's zones.
- `callback_at`: ISO 8601 with a time (`2026-03-02T14:30`, `2026-03-02 14:30:00+00:00`, `...Z`) or
  `YYYY-MM-DD HH:MM`; a time without an offset is in the campaign's zone. A date alone, or any
  other format, rejects the row (`invalid_callback_at`): a guess could ring at the wrong hour.
- `priority`: a whole number from -1,000,000 to 1,000,000 (`invalid_priority` otherwise).
- `agent`: the number of one of the campaign's agents (`unknown_agent` otherwise).
- Custom fields: cells trimmed; NUL characters dropped (Postgres text cannot hold them).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zoneinfo
from collections.abc import Callable, Hashable, Iterable, Sequence
from functools import lru_cache
from typing import TypeVar

import numpy as np

PRIORITY_LIMIT = 1_000_000
_JOIN = "\x1f"
# Cells that need json.dumps rather than plain quoting (the joiner itself is checked apart).
_JSON_SPECIAL = re.compile(r'["\\\x00-\x1e]')
_CALLBACK_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}")
_PRIORITY_SHAPE = re.compile(r"[+-]?\d{1,9}")

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def cells_matching(values: Sequence[str], pattern: re.Pattern[str]) -> np.ndarray:
    """Return a mask of the cells in which `pattern` (which must not match U+001F) finds a match.

    The column is joined with U+001F and scanned once, which for a character class is far
    cheaper than a search per cell; a column that contains U+001F is scanned cell by cell.
    """
    n = len(values)
    mask = np.zeros(n, dtype=bool)
    if not n:
        return mask
    big = _JOIN.join(values)
    if pattern is _JSON_SPECIAL and '"' not in big and "\\" not in big and "".join(values).isprintable():
        # The usual column: no quotes, backslashes or control characters (memchr-fast checks).
        return mask
    if big.count(_JOIN) != n - 1:
        return np.fromiter((pattern.search(v) is not None for v in values), dtype=bool, count=n)
    positions = [m.start() for m in pattern.finditer(big)]
    if positions:
        starts = np.zeros(n, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, values), dtype=np.int64, count=n)[:-1] + 1, out=starts[1:])
        mask[np.searchsorted(starts, np.array(positions, dtype=np.int64), side="right") - 1] = True
    return mask


def stripped(values: Sequence[str]) -> list[str]:
    """Return the cells without surrounding whitespace."""
    return [v.strip() for v in values]


def json_objects(fields: list[tuple[str, list[str]]], n: int) -> list[str]:
    """Return each row's custom fields as JSON object text (empty cells left out), escaped for COPY.

    Rows are formatted with one %-template per combination of empty cells (a handful in practice),
    so a row costs one string formatting whatever the number of columns.
    """
    keys: list[str] = []
    columns: list[list[str]] = []
    filled = np.zeros((len(fields), n), dtype=bool)
    for name, raw in fields:
        values = stripped(raw)
        present = np.fromiter(map(len, values), dtype=np.int64, count=n) > 0
        if not present.any():
            continue
        for i in np.flatnonzero(cells_matching(values, _JSON_SPECIAL) | _holds_joiner(values)):
            # Escaped text without its quotes; COPY's text format reads a backslash as an escape.
            values[i] = json.dumps(values[i].replace("\x00", ""), ensure_ascii=False)[1:-1].replace("\\", "\\\\")
        filled[len(keys)] = present
        keys.append(json.dumps(name, ensure_ascii=False).replace("\\", "\\\\").replace("%", "%%"))
        columns.append(values)
    if not keys:
        return ["{}"] * n
    filled = filled[: len(keys)]
    shape = np.zeros(n, dtype=np.int64)
    for c in range(len(keys)):
        shape |= filled[c].astype(np.int64) << c
    out = np.empty(n, dtype=object)
    for code in np.unique(shape):
        rows = np.flatnonzero(shape == code)
        used = [c for c in range(len(keys)) if code >> c & 1]
        template = "{" + ", ".join(f'{keys[c]}: "%s"' for c in used) + "}"
        if not used:
            out[rows] = "{}"
            continue
        cells = [np.asarray(columns[c], dtype=object)[rows] for c in used]
        out[rows] = [template % values for values in zip(*cells, strict=True)]
    return out.tolist()


def _holds_joiner(values: list[str]) -> np.ndarray:
    if _JOIN not in "".join(values):
        return np.zeros(len(values), dtype=bool)
    return np.fromiter((_JOIN in v for v in values), dtype=bool, count=len(values))


def per_value(values: Iterable[K], convert: Callable[[K], T]) -> list[T]:
    """Apply `convert` once per distinct value."""
    seen: dict[K, T] = {}
    out: list[T] = []
    for v in values:
        if v in seen:
            out.append(seen[v])
        else:
            seen[v] = result = convert(v)
            out.append(result)
    return out


@lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    names = zoneinfo.available_timezones() - {"Factory", "localtime", "posixrules"}
    return {name.lower(): name for name in names}


def canonical_zone(text: str) -> str | None:
    """Return the IANA zone `text` names (any letter case), or None."""
    return _zone_names().get(text.strip().lower())


def parse_callback(text: str, zone: zoneinfo.ZoneInfo) -> dt.datetime | str:
    """Return the callback time (aware), or a message saying why `text` is not one."""
    value = text.strip()
    if not _CALLBACK_SHAPE.match(value):
        return f"not a callback time: {value[:40]!r}; use YYYY-MM-DD HH:MM or ISO 8601 such as 2026-03-02T14:30"
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return f"not a callback time: {value[:40]!r}; use YYYY-MM-DD HH:MM or ISO 8601 such as 2026-03-02T14:30"
    return when if when.tzinfo is not None else when.replace(tzinfo=zone)


def parse_priority(text: str) -> int | str:
    """Return the priority, or a message saying why `text` is not one."""
    value = text.strip()
    if _PRIORITY_SHAPE.fullmatch(value) and abs(int(value)) <= PRIORITY_LIMIT:
        return int(value)
    return f"priority must be a whole number from -{PRIORITY_LIMIT:,} to {PRIORITY_LIMIT:,}, not {value[:40]!r}"
