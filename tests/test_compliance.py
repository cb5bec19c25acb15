"""Compliance fails closed: holidays, per-number daily caps and gaps across campaigns, audit trail."""

from __future__ import annotations

import datetime as dt

from factories import ALL_DAYS, ALWAYS, WED_NOON_LONDON, add_leads, agents_of, make_attempt, make_campaign
from sqlalchemy.orm import Session

from dialer.compliance import evaluate
from dialer.models import Lead
from dialer.pacing import pace_campaign
from dialer.policy import CallingWindow, is_holiday
from dialer.states import AttemptStatus, LeadStatus

CHRISTMAS_NOON = dt.datetime(2026, 12, 25, 12, 0, tzinfo=dt.UTC)


def test_no_calls_on_a_public_holiday_and_the_next_opening_skips_it() -> None:
    window = CallingWindow(dt.time(9), dt.time(20), (1, 2, 3, 4, 5), holidays_country="GB")
    assert is_holiday("GB", dt.date(2026, 12, 25)) and not is_holiday(None, dt.date(2026, 12, 25))
    assert not window.is_open(CHRISTMAS_NOON, ["Europe/London"])
    # Fri 25 Dec and Mon 28 Dec (Boxing Day substitute) are holidays: Tuesday 29th 09:00.
    assert window.next_opening(CHRISTMAS_NOON, ["Europe/London"]) == dt.datetime(2026, 12, 29, 9, 0, tzinfo=dt.UTC)
    plain = CallingWindow(dt.time(9), dt.time(20), (1, 2, 3, 4, 5))
    assert plain.is_open(CHRISTMAS_NOON, ["Europe/London"])


def test_the_pacer_respects_holidays(session: Session) -> None:
    campaign = make_campaign(session, agents=1, window=ALWAYS, days=ALL_DAYS)
    campaign.holidays_country = "GB"
    [lead] = add_leads(session, campaign, 1)
    assert pace_campaign(session=session, campaign=campaign, now=CHRISTMAS_NOON, max_cps=5) == []
    assert lead.blocked_reason == "outside_window"
    assert lead.next_attempt_at == dt.datetime(2026, 12, 27, 0, 0, tzinfo=dt.UTC)  # Sunday is not a holiday


def test_daily_cap_counts_calls_to_the_number_in_every_campaign(session: Session) -> None:
    phone = "+447700900555"
    first = make_campaign(session, agents=1, window=ALWAYS, days=ALL_DAYS)
    second = make_campaign(session, agents=1, window=ALWAYS, days=ALL_DAYS)
    second.daily_cap_per_number = 2
    [lead_a] = add_leads(session, first, phones=[phone])
    [lead_b] = add_leads(session, second, phones=[phone])
    for hours in (3, 2):  # two calls earlier today (London), from the first campaign
        make_attempt(
            session,
            campaign=first,
            lead=lead_a,
            agent=None,
            status=AttemptStatus.NO_ANSWER,
            now=WED_NOON_LONDON - dt.timedelta(hours=hours),
        )
    verdict = evaluate(session=session, campaign=second, leads=[lead_b], now=WED_NOON_LONDON)[lead_b.id]
    assert not verdict.allowed and verdict.reason == "daily_cap"
    assert verdict.retry_at == dt.datetime(2026, 4, 8, 23, 0, tzinfo=dt.UTC)  # next London midnight (BST)
    second.daily_cap_per_number = 3
    assert evaluate(session=session, campaign=second, leads=[lead_b], now=WED_NOON_LONDON)[lead_b.id].allowed


def test_yesterdays_calls_do_not_count_against_today(session: Session) -> None:
    campaign = make_campaign(session, agents=1, window=ALWAYS, days=ALL_DAYS)
    campaign.daily_cap_per_number = 1
    [lead] = add_leads(session, campaign, 1)
    make_attempt(
        session,
        campaign=campaign,
        lead=lead,
        agent=None,
        status=AttemptStatus.BUSY,
        now=WED_NOON_LONDON - dt.timedelta(hours=14),  # 22:00 the day before, London
    )
    assert evaluate(session=session, campaign=campaign, leads=[lead], now=WED_NOON_LONDON)[lead.id].allowed


def test_minimum_gap_between_two_calls_to_a_number(session: Session) -> None:
    campaign = make_campaign(session, agents=1, window=ALWAYS, days=ALL_DAYS)
    campaign.min_gap_seconds = 4 * 3600
    [lead] = add_leads(session, campaign, 1)
    last = WED_NOON_LONDON - dt.timedelta(hours=1)
    make_attempt(session, campaign=campaign, lead=lead, agent=None, status=AttemptStatus.BUSY, now=last)
    verdict = evaluate(session=session, campaign=campaign, leads=[lead], now=WED_NOON_LONDON)[lead.id]
    assert (verdict.allowed, verdict.reason) == (False, "min_gap")
    assert verdict.retry_at == last + dt.timedelta(hours=4)
    later = evaluate(session=session, campaign=campaign, leads=[lead], now=last + dt.timedelta(hours=4))
    assert later[lead.id].allowed


def test_cancelled_attempts_never_rang_and_do_not_count(session: Session) -> None:
    campaign = make_campaign(session, agents=1, window=ALWAYS, days=ALL_DAYS)
    campaign.daily_cap_per_number = 1
    campaign.min_gap_seconds = 3600
    [lead] = add_leads(session, campaign, 1)
    make_attempt(session, campaign=campaign, lead=lead, agent=None, status=AttemptStatus.CANCELLED)
    assert evaluate(session=session, campaign=campaign, leads=[lead], now=WED_NOON_LONDON)[lead.id].allowed


def test_every_dial_records_why_it_was_allowed(session: Session) -> None:
    campaign = make_campaign(session, agents=1, window=ALWAYS, days=ALL_DAYS, max_attempts=4)
    campaign.daily_cap_per_number = 5
    [lead] = add_leads(session, campaign, 1, timezones=["Europe/London", "Europe/Jersey"], attempts=1)
    [attempt_id] = pace_campaign(session=session, campaign=campaign, now=WED_NOON_LONDON, max_cps=5)
    from dialer.models import CallAttempt

    audit = session.get(CallAttempt, attempt_id).audit  # type: ignore[union-attr]
    assert audit["zones"] == ["Europe/London", "Europe/Jersey"]
    assert audit["local_times"] == ["Wed 2026-04-08 12:00", "Wed 2026-04-08 12:00"]
    assert (audit["attempt"], audit["max_attempts"]) == (2, 4)
    assert (audit["number_calls_today"], audit["daily_cap"]) == (0, 5)
    assert agents_of(campaign)[0].reserved_attempt_id == attempt_id
    assert session.get(Lead, lead.id).status == LeadStatus.IN_CALL  # type: ignore[union-attr]
