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
# Joins a column into one string to read it as bytes; a column holding it is done cell by cell.
_JOIN = "\x1f"
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
    """Per row: the number as an integer, a reject's reason and message, the zones (numpy arrays)."""

    # The digits of the E.164 form as an integer (+447911123456 -> 447911123456): E.164 has at
    # most 15 digits and never starts with 0, so this is exact; 0 for a rejected row.
    key: np.ndarray
    reason: np.ndarray
    message: np.ndarray
    # Candidate IANA zones of accepted numbers; () when the number has none of its own.
    zones: np.ndarray
    # How many rows phonenumbers saw one by one (the rest shared a group's verdict).
    singles: int = 0

    @property
    def e164(self) -> np.ndarray:
        """Return E.164 text per row (None for a rejected one), as an object array."""
        return e164_texts(self.key)


def e164_texts(keys: np.ndarray) -> np.ndarray:
    """Return "+<digits>" for each positive key, None for 0, as an object array."""
    out = np.full(len(keys), None, dtype=object)
    accepted = np.flatnonzero(keys > 0)
    out[accepted] = ["+" + k for k in map(str, keys[accepted].tolist())]
    return out


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
    """Return clean(v) for every value, reading the usual cells as bytes in bulk (see _clean_bulk)."""
    cleaned = _clean_bulk(values)
    out: list[str | None] = [None] * len(values)
    for i in np.flatnonzero(cleaned.length > 0).tolist():
        out[i] = cleaned.text(i)
    for i, text in cleaned.long.items():
        out[i] = text
    return out


@dataclass
class _Cleaned:
    """clean() of a column as arrays: whether the text has a leading '+', its digit count and value."""

    plus: np.ndarray
    ndigits: np.ndarray
    digits: np.ndarray
    # len(clean(v)) when it is 1..18 characters (the digits fit an int64), else 0.
    length: np.ndarray
    # clean(v) of the cells longer than 18 characters, by row.
    long: dict[int, str]

    def text(self, i: int) -> str:
        return ("+" if self.plus[i] else "") + str(int(self.digits[i])).zfill(int(self.ndigits[i]))


# Byte classes for _clean_bulk: digits, separators, '+', apostrophe, the joiner, anything else.
_DIGIT, _SEP, _PLUS, _QUOTE, _JOINER, _OTHER = range(6)
_CLASS = np.full(256, _OTHER, dtype=np.int8)
_CLASS[ord("0") : ord("9") + 1] = _DIGIT
_CLASS[[ord(c) for c in _SEPARATORS if c.isascii()]] = _SEP
_CLASS[ord("+")] = _PLUS
_CLASS[ord("'")] = _QUOTE
_CLASS[ord(_JOIN)] = _JOINER
_POW10 = 10 ** np.arange(19, dtype=np.int64)
_MAX_DIGITS = 18


