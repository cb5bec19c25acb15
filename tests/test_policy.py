"""Campaign rules: calling windows in every candidate zone, next opening, parsing, retry policy."""

from __future__ import annotations

import datetime as dt

import pytest

from dialer.policy import (
    DEFAULT_RULES,
    END_OF_DAY,
    OUTCOMES,
    CallingWindow,
    PolicyError,
    check_zone,
    merge_rules,
    parse_days,
    parse_duration,
    parse_window,
    retry_delay_policy,
)

UTC = dt.UTC
LONDON_NY = ["Europe/London", "America/New_York"]
OFFICE = CallingWindow(dt.time(9), dt.time(20), (1, 2, 3, 4, 5))
EVERY_DAY = CallingWindow(dt.time(9), dt.time(20), (1, 2, 3, 4, 5, 6, 7))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# ---- is_open ------------------------------------------------------------------------------------


@pytest.mark.parametrize("zones", [LONDON_NY, list(reversed(LONDON_NY))])
def test_closed_when_only_one_candidate_zone_is_open(zones: list[str]) -> None:
    # Wed 8 Apr 2026 10:00 UTC: 11:00 in London (open), 06:00 in New York (closed).
    now = utc(2026, 4, 8, 10, 0)
    assert OFFICE.is_open(now, ["Europe/London"])
    assert not OFFICE.is_open(now, ["America/New_York"])
    assert not OFFICE.is_open(now, zones)


def test_open_when_every_candidate_zone_is_open() -> None:
    # 14:00 UTC: 15:00 in London, 10:00 in New York.
    assert OFFICE.is_open(utc(2026, 4, 8, 14, 0), LONDON_NY)


def test_closed_in_london_late_evening_even_if_new_york_is_open() -> None:
    # 19:30 UTC = 20:30 BST (closed) = 15:30 EDT (open).
    assert not OFFICE.is_open(utc(2026, 4, 8, 19, 30), LONDON_NY)


def test_no_zone_fails_closed() -> None:
    assert not OFFICE.is_open(utc(2026, 4, 8, 12, 0), [])


def test_end_is_exclusive_and_start_inclusive() -> None:
    # London is on BST (UTC+1) in April.
    assert OFFICE.is_open(utc(2026, 4, 8, 8, 0), ["Europe/London"])
    assert not OFFICE.is_open(utc(2026, 4, 8, 7, 59, 59), ["Europe/London"])
    assert not OFFICE.is_open(utc(2026, 4, 8, 19, 0), ["Europe/London"])


def test_days_are_judged_in_the_leads_local_time() -> None:
    # Friday 23:30 in New York is already Saturday in Tokyo.
    window = CallingWindow(dt.time(0), END_OF_DAY, (1, 2, 3, 4, 5))
    now = utc(2026, 4, 11, 3, 30)
    assert window.is_open(now, ["America/New_York"])
    assert not window.is_open(now, ["Asia/Tokyo"])


def test_uk_mobile_zones_share_a_clock() -> None:
    zones = ["Europe/London", "Europe/Jersey", "Europe/Guernsey", "Europe/Isle_of_Man"]
    assert OFFICE.is_open(utc(2026, 4, 8, 12, 0), zones)
    assert OFFICE.next_opening(utc(2026, 4, 8, 6, 0), zones) == utc(2026, 4, 8, 8, 0)


# ---- next_opening -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "now", "zones", "expected"),
    [
        pytest.param(OFFICE, utc(2026, 4, 8, 12, 0), ["Europe/London"], utc(2026, 4, 8, 12, 0), id="already-open"),
        pytest.param(OFFICE, utc(2026, 4, 8, 6, 0), ["Europe/London"], utc(2026, 4, 8, 8, 0), id="later-today"),
        pytest.param(OFFICE, utc(2026, 4, 8, 10, 0), LONDON_NY, utc(2026, 4, 8, 13, 0), id="waits-for-new-york"),
        pytest.param(OFFICE, utc(2026, 4, 8, 19, 30), LONDON_NY, utc(2026, 4, 9, 13, 0), id="london-closed-tomorrow"),
        pytest.param(OFFICE, utc(2026, 4, 10, 19, 30), ["Europe/London"], utc(2026, 4, 13, 8, 0), id="weekend"),
        pytest.param(OFFICE, utc(2026, 4, 11, 12, 0), ["Europe/London"], utc(2026, 4, 13, 8, 0), id="saturday"),
        # Clocks go forward on Sunday 29 March 2026: Friday's window opens 09:00 GMT, Monday's 09:00 BST.
        pytest.param(OFFICE, utc(2026, 3, 27, 21, 0), ["Europe/London"], utc(2026, 3, 30, 8, 0), id="dst-spring"),
        pytest.param(
            EVERY_DAY, utc(2026, 3, 28, 21, 0), ["Europe/London"], utc(2026, 3, 29, 8, 0), id="dst-spring-day"
        ),
        # Clocks go back on Sunday 25 October 2026.
        pytest.param(OFFICE, utc(2026, 10, 23, 19, 30), ["Europe/London"], utc(2026, 10, 26, 9, 0), id="dst-autumn"),
        pytest.param(
            EVERY_DAY, utc(2026, 10, 24, 20, 0), ["Europe/London"], utc(2026, 10, 25, 9, 0), id="dst-autumn-day"
        ),
        # New York changes clocks on other dates (8 March / 1 November 2026).
        pytest.param(OFFICE, utc(2026, 3, 27, 21, 0), LONDON_NY, utc(2026, 3, 30, 13, 0), id="dst-two-zones"),
    ],
)
def test_next_opening_is_the_first_instant_the_window_holds_everywhere(
    window: CallingWindow, now: dt.datetime, zones: list[str], expected: dt.datetime
) -> None:
    opening = window.next_opening(now, zones)
    assert opening == expected
    assert window.is_open(opening, zones)
    if opening != now:
        # Computed, not polled: one microsecond earlier the window was still shut.
        assert not window.is_open(opening - dt.timedelta(microseconds=1), zones)


