"""Phone numbers as people type them, turned into dialable E.164 (or a reason why not).

Decisions:
- Dialable types are the ones a person answers: fixed line, mobile, fixed-line-or-mobile and VoIP.
  Premium rate, shared cost, UAN, pager, personal numbers (UK 070: premium-priced, a fraud
  favourite), toll-free and voicemail access numbers are `not_dialable_type`.
- Ofcom's drama range 07700 900000-900999 is accepted as a UK mobile although libphonenumber calls
  it invalid: the numbers are reserved never to be allocated, so demo and rehearsal lists built from
  them look real and still cannot ring anyone (the geographic drama ranges are valid already).
- Only digits, spaces and the separators + ( ) - . / are accepted; anything else (letters,
  extensions, "tel:") is `unparseable`, because click-to-call cannot dial an extension and a guess
  could ring the wrong person.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType, ValidationResult
from phonenumbers import timezone as pn_timezone

MISSING_NUMBER = "missing_number"
UNPARSEABLE = "unparseable"
INVALID_NUMBER = "invalid_number"
NOT_DIALABLE_TYPE = "not_dialable_type"

DIALABLE_TYPES = frozenset(
    {
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
        PhoneNumberType.VOIP,
    }
)

_TYPE_NAMES = {
    PhoneNumberType.PREMIUM_RATE: "premium-rate number",
    PhoneNumberType.SHARED_COST: "shared-cost number",
    PhoneNumberType.UAN: "universal access (UAN) number",
    PhoneNumberType.PAGER: "pager number",
    PhoneNumberType.PERSONAL_NUMBER: "personal (follow-me) number",
    PhoneNumberType.TOLL_FREE: "toll-free service number",
    PhoneNumberType.VOICEMAIL: "voicemail access number",
}

_UNKNOWN_ZONE = "Etc/Unknown"
# What people write in a phone cell when there is no number.
_PLACEHOLDERS = frozenset({"n/a", "na", "none", "null", "nil", "unknown", "tbc", "tba", "-", "--", "?"})
_ALLOWED = re.compile(r"[0-9+()\-./\s]*")
_NOT_DIGIT = re.compile(r"\D")
# Excel shows long numbers as 4.47911E+11 and the lost digits cannot be recovered.
_SCIENTIFIC = re.compile(r"\d(?:[.,]\d+)?[eE]\+?\d+")
# +44 7700 900000..900999, Ofcom's fictional mobile range (see the module docstring).
_DRAMA_MOBILE = range(7700900000, 7700901000)
# Zones of numbers normalise() accepted, so zones_for() need not validate them again.
_KNOWN_ZONES: dict[str, tuple[str, ...]] = {}
_KNOWN_ZONES_MAX = 262144


@dataclass(frozen=True, slots=True)
class Normalised:
    """A number in E.164, or the reason code and a message saying why it cannot be dialled."""

    e164: str | None
    reason: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        """Tell whether the number is dialable."""
        return self.e164 is not None


def normalise(raw: str, region: str) -> Normalised:
    """Turn a typed phone number into E.164 for `region` (ISO 3166 code), or say why it cannot be."""
    text = (raw or "").strip().lstrip("'").strip()
    if not text or text.lower() in _PLACEHOLDERS:
        return Normalised(None, MISSING_NUMBER, "no phone number")
    if _SCIENTIFIC.fullmatch(text):
        message = "scientific notation lost the last digits; format the column as text and export again"
        return Normalised(None, UNPARSEABLE, message)
    if not _ALLOWED.fullmatch(text):
        if any(c.isalpha() for c in text):
            return Normalised(None, UNPARSEABLE, "not a number: contains letters")
        bad = " ".join(sorted({c for c in text if not _ALLOWED.fullmatch(c)}))
        return Normalised(None, UNPARSEABLE, f"not a number: contains {bad}")
    digits = _NOT_DIGIT.sub("", text)
    if not digits:
        return Normalised(None, UNPARSEABLE, "not a number: no digits")
    plus = text.find("+")
    if plus > 0 or text.count("+") > 1:
        return Normalised(None, UNPARSEABLE, "not a number: a '+' belongs only at the start")
    return _normalise_digits(("+" if plus == 0 else "") + digits, region.upper())


@lru_cache(maxsize=131072)
def _normalise_digits(cleaned: str, region: str) -> Normalised:
    # Keyed by the cleaned digit string: lists repeat numbers in many spellings.
    if not cleaned.startswith("+"):
        cleaned = international_without_plus(cleaned, region)
    try:
        number = phonenumbers.parse(cleaned, region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.NOT_A_NUMBER:
            return Normalised(None, UNPARSEABLE, "not a number")
        return Normalised(None, INVALID_NUMBER, f"not a valid number: {_parse_error(exc)}")
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if number.country_code == 44 and number.national_number in _DRAMA_MOBILE:
        _remember_zones(e164, _drama_zones())
        return Normalised(e164)
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        # number_type() is UNKNOWN exactly when is_valid_number() is false; one call, not two.
        return Normalised(None, INVALID_NUMBER, f"not a valid number: {_invalid_detail(number)}")
    if kind not in DIALABLE_TYPES:
        name = _TYPE_NAMES.get(kind, "service number")
        message = f"{name} ({e164}); only fixed-line, mobile and VoIP lines are dialled"
        return Normalised(None, NOT_DIALABLE_TYPE, message)
    # The type is known here, so the zones cost a prefix lookup instead of a second validation.
    _remember_zones(e164, _zones_of(number, kind))
    return Normalised(e164)


def international_without_plus(digits: str, region: str) -> str:
    """Read 447911123456 as +44 7911 123456: country code first and too long to be national."""
    code = str(phonenumbers.country_code_for_region(region))
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if code == "0" or metadata is None or not digits.startswith(code):
        return digits
    lengths = metadata.general_desc.possible_length if metadata.general_desc is not None else None
    longest_national = max(lengths or (15,)) + len(metadata.national_prefix or "")
    return "+" + digits if len(digits) > longest_national else digits


def _parse_error(exc: NumberParseException) -> str:
    return {
        NumberParseException.INVALID_COUNTRY_CODE: "no known country code",
        NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
        NumberParseException.TOO_SHORT_NSN: "too short",
        NumberParseException.TOO_LONG: "too long",
    }.get(exc.error_type, str(exc))


def _invalid_detail(number: phonenumbers.PhoneNumber) -> str:
    result = phonenumbers.is_possible_number_with_reason(number)
    return {
        ValidationResult.TOO_SHORT: "too short",
        ValidationResult.TOO_LONG: "too long",
        ValidationResult.INVALID_LENGTH: "wrong number of digits",
        ValidationResult.INVALID_COUNTRY_CODE: "no known country code",
    }.get(result, "no such number range")


def zones_for(e164: str, default_tz: str) -> list[str]:
    """Return the IANA zones a number may ring in; `default_tz` when the number has no known zone."""
    zones = number_zones(e164)
    return list(zones) if zones else [default_tz]


def number_zones(e164: str) -> tuple[str, ...]:
    """Return the IANA zones of a number in E.164; () when it has none of its own."""
    zones = _KNOWN_ZONES.get(e164)
    if zones is None:
        zones = _lookup_zones(e164)
        _remember_zones(e164, zones)
    return zones


def _lookup_zones(e164: str) -> tuple[str, ...]:
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return ()
    if number.country_code == 44 and number.national_number in _DRAMA_MOBILE:
        return _drama_zones()
    return _zones_of(number, phonenumbers.number_type(number))


def _zones_of(number: phonenumbers.PhoneNumber, kind: int) -> tuple[str, ...]:
    """Zones of a number whose type is known: what time_zones_for_number does, without re-validating."""
    if kind == PhoneNumberType.UNKNOWN:
        return ()
    country_code = number.country_code or 0
    if phonenumbers.is_number_type_geographical(kind, country_code):
        zones = pn_timezone.time_zones_for_geographical_number(number)
    else:
        zones = _country_zones(country_code)
    return tuple(z for z in zones if z != _UNKNOWN_ZONE)


@lru_cache(maxsize=512)
def _country_zones(country_code: int) -> tuple[str, ...]:
    return tuple(pn_timezone._country_level_time_zones_for_number(phonenumbers.PhoneNumber(country_code=country_code)))


@lru_cache(maxsize=1)
def _drama_zones() -> tuple[str, ...]:
    # A fictional mobile rings under the same clock rules as a real UK mobile.
    example = phonenumbers.example_number_for_type("GB", PhoneNumberType.MOBILE)
    return _zones_of(example, PhoneNumberType.MOBILE) if example is not None else ()


def _remember_zones(e164: str, zones: tuple[str, ...]) -> None:
    if len(_KNOWN_ZONES) >= _KNOWN_ZONES_MAX:
        _KNOWN_ZONES.clear()
    _KNOWN_ZONES[e164] = zones
