"""A column of typed phone numbers normalised in bulk, with exactly `phones.normalise`'s verdicts.

phonenumbers costs ~20 us a number, which is 20 s for a million-row list. Most of that work is
the same for every number sharing a prefix: the national significant number's first few digits
decide the type, the region and the time zones, and the last digits are carried through. So:

1. Clean each cell to `+`?digits with plain string methods; anything unusual (letters,
   placeholders, stray `+`) takes the per-number path, `phones.normalise`.
2. Group the clean numbers by (all digits but the last t, length), for t = 6, 5, 4, 3.
3. For each group call phonenumbers once, on its first number, and prove the verdict holds for
   every member: each metadata pattern phonenumbers consults is asked (see `patterns`) whether
   the group's leading digits already decide it; the time-zone prefix table likewise. If any
   pattern could tell members apart, the group is split at the next level; numbers no level
   settles are done one by one.

The proof follows phonenumbers' own code path (parse: IDD, country code, national prefix with
the general description; number_type: leading digits and every type description of every
region of the country code; time zones by longest prefix). Regions whose national prefix has a
transform rule are not grouped. tests/test_import_numbers.py checks the result against
`phones.normalise` on generated numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata
from phonenumbers.tzdata import TIMEZONE_DATA

from dialer import phones
from dialer.importing.patterns import Unsupported, compile_digits

# Tail lengths tried, longest first: a UK mobile is decided by 4-5 of its 10 digits.
LEVELS = (6, 5, 4, 3)
_SEPARATORS = (" ", "(", ")", "-", ".", "/", "\t", "\u00a0")
_SEPARATOR_TABLE = str.maketrans("", "", "".join(_SEPARATORS))
# Joins a column into one string for whole-column replaces; a cell holding it is done alone.
_JOIN = "\x1f"
# Anything but digits left, or a '+' that is not first: the per-cell rules decide.
_ODD = re.compile(r"[^0-9+\x1f]|(?<=[^\x1f])\+")
_DESCS = (
    "general_desc",
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)
_DRAMA = r"7700900\d{3}"


@dataclass
class NumberColumn:
    """Per row (numpy object arrays): E.164 or None, a reject's reason and message, the zones."""

    e164: np.ndarray
    reason: np.ndarray
    message: np.ndarray
    # Candidate IANA zones of accepted numbers; () when the number has none of its own.
    zones: np.ndarray
    # How many rows phonenumbers saw one by one (the rest shared a group's verdict).
    singles: int = 0


@dataclass(frozen=True)
class _Group:
    e164: str | None
    reason: str | None
    message: str | None
    zones: tuple[str, ...]
    # The representative's E.164 (also for a rejected type, whose message names it).
    full: str


def clean(raw: str) -> str | None:
    """Return `+`?digits for a plainly written number, or None when it needs the full rules."""
    text = raw.strip()
    if text[:1] == "'":
        text = text.lstrip("'").strip()
    digits = text.translate(_SEPARATOR_TABLE)
    if digits.isdigit() and digits.isascii():
        return digits
    if text[:1] == "+" and digits[:1] == "+" and digits[1:].isdigit() and digits.isascii():
        return digits
    return None


def clean_all(values: Sequence[str]) -> list[str | None]:
    """Return clean(v) for every value, using whole-column string operations for the usual cells."""
    n = len(values)
    big = _JOIN.join(values)
    if big.count(_JOIN) != n - 1:
        return [clean(v) for v in values]
    for sep in _SEPARATORS:
        if sep in big:
            big = big.replace(sep, "")
    pieces = big.split(_JOIN)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, pieces), dtype=np.int64, count=n)[:-1] + 1, out=starts[1:])
    # Cells with anything but digits left, an apostrophe or a '+' anywhere: the per-cell rules.
    odd = np.zeros(n, dtype=bool)
    hits = [m.start() for m in _ODD.finditer(big)]
    if hits:
        odd[np.searchsorted(starts, np.array(hits, dtype=np.int64), side="right") - 1] = True
    # A leading '+' counts only if it came first in the cell too: "(+44) ..." is unparseable.
    plus = np.fromiter((p[:1] == "+" for p in pieces), dtype=bool, count=n) & ~odd
    for i in np.flatnonzero(plus):
        odd[i] = not values[int(i)].lstrip(" \t\u00a0").startswith("+")
    out: list[str | None] = pieces  # type: ignore[assignment]
    for i in np.flatnonzero(odd | (np.fromiter(map(len, pieces), dtype=np.int64, count=n) <= 1)):
        out[i] = clean(values[int(i)])
    return out