def _clean_bulk(values: Sequence[str]) -> _Cleaned:
    """Return clean(v) for every value as arrays, deciding the usual cells byte by byte in numpy.

    A cell made of ASCII digits and separators, with at most an apostrophe as its first character
    and a '+' as its first character after that, is clean()ed here: its digits, their count and
    whether it had the '+'. Every other cell (letters, spaces before a '+', a second apostrophe,
    non-ASCII text) goes through clean() itself, so the result is clean()'s in every case.
    """
    n = len(values)
    plus = np.zeros(n, dtype=bool)
    ndigits = np.zeros(n, dtype=np.int64)
    digits = np.zeros(n, dtype=np.int64)
    odd = np.zeros(n, dtype=bool)
    big = _JOIN.join(values)
    if n and big.count(_JOIN) == n - 1:
        # "replace" turns each non-ASCII character into one '?': positions stay those of the text.
        raw = np.frombuffer(big.encode("ascii", "replace"), dtype=np.uint8)
        kind = _CLASS[raw]
        joiners = np.flatnonzero(kind == _JOINER)
        starts = np.empty(n, dtype=np.int64)
        starts[0] = 0
        starts[1:] = joiners + 1
        cell = np.zeros(len(raw), dtype=np.int64)
        cell[joiners] = 1
        np.cumsum(cell, out=cell)
        offset = np.arange(len(raw), dtype=np.int64) - starts[cell]
        odd[cell[kind == _OTHER]] = True
        quote = kind == _QUOTE
        odd[cell[quote & (offset != 0)]] = True
        sign = np.flatnonzero(kind == _PLUS)
        first = offset[sign] == 0
        second = offset[sign] == 1
        second[second] = kind[sign[second] - 1] == _QUOTE
        odd[cell[sign[~(first | second)]]] = True
        plus[cell[sign]] = True
        at = np.flatnonzero(kind == _DIGIT)
        owner = cell[at]
        ndigits = np.bincount(owner, minlength=n).astype(np.int64)
        # Digit k of a cell with d digits weighs 10**(d-1-k); cells over 18 digits go one by one.
        firsts = np.zeros(n, dtype=np.int64)
        np.cumsum(ndigits[:-1], out=firsts[1:])
        power = ndigits[owner] - 1 - (np.arange(len(at), dtype=np.int64) - firsts[owner])
        np.minimum(power, _MAX_DIGITS, out=power)
        weighted = (raw[at].astype(np.int64) - ord("0")) * _POW10[power]
        some = np.flatnonzero(ndigits > 0)
        if len(some):
            digits[some] = np.add.reduceat(weighted, firsts[some])
        odd |= (ndigits == 0) | (ndigits + plus > _MAX_DIGITS)
    else:
        odd[:] = True
    long: dict[int, str] = {}
    for i in np.flatnonzero(odd).tolist():
        text = clean(values[i])
        if text is None:
            plus[i], ndigits[i], digits[i] = False, 0, 0
        elif len(text) > _MAX_DIGITS:
            plus[i], ndigits[i], digits[i] = False, 0, 0
            long[i] = text
        else:
            body = text.lstrip("+")
            plus[i], ndigits[i], digits[i] = len(body) < len(text), len(body), int(body)
    return _Cleaned(
        plus=plus, ndigits=ndigits, digits=digits, length=np.where(ndigits > 0, ndigits + plus, 0), long=long
    )


def normalise_column(values: Sequence[str], region: str) -> NumberColumn:
    """Normalise every cell of a phone column for `region`; verdicts equal phones.normalise's."""
    region = region.upper()
    n = len(values)
    key = np.zeros(n, dtype=np.int64)
    reason = np.full(n, None, dtype=object)
    message = np.full(n, None, dtype=object)
    zones = np.empty(n, dtype=object)
    zones.fill(())
    cleaned = _clean_bulk(values)
    todo = np.flatnonzero(cleaned.length > 0)
    digits = cleaned.digits[todo]
    # Same leading digits, same length, same '+': the same head.
    shape = cleaned.length[todo] * 2 + cleaned.plus[todo]
    for tail in LEVELS:
        if not len(todo):
            break
        codes, _ = pd.factorize((digits // _POW10[tail]) * 64 + shape)
        _, firsts = np.unique(codes, return_index=True)
        groups = [_group_of(cleaned.text(int(todo[p])), tail, region) for p in firsts]
        known = np.fromiter((g is not None for g in groups), dtype=bool, count=len(groups))
        settled = known[codes]
        if settled.any():
            rows = todo[settled]
            mine = codes[settled]
            ok = np.fromiter((g is not None and g.e164 is not None for g in groups), dtype=bool, count=len(groups))
            heads = np.fromiter((int(g.full[1:-tail]) if g else 0 for g in groups), dtype=np.int64, count=len(groups))
            accepted = ok[mine]
            key[rows[accepted]] = heads[mine[accepted]] * _POW10[tail] + digits[settled][accepted] % _POW10[tail]
            zone_sets = np.empty(len(groups), dtype=object)
            zone_sets[:] = [g.zones if g else () for g in groups]
            zones[rows[accepted]] = zone_sets[mine[accepted]]
            for row, code in zip(rows[~accepted].tolist(), mine[~accepted].tolist(), strict=True):
                g = groups[code]
                assert g is not None
                number = g.full[:-tail] + cleaned.text(row)[-tail:]
                reason[row] = g.reason
                message[row] = g.message.replace(g.full, number) if g.message else g.message
        todo, digits, shape = todo[~settled], digits[~settled], shape[~settled]
    singles = np.flatnonzero((key == 0) & (reason == None))  # noqa: E711 - elementwise on an object array
    for i in singles.tolist():
        result = phones.normalise(values[i], region)
        if result.e164 is not None:
            key[i] = int(result.e164[1:])
            zones[i] = phones.number_zones(result.e164)
        else:
            reason[i] = result.reason
            message[i] = result.message
    return NumberColumn(key=key, reason=reason, message=message, zones=zones, singles=len(singles))


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