def test_next_opening_with_no_allowed_day_is_none() -> None:
    never = CallingWindow(dt.time(9), dt.time(20), ())
    assert never.next_opening(utc(2026, 4, 8, 12, 0), ["Europe/London"]) is None


def test_next_opening_with_zones_that_never_overlap_is_none() -> None:
    short = CallingWindow(dt.time(9), dt.time(10), (1, 2, 3, 4, 5, 6, 7))
    assert short.next_opening(utc(2026, 4, 8, 12, 0), ["Europe/London", "Asia/Tokyo"]) is None


# ---- parsing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09:00-20:00", (dt.time(9), dt.time(20))),
        (" 9:30 - 17:45 ", (dt.time(9, 30), dt.time(17, 45))),
        ("08:00-24:00", (dt.time(8), END_OF_DAY)),
    ],
)
def test_parse_window(text: str, expected: tuple[dt.time, dt.time]) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize("text", ["9-17", "", "09:00", "25:00-26:00", "09:60-10:00", "20:00-09:00", "09:00-09:00"])
def test_parse_window_errors_name_the_input(text: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_window(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mon-fri", [1, 2, 3, 4, 5]),
        ("mon,wed,fri", [1, 3, 5]),
        ("Sat-Sun", [6, 7]),
        ("mon-sun", [1, 2, 3, 4, 5, 6, 7]),
        ("fri-mon", [1, 5, 6, 7]),
        ("mon, tue, mon", [1, 2]),
    ],
)
def test_parse_days(text: str, expected: list[int]) -> None:
    assert parse_days(text) == expected


@pytest.mark.parametrize("text", ["", "monday", "mon-funday", "mon,,fri", "1-5", "mon-fri-sat"])
def test_parse_days_errors_name_the_input(text: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_days(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), (" 2H ", 7200), ("0", 0)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "30 m", "-5", "1.5h", "m", "30m2h"])
def test_parse_duration_errors_name_the_input(text: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


def test_check_zone() -> None:
    assert check_zone("America/New_York") == "America/New_York"
    with pytest.raises(PolicyError, match="Mars/Olympus"):
        check_zone("Mars/Olympus")


# ---- retry policy -------------------------------------------------------------------------------------


def test_merge_rules_defaults() -> None:
    rules = merge_rules(None)
    assert set(rules) == set(OUTCOMES)
    assert rules["agent_missed"]["counts"] is False
    assert all(rules[o]["counts"] is True for o in OUTCOMES if o != "agent_missed")
    assert all(isinstance(rules[o]["delay"], int) and rules[o]["delay"] > 0 for o in OUTCOMES)
    assert rules == DEFAULT_RULES


def test_merge_rules_overrides_only_what_is_given() -> None:
    rules = merge_rules({"no_answer": {"delay": "30m"}, "busy": {"counts": False}, "lost": {"delay": 45}})
    assert rules["no_answer"] == {"delay": 1800, "counts": True}
    assert rules["busy"] == {"delay": DEFAULT_RULES["busy"]["delay"], "counts": False}
    assert rules["lost"] == {"delay": 45, "counts": True}
    assert rules["agent_missed"] == DEFAULT_RULES["agent_missed"]


def test_merge_rules_does_not_touch_the_defaults() -> None:
    before = {k: dict(v) for k, v in DEFAULT_RULES.items()}
    rules = merge_rules({"no_answer": {"delay": 5, "counts": False}})
    rules["busy"]["delay"] = 1
    assert before == DEFAULT_RULES


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"voicemail": {"delay": 60}}, "voicemail"),
        ({"busy": 60}, "busy"),
        ({"busy": {"delay": "soon"}}, "soon"),
    ],
)
def test_merge_rules_errors_name_the_culprit(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(PolicyError, match=named):
        merge_rules(overrides)


def test_retry_delay_policy_sets_every_delay_and_keeps_counts() -> None:
    rules = merge_rules(retry_delay_policy(600))
    assert {rules[o]["delay"] for o in OUTCOMES} == {600}
    assert rules["agent_missed"]["counts"] is False
    assert rules["no_answer"]["counts"] is True


def test_counts_written_as_a_string_is_not_silently_true() -> None:
    try:
        rules = merge_rules({"busy": {"counts": "false"}})
    except PolicyError:
        return
    assert rules["busy"]["counts"] is False
