"""Campaigns start and stop by themselves; a restart in between changes nothing (time travel, no sleeps)."""

from __future__ import annotations

import datetime as dt

import pytest
from factories import ALL_DAYS, ALWAYS, add_leads, make_campaign
from sqlalchemy.orm import Session

from dialer.campaigns import pause_campaign, start_campaign
from dialer.leads import CALLBACK_PRIORITY, LeadNotFound, schedule_callback
from dialer.pacing import pace_campaigns
from dialer.policy import PolicyError
from dialer.schedules import batch_open, check_cron, next_batch
from dialer.states import CampaignState, LeadStatus

MON_0700_LONDON = dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.UTC)  # GMT in winter


def tick(session: Session, now: dt.datetime) -> list[int]:
    return pace_campaigns(session=session, now=now, max_cps=10).attempt_ids


def test_start_at_and_end_at(session: Session) -> None:
    campaign = make_campaign(session, agents=1, state=CampaignState.DRAFT, window=ALWAYS, days=ALL_DAYS)
    campaign.start_at = MON_0700_LONDON + dt.timedelta(hours=1)
    campaign.end_at = MON_0700_LONDON + dt.timedelta(hours=3)
    add_leads(session, campaign, 3)
    start_campaign(session=session, campaign_id=campaign.id, now=MON_0700_LONDON)
    assert campaign.state == CampaignState.SCHEDULED
    assert tick(session, MON_0700_LONDON + dt.timedelta(minutes=59)) == []
    assert campaign.state == CampaignState.SCHEDULED
    assert len(tick(session, MON_0700_LONDON + dt.timedelta(hours=1))) == 1
    assert campaign.state == CampaignState.RUNNING
    tick(session, MON_0700_LONDON + dt.timedelta(hours=3))
    assert (campaign.state, campaign.state_reason) == (CampaignState.COMPLETED, "end time reached")


def test_recurring_batch_opens_each_morning_and_closes_after_its_hours(session: Session) -> None:
    campaign = make_campaign(session, agents=1, state=CampaignState.DRAFT, window=ALWAYS, days=ALL_DAYS)
    campaign.schedule_cron = "0 8 * * *"
    campaign.schedule_hours = 2
    add_leads(session, campaign, 5)
    start_campaign(session=session, campaign_id=campaign.id, now=MON_0700_LONDON)
    assert campaign.state == CampaignState.SCHEDULED
    tick(session, MON_0700_LONDON)
    assert campaign.state == CampaignState.SCHEDULED  # 07:00: before the batch
    assert len(tick(session, MON_0700_LONDON + dt.timedelta(hours=1))) == 1  # 08:00 London
    assert campaign.state == CampaignState.RUNNING
    tick(session, MON_0700_LONDON + dt.timedelta(hours=3))  # 10:00: the batch is over
    assert campaign.state == CampaignState.SCHEDULED
    assert "next at 2026-12-01 08:00" in (campaign.state_reason or "")
    tick(session, MON_0700_LONDON + dt.timedelta(days=1, hours=1, minutes=30))  # Tue 08:30
    assert campaign.state == CampaignState.RUNNING


def test_a_recurring_campaign_with_nothing_due_waits_instead_of_completing(session: Session) -> None:
    campaign = make_campaign(session, agents=1, state=CampaignState.DRAFT, window=ALWAYS, days=ALL_DAYS)
    campaign.schedule_cron = "0 8 * * *"
    campaign.schedule_hours = 12
    start_campaign(session=session, campaign_id=campaign.id, now=MON_0700_LONDON)
    tick(session, MON_0700_LONDON + dt.timedelta(hours=2))
    assert campaign.state == CampaignState.RUNNING


def test_an_operators_pause_outranks_the_schedule(session: Session) -> None:
    campaign = make_campaign(session, agents=1, state=CampaignState.DRAFT, window=ALWAYS, days=ALL_DAYS)
    campaign.schedule_cron = "0 8 * * *"
    campaign.schedule_hours = 2
    add_leads(session, campaign, 1)
    start_campaign(session=session, campaign_id=campaign.id, now=MON_0700_LONDON)
    pause_campaign(session=session, campaign_id=campaign.id)
    assert tick(session, MON_0700_LONDON + dt.timedelta(hours=1)) == []
    assert campaign.state == CampaignState.PAUSED


def test_cron_helpers() -> None:
    nine = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
    assert batch_open(cron="0 8 * * *", hours=2, zone="Europe/London", now=nine)
    assert not batch_open(cron="0 8 * * *", hours=0.5, zone="Europe/London", now=nine)
    assert batch_open(cron="0 8 * * *", hours=1, zone="Europe/London", now=nine - dt.timedelta(hours=1))
    assert next_batch(cron="0 8 * * *", zone="Europe/London", now=nine) == dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
    with pytest.raises(PolicyError, match="every day"):
        check_cron("every day")


def test_callbacks_are_dialled_first_when_due(session: Session) -> None:
    campaign = make_campaign(session, agents=1, window=ALWAYS, days=ALL_DAYS)
    early, later = add_leads(session, campaign, 2)
    schedule_callback(session=session, lead_id=later.id, at=MON_0700_LONDON, now=MON_0700_LONDON)
    assert later.priority == CALLBACK_PRIORITY and later.next_attempt_at == MON_0700_LONDON
    [attempt_id] = tick(session, MON_0700_LONDON)
    assert later.status == LeadStatus.IN_CALL and early.status == LeadStatus.PENDING
    assert later.callback_at is None  # honoured
    # Given back with the callback: the lead's later retries queue at its own priority.
    assert later.priority == 0


def test_a_callback_raises_the_leads_own_priority_once_however_often_it_moves(session: Session) -> None:
    campaign = make_campaign(session, agents=1, window=ALWAYS, days=ALL_DAYS)
    [lead] = add_leads(session, campaign, 1)
    lead.priority = 7
    schedule_callback(session=session, lead_id=lead.id, at=MON_0700_LONDON, now=MON_0700_LONDON)
    schedule_callback(session=session, lead_id=lead.id, at=MON_0700_LONDON, now=MON_0700_LONDON)
    assert lead.priority == 7 + CALLBACK_PRIORITY
    tick(session, MON_0700_LONDON)
    assert (lead.callback_at, lead.priority) == (None, 7)


def test_a_callback_waits_for_its_time(session: Session) -> None:
    campaign = make_campaign(session, agents=1, window=ALWAYS, days=ALL_DAYS)
    [lead] = add_leads(session, campaign, 1)
    schedule_callback(session=session, lead_id=lead.id, at=MON_0700_LONDON + dt.timedelta(hours=5), now=MON_0700_LONDON)
    assert tick(session, MON_0700_LONDON) == []
    assert len(tick(session, MON_0700_LONDON + dt.timedelta(hours=5))) == 1


def test_callback_errors(session: Session) -> None:
    campaign = make_campaign(session, agents=1)
    [lead] = add_leads(session, campaign, 1, status=LeadStatus.CONTACTED)
    with pytest.raises(ValueError, match="only a pending lead"):
        schedule_callback(session=session, lead_id=lead.id, at=MON_0700_LONDON, now=MON_0700_LONDON)
    with pytest.raises(LeadNotFound):
        schedule_callback(session=session, lead_id=10**9, at=MON_0700_LONDON, now=MON_0700_LONDON)
