"""custom_identifier: formatting, round trip and strict parsing."""

from __future__ import annotations

import pytest

from dialer.identifiers import CallKey, format_identifier, parse_identifier


def test_format_matches_the_design_example() -> None:
    assert format_identifier(campaign_id=12, lead_id=30567, attempt_no=2) == "c12-l30567-a2"


@pytest.mark.parametrize(
    ("campaign_id", "lead_id", "attempt_no"),
    [(1, 1, 1), (12, 30567, 2), (999_999, 123_456_789_012, 42), (10**17, 10**17, 999_999)],
)
def test_round_trip(campaign_id: int, lead_id: int, attempt_no: int) -> None:
    text = format_identifier(campaign_id=campaign_id, lead_id=lead_id, attempt_no=attempt_no)
    assert len(text) <= 64  # fits the column
    assert parse_identifier(text) == CallKey(campaign_id, lead_id, attempt_no)
    assert str(parse_identifier(text)) == text


def test_surrounding_whitespace_is_tolerated() -> None:
    assert parse_identifier(" c1-l2-a3\n") == CallKey(1, 2, 3)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "$custom_identifier",
        "junk",
        "c1-l2",
        "c-l2-a3",
        "c012-l2-a3",
        "c1-l02-a3",
        "c1-l2-a03",
        "c0-l2-a3",
        "c1-l0-a3",
        "c1-l2-a0",
        "c1-l2-a3-x",
        "c1-l2-a3-a4",
        "xc1-l2-a3",
        "c1-l2-a3 extra",
        "C1-L2-A3",
        "c1_l2_a3",
        "c-1-l2-a3",
        "c1-l2-a1234567",
        "c\uff11-l2-a3",  # a full-width digit is not an ASCII digit
        "c1-l2-a3\x00",
    ],
)
def test_anything_else_is_none(value: str | None) -> None:
    assert parse_identifier(value) is None
