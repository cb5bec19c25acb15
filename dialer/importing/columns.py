"""What each column of a lead file is for: the number, optional lead settings, custom fields.

Names are compared without case, spaces, `_`, `-` or dots: "Contact Number", "contact_number"
and "CONTACT-NUMBER" are one name.

Decisions:
- Several recognised phone columns (say phone and mobile) fail the import: which number to ring
  is the manager's decision, not the importer's guess.
- Every other column is a custom field under its header text. A column with no header is kept as
  "column F" (its spreadsheet letter); a repeated header gets ".2", ".3". Empty cells are left out
  of a lead's custom fields, so trailing empty columns cost nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dialer.importing import ImportFailed
from dialer.importing.sources import column_letter

# Header names recognised as the number to ring.
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
CALLBACK_COLUMNS = ("callback_at", "callback time")
PRIORITY_COLUMNS = ("priority",)
AGENT_COLUMNS = ("agent",)
_SEPARATORS = re.compile(r"[\s_\-.]+")


@dataclass
class Columns:
    """Column positions (0-based) of one file; `custom` maps the others to their field names."""

    names: list[str]
    phone: int
    timezone: int | None = None
    callback_at: int | None = None
    priority: int | None = None
    agent: int | None = None
    custom: list[tuple[int, str]] = field(default_factory=list)

    def describe(self) -> dict[str, str | None]:
        """Return which header feeds which lead setting."""
        return {
            "phone": self.names[self.phone],
            "timezone": self._name(self.timezone),
            "callback_at": self._name(self.callback_at),
            "priority": self._name(self.priority),
            "agent": self._name(self.agent),
        }

    def _name(self, index: int | None) -> str | None:
        return None if index is None else self.names[index]


def key(name: str) -> str:
    """Return a header name folded for comparison."""
    return _SEPARATORS.sub(" ", name.strip().lower()).strip()


def map_columns(file_name: str, names: list[str], phone_column: str | None = None) -> Columns:
    """Decide the phone column, the optional settings columns and the custom fields."""
    phone = find_phone_column(file_name, names, phone_column)
    columns = Columns(names=names, phone=phone)
    taken = {phone}
    for attr, wanted in (
        ("timezone", TIMEZONE_COLUMNS),
        ("callback_at", CALLBACK_COLUMNS),
        ("priority", PRIORITY_COLUMNS),
        ("agent", AGENT_COLUMNS),
    ):
        keys = {key(n) for n in wanted}
        found = [i for i, n in enumerate(names) if i not in taken and key(n) in keys]
        if len(found) > 1:
            several = ", ".join(repr(names[i]) for i in found)
            raise ImportFailed(f"{file_name}: several {attr} columns ({several}); keep one")
        if found:
            setattr(columns, attr, found[0])
            taken.add(found[0])
    used: set[str] = set()
    for i, name in enumerate(names):
        if i in taken:
            continue
        base = name or f"column {column_letter(i)}"
        unique, n = base, 1
        while unique in used:
            n += 1
            unique = f"{base}.{n}"
        used.add(unique)
        columns.custom.append((i, unique))
    return columns


def find_phone_column(file_name: str, names: list[str], phone_column: str | None) -> int:
    """Return the index of the column holding the numbers; raise ImportFailed if unclear."""
    found = ", ".join(repr(n) for n in names)
    if phone_column is not None:
        exact = [i for i, n in enumerate(names) if n == phone_column.strip()]
        loose = [i for i, n in enumerate(names) if key(n) == key(phone_column)]
        if exact or loose:
            return (exact or loose)[0]
        raise ImportFailed(f"{file_name}: no column {phone_column!r}; columns found: {found}")
    wanted = {key(n) for n in PHONE_COLUMNS}
    matches = [i for i, n in enumerate(names) if key(n) in wanted]
    if not matches:
        raise ImportFailed(
            f"{file_name}: no phone column; name one (--phone-column) or call a column one of "
            f"{', '.join(PHONE_COLUMNS)}; columns found: {found}"
        )
    if len(matches) > 1:
        several = ", ".join(repr(names[i]) for i in matches)
        raise ImportFailed(f"{file_name}: several phone columns ({several}); name the one to ring (--phone-column)")
    return matches[0]
