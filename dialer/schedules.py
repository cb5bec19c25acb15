"""Campaigns that start and stop by themselves: start_at, end_at and recurring cron batches.

Everything is derived from the stored times and `now`, so a restart of every process in between
changes nothing: the next beat tick reaches the same decision.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dialer.campaigns import set_campaign_state
from dialer.models import Campaign
from dialer.policy import PolicyError
from dialer.states import CampaignState


@dataclass
class ScheduleChanges:
    started: list[int] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)


def check_cron(expression: str) -> str:
    """Return the cron expression if croniter can read it, else raise PolicyError."""
    if not croniter.is_valid(expression):
        raise PolicyError(f"cannot read schedule {expression!r}: use cron syntax, e.g. '0 8 * * mon-fri'")
    return expression


def batch_open(*, cron: str, hours: float, zone: str, now: dt.datetime) -> bool:
    """Tell whether `now` falls inside a batch that began at a cron time, lasting `hours`."""
    local_now = now.astimezone(ZoneInfo(zone))
    # The latest fire time at or before now; a fire exactly at `now` counts.
    last = croniter(cron, local_now + dt.timedelta(seconds=1)).get_prev(dt.datetime)
    return bool(local_now < last + dt.timedelta(hours=hours))


def next_batch(*, cron: str, zone: str, now: dt.datetime) -> dt.datetime:
    """Return the next cron fire time after `now`, in UTC."""
    nxt: dt.datetime = croniter(cron, now.astimezone(ZoneInfo(zone))).get_next(dt.datetime)
    return nxt.astimezone(dt.UTC)


def apply_schedules(*, session: Session, now: dt.datetime) -> ScheduleChanges:
    """Start, stop and end campaigns whose times say so."""
    changes = ScheduleChanges()
    candidates = session.scalars(
        select(Campaign)
        .where(
            Campaign.state.in_([CampaignState.SCHEDULED, CampaignState.RUNNING, CampaignState.PAUSED]),
            or_(Campaign.start_at.is_not(None), Campaign.end_at.is_not(None), Campaign.schedule_cron.is_not(None)),
        )
        .with_for_update(skip_locked=True)
    ).all()
    for campaign in candidates:
        state = CampaignState(campaign.state)
        if campaign.end_at is not None and campaign.end_at <= now:
            set_campaign_state(
                session=session, campaign=campaign, state=CampaignState.COMPLETED, reason="end time reached", now=now
            )
            changes.ended.append(campaign.id)
            continue
        if state == CampaignState.PAUSED:
            continue  # an operator's pause outranks every schedule
        started = campaign.start_at is None or campaign.start_at <= now
        if campaign.schedule_cron:
            should_run = started and batch_open(
                cron=campaign.schedule_cron, hours=campaign.schedule_hours or 1.0, zone=campaign.timezone, now=now
            )
        else:
            should_run = started
        if should_run and state == CampaignState.SCHEDULED:
            set_campaign_state(session=session, campaign=campaign, state=CampaignState.RUNNING)
            changes.started.append(campaign.id)
        elif not should_run and state == CampaignState.RUNNING and campaign.schedule_cron:
            upcoming = next_batch(cron=campaign.schedule_cron, zone=campaign.timezone, now=now)
            set_campaign_state(
                session=session,
                campaign=campaign,
                state=CampaignState.SCHEDULED,
                reason=f"between batches; next at {upcoming:%Y-%m-%d %H:%M} UTC",
            )
            changes.stopped.append(campaign.id)
    return changes
