"""Phone normalisation: what people type becomes E.164 or a reason code; zones per number."""

from __future__ import annotations

import pytest

from dialer.phones import Normalised, normalise, zones_for

UK_MOBILE_ZONES = ["Europe/Guernsey", "Europe/Isle_of_Man", "Europe/Jersey", "Europe/London"]


@pytest.mark.parametrize(
    "raw",
    [
        "+44 7911 123456",
        "07911 123456",
        "0044-7911-123456",
        "(07911) 123 456",
        "447911123456",
        "44 7911 123456",
        "07911.123.456",
        "07911-123-456",
        "'07911 123456",
        "  07911123456  ",
        "+44 (0)7911 123456",
        "+44 07911 123456",
        "7911123456",  # Excel dropped the leading zero
        "07911\u00a0123456",  # a non-breaking space pasted from a web page
    ],
)
def test_accepts_what_people_type(raw: str) -> None:
    assert normalise(raw, "GB") == Normalised("+447911123456")


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("(020) 7946 0123", "+442079460123"),
        ("020 7946 0999", "+442079460999"),
        ("+44 (0)20 7946 0123", "+442079460123"),
        ("0161 496 0000", "+441614960000"),
        ("0113.496.0500", "+441134960500"),
        ("441174960321", "+441174960321"),
        ("+1 650 253 0000", "+16502530000"),
        ("0012025550123", "+12025550123"),
    ],
)
def test_landlines_and_foreign_numbers(raw: str, e164: str) -> None:
    assert normalise(raw, "GB").e164 == e164


def test_region_is_the_default_for_national_numbers() -> None:
    assert normalise("(650) 253-0000", "US").e164 == "+16502530000"
    assert normalise("(650) 253-0000", "us").e164 == "+16502530000"
    assert normalise("+44 20 7946 0123", "US").e164 == "+442079460123"


def test_ofcom_drama_mobiles_are_accepted() -> None:
    # libphonenumber calls 07700 900xxx invalid; they are reserved fiction, safe for demos.
    assert normalise("07700 900123", "GB").e164 == "+447700900123"
    assert normalise("+44 7700 900999", "GB").e164 == "+447700900999"
    assert normalise("07700 901000", "GB").reason == "invalid_number"


@pytest.mark.parametrize("raw", ["", "   ", "'", "n/a", "N/A", "none", "-", "TBC"])
def test_missing_number(raw: str) -> None:
    result = normalise(raw, "GB")
    assert result.e164 is None
    assert result.reason == "missing_number"
    assert result.message


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ("call reception", "contains letters"),
        ("07911 123456 ext 12", "contains letters"),
        ("tel:+447911123456", "contains letters"),
        ("07911#123456", "contains #"),
        ("4.47911E+11", "scientific notation"),
        ("07911+123456", "'+'"),
        ("++447911123456", "'+'"),
        ("()--", "no digits"),
    ],
)
def test_unparseable(raw: str, hint: str) -> None:
    result = normalise(raw, "GB")
    assert result.reason == "unparseable"
    assert result.e164 is None
    assert hint in (result.message or "")


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ("0161 496", "not a valid number"),
        ("12", "too short"),
        ("079111234567", "too long"),
        ("07911 123456 020 7946 0123", "too long"),
        ("+999 1234 5678", "country code"),
        ("0044", "too short"),
        ("01632 960123", "not a valid number"),  # Ofcom drama, no area
    ],
)
def test_invalid_number(raw: str, hint: str) -> None:
    result = normalise(raw, "GB")
    assert result.reason == "invalid_number"
    assert hint in (result.message or "")


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("0909 879 0123", "premium-rate"),
        ("0871 234 5678", "premium-rate"),  # libphonenumber files UK 084/087 as premium
        ("+34 901 12 34 56", "shared-cost"),
        ("0300 123 4567", "universal access"),
        ("07640 123456", "pager"),
        ("070 1234 5678", "personal"),
        ("0800 123 4567", "toll-free"),
    ],
)
def test_not_dialable_types(raw: str, kind: str) -> None:
    result = normalise(raw, "GB")
    assert result.reason == "not_dialable_type"
    assert result.e164 is None
    assert kind in (result.message or "")


def test_voip_is_dialable() -> None:
    assert normalise("056 1234 5678", "GB").e164 == "+445612345678"


def test_results_are_cached_by_digits() -> None:
    from dialer.phones import _normalise_digits

    normalise("07911 123457", "GB")
    before = _normalise_digits.cache_info().hits
    assert normalise("07911-123-457", "GB").e164 == "+447911123457"
    assert _normalise_digits.cache_info().hits == before + 1


def test_ok_property() -> None:
    assert normalise("020 7946 0123", "GB").ok
    assert not normalise("", "GB").ok


def test_zones_for_numbers() -> None:
    assert zones_for("+447911123456", "Asia/Kolkata") == UK_MOBILE_ZONES
    assert zones_for("+442079460123", "Asia/Kolkata") == ["Europe/London"]
    assert zones_for("+16502530000", "Europe/London") == ["America/Los_Angeles"]
    assert zones_for("+447700900123", "Asia/Kolkata") == UK_MOBILE_ZONES


def test_zones_fall_back_to_the_default_for_unknown() -> None:
    # +881 is a satellite network: no zone, so the campaign's --timezone applies.
    assert zones_for("+881612345678", "Europe/London") == ["Europe/London"]
    assert zones_for("not a number", "Europe/Paris") == ["Europe/Paris"]


def test_zones_return_a_fresh_list() -> None:
    zones_for("+442079460123", "Europe/London").append("Mars/Olympus")
    assert zones_for("+442079460123", "Europe/London") == ["Europe/London"]