def normalise_column(values: Sequence[str], region: str) -> NumberColumn:
    """Normalise every cell of a phone column for `region`; verdicts equal phones.normalise's."""
    region = region.upper()
    n = len(values)
    e164 = np.full(n, None, dtype=object)
    reason = np.full(n, None, dtype=object)
    message = np.full(n, None, dtype=object)
    zones = np.empty(n, dtype=object)
    zones.fill(())
    cleaned = np.array(clean_all(values), dtype=object)
    lengths = np.fromiter((len(c) if c is not None else 0 for c in cleaned), dtype=np.int64, count=n)
    # Up to 18 digits fit an int64; longer strings are never valid numbers and go one by one.
    todo = np.flatnonzero((lengths > 0) & (lengths <= 18))
    if len(todo):
        plus = np.fromiter((c[0] == "+" for c in cleaned[todo]), dtype=bool, count=len(todo))
        digits = np.fromiter(map(int, cleaned[todo]), dtype=np.int64, count=len(todo))
        shape = lengths[todo] * 2 + plus
    for tail in LEVELS:
        if not len(todo):
            break
        # Same leading digits, same length, same '+': the same head.
        codes, _ = pd.factorize((digits // 10**tail) * 64 + shape)
        _, firsts = np.unique(codes, return_index=True)
        groups = [_group_of(cleaned[todo[p]], tail, region) for p in firsts]
        known = np.fromiter((g is not None for g in groups), dtype=bool, count=len(groups))
        settled = known[codes]
        if settled.any():
            rows = todo[settled]
            mine = codes[settled]
            heads = np.array([g.full[:-tail] if g else "" for g in groups], dtype=object)
            full = heads[mine] + np.array([c[-tail:] for c in cleaned[rows]], dtype=object)
            ok = np.fromiter((g is not None and g.e164 is not None for g in groups), dtype=bool, count=len(groups))
            accepted = ok[mine]
            e164[rows[accepted]] = full[accepted]
            zone_sets = np.empty(len(groups), dtype=object)
            zone_sets[:] = [g.zones if g else () for g in groups]
            zones[rows[accepted]] = zone_sets[mine[accepted]]
            for row, code, number in zip(rows[~accepted], mine[~accepted], full[~accepted], strict=True):
                g = groups[code]
                assert g is not None
                reason[row] = g.reason
                message[row] = g.message.replace(g.full, number) if g.message else g.message
        todo, digits, shape = todo[~settled], digits[~settled], shape[~settled]
    singles = np.flatnonzero(e164 == None)  # noqa: E711 - elementwise on an object array
    singles = singles[reason[singles] == None]  # noqa: E711
    for i in singles:
        result = phones.normalise(values[i], region)
        if result.e164 is not None:
            e164[i] = result.e164
            zones[i] = phones.number_zones(result.e164)
        else:
            reason[i] = result.reason
            message[i] = result.message
    return NumberColumn(e164=e164, reason=reason, message=message, zones=zones, singles=len(singles))


# (head, tail, region) -> the group's verdict; the head fixes the length, so any member will do.
_GROUPS: dict[tuple[str, int, str], _Group | None] = {}
_GROUPS_MAX = 262144


def _group_of(first: str, tail: int, region: str) -> _Group | None:
    key = (first[:-tail], tail, region)
    if key in _GROUPS:
        return _GROUPS[key]
    if len(_GROUPS) >= _GROUPS_MAX:
        _GROUPS.clear()
    found = _GROUPS[key] = _group(first, tail, region)
    return found


def _group(first: str, tail: int, region: str) -> _Group | None:
    """Return the verdict every number shaped like `first` shares (same head, same length), or None."""
    verdict = phones.normalise(first, region)
    international = first if first.startswith("+") else phones.international_without_plus(first, region)
    try:
        number = phonenumbers.parse(international, region)
    except NumberParseException:
        return None
    nsn = phonenumbers.national_significant_number(number)
    cc = number.country_code
    if cc is None or len(nsn) <= tail:
        return None
    full = f"+{cc}{nsn}"
    if verdict.e164 is not None and verdict.e164 != full:
        return None
    if not _tail_is_free(international.lstrip("+"), nsn, cc, tail, region):
        return None
    if verdict.e164 is None:
        return _Group(None, verdict.reason, verdict.message, (), full)
    return _Group(verdict.e164, None, None, phones.number_zones(verdict.e164), full)


def _tail_is_free(digits: str, nsn: str, cc: int, tail: int, region: str) -> bool:
    """Tell whether no pattern phonenumbers consults for this number reads its last `tail` digits."""
    try:
        return _suffixes_free(digits[:-tail], len(digits) - len(nsn), cc, tail, region) and _nsn_free(
            nsn[:-tail], cc, tail
        )
    except Unsupported:
        return False


@lru_cache(maxsize=65536)
def _suffixes_free(head: str, lead: int, cc: int, tail: int, region: str) -> bool:
    # Parsing reads the whole digit string and its suffixes down to the national number: the
    # international and national prefixes (matched at the start) and the general descriptions.
    default = PhoneMetadata.metadata_for_region(region, None)
    main = PhoneMetadata.metadata_for_region_or_calling_code(cc, phonenumbers.region_code_for_country_code(cc))
    metadata = [m for m in (default, main) if m is not None]
    if any(m.national_prefix_transform_rule for m in metadata):
        return False
    starts = {p for m in metadata for p in (m.international_prefix, m.national_prefix_for_parsing) if p}
    generals = {m.general_desc.national_number_pattern for m in metadata if m.general_desc is not None}
    for skip in range(lead + 1):
        rest_head = head[skip:]
        # The country code (up to 3 digits) and the digit after an IDD must lie in the head too.
        if len(rest_head) < 4 or not all(compile_digits(p).decides_match(rest_head) for p in starts):
            return False
        for pattern in generals:
            if pattern and compile_digits(pattern).decided(rest_head, tail) is None:
                return False
    return True


@lru_cache(maxsize=65536)
def _nsn_free(head: str, cc: int, tail: int) -> bool:
    for region_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc, ()):
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(cc, region_code)
        if metadata is None:
            continue
        if metadata.leading_digits and not compile_digits(metadata.leading_digits).decides_match(head):
            return False
        for name in _DESCS:
            desc = getattr(metadata, name)
            if desc is None or not desc.national_number_pattern:
                continue
            if compile_digits(desc.national_number_pattern).decided(head, tail) is None:
                return False
    if cc == 44 and compile_digits(_DRAMA).decided(head, tail) is None:
        return False
    # Zones come from the longest prefix in the table: no longer key may start with the head.
    return f"{cc}{head}" not in _zone_key_prefixes()


@lru_cache(maxsize=1)
def _zone_key_prefixes() -> frozenset[str]:
    return frozenset(key[:i] for key in TIMEZONE_DATA for i in range(1, len(key)))
