"""Bulk number screening: the prefix-grouped path gives exactly phones.normalise's verdicts."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer import phones
from dialer.importing import numbers
from dialer.importing.numbers import clean, clean_all, normalise_column
from dialer.importing.patterns import Unsupported, compile_digits

# National significant numbers people really have, by leading digits: UK mobiles and the ranges
# next to them (pagers, personal numbers), London, Manchester, Leeds, Guernsey, Jersey and Isle
# of Man mobiles, premium, freephone, shared and VoIP; plus a few foreign ones.
HEADS = [
    "7911", "7700900", "7700901", "7400", "7457", "7624", "7781", "7839", "7937", "7509", "7640", "7624",
    "70", "76", "56", "20", "207946", "161", "1614960", "113", "1481", "1534", "1624", "800", "808",
    "909", "871", "300", "845", "3", "1", "2", "9", "8", "0",
]  # fmt: skip
SHAPES = [
    "+44 {n}", "0{n}", "0044{n}", "44{n}", "{n}", "+44 (0){n}", "(0{n})", "'0{n}", "+44-{n}", "0{n} ",
    "+1 {n}", "+353 {n}", "001{n}", "+{n}", "00{n}", "+44{n}5", "0{n}12",
]  # fmt: skip


def _same_as_one_by_one(values: list[str], region: str = "GB") -> None:
    column = normalise_column(values, region)
    for i, value in enumerate(values):
        expected = phones.normalise(value, region)
        zones = phones.number_zones(expected.e164) if expected.e164 else ()
        got = (column.e164[i], column.reason[i], column.message[i], column.zones[i])
        assert got == (expected.e164, expected.reason, expected.message, zones), value


@st.composite
def typed_numbers(draw: st.DrawFn) -> str:
    head = draw(st.sampled_from(HEADS))
    rest = draw(st.text("0123456789", min_size=0, max_size=11))
    shape = draw(st.sampled_from(SHAPES))
    text = shape.format(n=head + rest)
    if draw(st.booleans()):
        # Separators where people put them.
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from([" ", "-", ".", "/", "\u00a0", ""])) + text[cut:]
    return text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(typed_numbers(), min_size=1, max_size=60))
def test_grouped_verdicts_equal_one_by_one(values: list[str]) -> None:
    numbers._GROUPS.clear()
    _same_as_one_by_one(values)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="0123456789 +-().'/x\u00a0\x1fe", max_size=20), min_size=1, max_size=40))
def test_any_text_gets_the_one_by_one_verdict(values: list[str]) -> None:
    _same_as_one_by_one(values)


def test_many_numbers_of_one_range_share_a_verdict() -> None:
    values = [f"07911 {i:06d}" for i in range(0, 1_000_000, 997)] + [f"020 7946 {i:04d}" for i in range(500)]
    column = normalise_column(values, "GB")
    assert column.singles == 0
    assert column.e164[0] == "+447911000000"
    assert column.zones[0] == ("Europe/Guernsey", "Europe/Isle_of_Man", "Europe/Jersey", "Europe/London")
    assert column.e164[-1] == "+442079460499"
    _same_as_one_by_one(values[:50] + values[-50:])


def test_us_region_and_foreign_numbers() -> None:
    _same_as_one_by_one(["(650) 253-0000", "+44 20 7946 0123", "650 253 0001", "+1 212 555 0100"], "US")


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("07911 123456", "07911123456"),
        (" '07911-123.456 ", "07911123456"),
        ("+44 (0)7911 123456", "+4407911123456"),
        ("(+44) 7911", None),
        ("07911 ext 1", None),
        ("", None),
        ("٠٧٩", None),  # Arabic-Indic digits go the long way
    ],
)
def test_clean(raw: str, cleaned: str | None) -> None:
    assert clean(raw) == cleaned
    assert clean_all([raw, "07911 123456"])[0] == cleaned


def test_patterns_decide_prefixes_exactly() -> None:
    mobile = compile_digits(r"7(?:[1-3]\d\d|4(?:[0-46-9]\d|5[0-689]))\d{6}")
    assert mobile.decided("71", 8) is True
    assert mobile.decided("745", 7) is None  # 7457 and 7455 differ
    assert mobile.decided("7455", 6) is True
    assert mobile.decided("7457", 6) is False
    assert mobile.decided("8", 9) is False
    assert mobile.decided("71", 7) is False  # wrong length
    assert compile_digits("0|180020").decides_match("7911")
    assert not compile_digits("0|180020").decides_match("18")
    with pytest.raises(Unsupported):
        compile_digits(r"([2-9]\d{6})$|1")
