"""Per-column checks and conversions of a chunk, done once per distinct value or per column.

Decisions:
- `timezone`: an IANA name in any letter case; anything else rejects the row (`invalid_timezone`):
  the manager said where this person is, and compliance fails closed. Empty: the number's zones.
- `callback_at`: ISO 8601 with a time (`2026-03-02T14:30`, `2026-03-02 14:30:00+00:00`, `...Z`) or
  `YYYY-MM-DD HH:MM`; a time without an offset is in the campaign's zone. A date alone, or any
  other format, rejects the row (`invalid_callback_at`): a guess could ring at the wrong hour.
- `priority`: a whole number from -1,000,000 to 1,000,000 (`invalid_priority` otherwise).
- `agent`: the number of one of the campaign's agents (`unknown_agent` otherwise).
- Custom fields: cells trimmed; NUL characters dropped (Postgres text cannot hold them); stored
  as a text[] against the import job's headers (see `custom_cells`).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable, Hashable, Iterable, Sequence
from functools import lru_cache
from typing import TypeVar

PRIORITY_LIMIT = 1_000_000
_JOIN = "\x1f"
_CALLBACK_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}")
_PRIORITY_SHAPE = re.compile(r"[+-]?\d{1,9}")

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def stripped(values: Sequence[str]) -> list[str]:
    """Return the cells without surrounding whitespace."""
    return [v.strip() for v in values]


def custom_cells(values: Sequence[str]) -> list[str]:
    """Return each custom cell trimmed, as the inside of a quoted text[] element in COPY text.

    Empty cells stay '' (a lead's custom fields leave them out). The usual column (printable,
    no quotes or backslashes, no space at either end of a cell) is returned as it is; the other
    cells are escaped one by one: NUL dropped (Postgres text cannot hold it), backslash and
    double quote escaped for the array literal, then backslash, tab, newline and CR for COPY.
    """
    out = list(values)
    if not values:
        return out
    flat = "".join(values)
    if flat.isprintable() and '"' not in flat and "\\" not in flat:
        # Printable text holds no whitespace but the ASCII space, and no joiner.
        big = _JOIN.join(values)
        if not (big[:1] == " " or big[-1:] == " " or " " + _JOIN in big or _JOIN + " " in big):
            return out
        odd = [i for i, v in enumerate(values) if v[:1] == " " or v[-1:] == " "]
    else:
        odd = [i for i, v in enumerate(values) if v != v.strip() or not v.isprintable() or '"' in v or "\\" in v]
    for i in odd:
        out[i] = _array_element(values[i])
    return out


def _array_element(value: str) -> str:
    text = value.strip().replace("\x00", "").replace("\\", "\\\\").replace('"', '\\"')
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


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
