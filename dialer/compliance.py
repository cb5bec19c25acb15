"""Compliance gates, in one place for the pacer and the dial task (DESIGN.md invariant 5).

Fails closed: a lead is allowed only when its number is not on the DNC list, the calling window
(and no public holiday) holds in every candidate zone, it has attempts left, and the number is
under its per-day cap and past its minimum gap across ALL campaigns.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dialer.dnc import listed
from dialer.models import CallAttempt, Campaign, Lead
from dialer.policy import window_of
from dialer.states import AttemptStatus, LeadStatus

# Attempts that rang (or may have rung, or are about to ring) the number.
_COUNTED = [s for s in AttemptStatus if s != AttemptStatus.CANCELLED]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str | None = None
    retry_at: dt.datetime | None = None
    final: LeadStatus | None = None
    audit: dict[str, Any] = field(default_factory=dict)


def _next_local_midnight(now: dt.datetime, zone: str) -> dt.datetime:
    local = now.astimezone(ZoneInfo(zone))
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=ZoneInfo(zone))
    return midnight.astimezone(dt.UTC)


def _recent_calls(
    session: Session, phones: list[str], since: dt.datetime, exclude: set[int]
) -> dict[str, list[dt.datetime]]:
    if not phones:
        return {}
    started = func.coalesce(CallAttempt.dialed_at, CallAttempt.created_at)
    rows = session.execute(
        select(Lead.phone_e164, started, CallAttempt.id)
        .join(Lead, Lead.id == CallAttempt.lead_id)
        .where(Lead.phone_e164.in_(phones), CallAttempt.status.in_(_COUNTED), started >= since)
    ).all()
    calls: dict[str, list[dt.datetime]] = defaultdict(list)
    for phone, when, attempt_id in rows:
        if attempt_id not in exclude:
            calls[phone].append(when)
    return calls


def evaluate(
    *,
    session: Session,
    campaign: Campaign,
    leads: list[Lead],
    now: dt.datetime,
    exclude_attempts: set[int] | None = None,
    dnc_listed: set[str] | None = None,
) -> dict[int, Verdict]:
    """Judge each lead against every compliance rule; return a verdict per lead id.

    `dnc_listed`: which of the leads' numbers are on the DNC list, when the caller read it in
    the same statement as the leads (the dial task); None asks the list here.
    """
    window = window_of(campaign)
    blocked = listed(session=session, numbers=[lead.phone_e164 for lead in leads]) if dnc_listed is None else dnc_listed
    need_history = bool(campaign.daily_cap_per_number or campaign.min_gap_seconds)
    history = (
        _recent_calls(
            session,
            [lead.phone_e164 for lead in leads],
            now - dt.timedelta(hours=50),
            exclude_attempts or set(),
        )
        if need_history
        else {}
    )
    verdicts: dict[int, Verdict] = {}
    for lead in leads:
        zones = lead.timezones or [campaign.timezone]
        if lead.phone_e164 in blocked:
            verdicts[lead.id] = Verdict(False, "dnc", final=LeadStatus.DNC)
            continue
        if lead.attempts >= campaign.max_attempts:
            verdicts[lead.id] = Verdict(False, "exhausted", final=LeadStatus.EXHAUSTED)
            continue
        if not window.is_open(now, zones):
            # No opening within three weeks (no allowed days): look again tomorrow, fail closed.
            opening = window.next_opening(now, zones) or now + dt.timedelta(days=1)
            verdicts[lead.id] = Verdict(False, "outside_window", retry_at=opening)
            continue
        calls = history.get(lead.phone_e164, [])
        if campaign.min_gap_seconds and calls:
            ready = max(calls) + dt.timedelta(seconds=campaign.min_gap_seconds)
            if ready > now:
                verdicts[lead.id] = Verdict(False, "min_gap", retry_at=ready)
                continue
        today = 0
        if campaign.daily_cap_per_number:
            # "A day" is the number's local day in each of its zones: the cap holds in all of them.
            for zone in zones:
                local_day = now.astimezone(ZoneInfo(zone)).date()
                today = max(today, sum(1 for c in calls if c.astimezone(ZoneInfo(zone)).date() == local_day))
            if today >= campaign.daily_cap_per_number:
                tomorrow = max(_next_local_midnight(now, z) for z in zones)
                opening = window.next_opening(tomorrow, zones) or tomorrow
                verdicts[lead.id] = Verdict(False, "daily_cap", retry_at=opening)
                continue
        verdicts[lead.id] = Verdict(
            True,
            audit={
                "window": f"{campaign.window_start:%H:%M}-{campaign.window_end:%H:%M}",
                "days": list(campaign.days),
                "holidays": campaign.holidays_country,
                "zones": zones,
                "local_times": [now.astimezone(ZoneInfo(z)).strftime("%a %Y-%m-%d %H:%M") for z in zones],
                "attempt": lead.attempts + 1,
                "max_attempts": campaign.max_attempts,
                "number_calls_today": today if campaign.daily_cap_per_number else None,
                "daily_cap": campaign.daily_cap_per_number,
                "checked_at": now.isoformat(),
            },
        )
    return verdicts
