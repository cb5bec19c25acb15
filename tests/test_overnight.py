"""A campaign left running overnight, with schedules, callbacks and retries, behaves as the policy says.

Time travel, no sleeps: a fake clock walks from Tuesday 17:00 in London to Wednesday 10:00 in New
York in five-minute ticks. Each tick runs the real product in-process against the test database:
the pacer (`pace_campaigns`, schedules included), the dial task (`place_call`, with a fake
Acefone that answers "originated" and a limiter that always grants) and the hangup webhooks
(`receive_event`, as the web endpoint calls it), whose outcomes follow a fixed script per lead.
In the morning the test checks what a campaign manager would check, against its own reading of
the policy (not the product's helpers), so a broken rule in the product fails it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from factories import ALL_DAYS, MON_FRI, add_leads, make_campaign
from sqlalchemy import select
from sqlalchemy.orm import Session

from dialer.acefone import DialRequest, DialResult, ResultKind
from dialer.campaigns import start_campaign
from dialer.db import new_session
from dialer.dialing import place_call
from dialer.leads import schedule_callback
from dialer.models import Agent, Base, CallAttempt, Campaign, Lead, WebhookEvent
from dialer.pacing import pace_campaigns
from dialer.phones import zones_for
from dialer.states import ATTEMPT_FINAL, AttemptStatus, CampaignState, LeadStatus
from dialer.webhooks import RawEvent, parse_body, receive_event

UTC = dt.UTC
LONDON, NEW_YORK, LOS_ANGELES = "Europe/London", "America/New_York", "America/Los_Angeles"
# Tuesday 1 December 2026, 17:00 in London (GMT), 12:00 in New York, 09:00 in Los Angeles.
START = dt.datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
# Wednesday 2 December 2026, 15:00 in London, 10:00 in New York: both mornings are covered.
END = dt.datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
STEP = dt.timedelta(minutes=5)
MAX_CPS = 10.0
WRAPUP = 30
ACCOUNT_TZ = "Asia/Kolkata"  # Acefone stamps its events in the account's zone
JSON_CT = "application/json"

NO_ANSWER, BUSY, ANSWERED = AttemptStatus.NO_ANSWER, AttemptStatus.BUSY, AttemptStatus.COMPLETED
# How long each kind of call lasts before its hangup webhook (all well inside one tick).
CALL_SECONDS = {NO_ANSWER: 40, BUSY: 8, ANSWERED: 150}


def wed(hour: int, minute: int = 0, zone: str = LONDON) -> dt.datetime:
    """Wednesday 2 December 2026 at a local time, in UTC."""
    return dt.datetime(2026, 12, 2, hour, minute, tzinfo=ZoneInfo(zone)).astimezone(UTC)


# ---- the campaigns a manager left running ----------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """A campaign's rules as the manager wrote them: the test's own reading of the policy."""

    window: tuple[dt.time, dt.time]
    days: list[int]
    max_attempts: int
    delays: dict[AttemptStatus, dt.timedelta]
    busy_max: int | None = None

    def retry_policy(self) -> dict[str, Any]:
        policy: dict[str, Any] = {o.value: {"delay": int(d.total_seconds())} for o, d in self.delays.items()}
        if self.busy_max is not None:
            policy[BUSY.value]["max"] = self.busy_max
        return policy

    def may_dial_again(self, outcomes: list[AttemptStatus]) -> bool:
        """Whether a lead whose calls so far ended so has an attempt left (every outcome here counts)."""
        busy_capped = self.busy_max is not None and outcomes.count(BUSY) >= self.busy_max
        return len(outcomes) < self.max_attempts and not busy_capped

    def open_at(self, when: dt.datetime, zone: str) -> bool:
        local = when.astimezone(ZoneInfo(zone))
        return local.isoweekday() in self.days and self.window[0] <= local.time() < self.window[1]


# "Evening": office hours in each lead's own zone, a few retries, busy numbers tried twice at most.
EVENING = Rules(
    window=(dt.time(9), dt.time(20)),
    days=MON_FRI,
    max_attempts=3,
    delays={NO_ANSWER: dt.timedelta(hours=4), BUSY: dt.timedelta(minutes=20)},
    busy_max=2,
)
# "Batch": the overnight callback list, a recurring batch from 08:00 London for four hours.
BATCH = Rules(
    window=(dt.time(8), dt.time(20)),
    days=ALL_DAYS,
    max_attempts=2,
    delays={NO_ANSWER: dt.timedelta(minutes=30), BUSY: dt.timedelta(minutes=10)},
)
BATCH_CRON, BATCH_HOURS = "0 8 * * *", 4
# "Blitz": a one-off hour on Wednesday morning, by start_at / end_at.
BLITZ = Rules(
    window=(dt.time(9), dt.time(20)),
    days=MON_FRI,
    max_attempts=5,
    delays={NO_ANSWER: dt.timedelta(minutes=15), BUSY: dt.timedelta(minutes=15)},
)
BLITZ_START, BLITZ_END = wed(9, 30), wed(10, 30)

NIGHT_CALLBACK = wed(23, 30) - dt.timedelta(days=1)  # Tuesday 23:30 London: the window is shut
NY_NIGHT_CALLBACK = wed(3, 0)  # Wednesday 03:00 London = Tuesday 22:00 New York: shut there too
MORNING_CALLBACK = wed(9, 5)  # Wednesday 09:05 London, while older retries are still waiting
BATCH_CALLBACK = wed(6, 0)  # before the batch opens


@dataclass(frozen=True)
class LeadPlan:
    """One lead: its number, its own zone, what each of its calls will end as, and its expected fate."""

    name: str
    phone: str
    zone: str
    script: tuple[AttemptStatus, ...]
    expect: LeadStatus
    callback_at: dt.datetime | None = None

    def outcome(self, attempt_no: int) -> AttemptStatus:
        # A dial the script did not foresee (a broken cap) still ends, so the checks can say so.
        return self.script[attempt_no - 1] if attempt_no <= len(self.script) else NO_ANSWER


EXHAUSTED, CONTACTED, PENDING = LeadStatus.EXHAUSTED, LeadStatus.CONTACTED, LeadStatus.PENDING
# Callbacks come last, so only their priority (not their id or age) can put them first.
EVENING_LEADS = [
    LeadPlan("uk-1", "+447700900101", LONDON, (NO_ANSWER, NO_ANSWER, NO_ANSWER), EXHAUSTED),
    LeadPlan("uk-2", "+447700900102", LONDON, (BUSY, BUSY), EXHAUSTED),  # busy cap, one attempt unused
    LeadPlan("uk-3", "+447700900103", LONDON, (NO_ANSWER, ANSWERED), CONTACTED),
    LeadPlan("uk-4", "+447700900104", LONDON, (BUSY, NO_ANSWER, ANSWERED), CONTACTED),
    LeadPlan("uk-5", "+447700900105", LONDON, (NO_ANSWER, NO_ANSWER, NO_ANSWER), EXHAUSTED),
    LeadPlan("uk-6", "+447700900106", LONDON, (NO_ANSWER, BUSY, ANSWERED), CONTACTED),
    LeadPlan("ny-1", "+12125550101", NEW_YORK, (NO_ANSWER, NO_ANSWER, NO_ANSWER), EXHAUSTED),
    LeadPlan("ny-2", "+12125550102", NEW_YORK, (NO_ANSWER, NO_ANSWER, ANSWERED), CONTACTED),
    LeadPlan("la-1", "+13105550101", LOS_ANGELES, (NO_ANSWER, NO_ANSWER, NO_ANSWER), EXHAUSTED),
    LeadPlan("la-2", "+13105550102", LOS_ANGELES, (BUSY, NO_ANSWER, ANSWERED), CONTACTED),
    LeadPlan("uk-night-cb", "+447700900107", LONDON, (ANSWERED,), CONTACTED, NIGHT_CALLBACK),
    LeadPlan("ny-night-cb", "+12125550103", NEW_YORK, (BUSY, ANSWERED), CONTACTED, NY_NIGHT_CALLBACK),
    LeadPlan("uk-morning-cb", "+447700900108", LONDON, (NO_ANSWER, ANSWERED), CONTACTED, MORNING_CALLBACK),
]
BATCH_LEADS = [
    LeadPlan("b-uk-1", "+447700900201", LONDON, (ANSWERED,), CONTACTED),
    LeadPlan("b-uk-2", "+447700900202", LONDON, (NO_ANSWER, ANSWERED), CONTACTED),
    LeadPlan("b-uk-3", "+447700900203", LONDON, (NO_ANSWER, NO_ANSWER), EXHAUSTED),
    LeadPlan("b-uk-cb", "+447700900204", LONDON, (ANSWERED,), CONTACTED, BATCH_CALLBACK),
]
# Added to the batch at 13:00 on Wednesday, inside its window but after its batch: tomorrow's.
LATE_BATCH_LEAD = LeadPlan("b-uk-late", "+447700900205", LONDON, (ANSWERED,), PENDING)
LATE_BATCH_LEAD_AT = wed(13, 0)
BLITZ_LEADS = [
    # Never answered: the end time, not the cap, stops them (attempts are left).
    LeadPlan("c-uk-1", "+447700900301", LONDON, (NO_ANSWER,) * 5, PENDING),
    LeadPlan("c-uk-2", "+447700900302", LONDON, (NO_ANSWER,) * 5, PENDING),
]


@dataclass
class Setup:
    campaigns: dict[str, int] = field(default_factory=dict)  # "evening", "batch", "blitz" -> id
    rules: dict[int, Rules] = field(default_factory=dict)  # by campaign id
    agents: dict[int, int] = field(default_factory=dict)  # agents per campaign id
    plans: dict[int, LeadPlan] = field(default_factory=dict)  # by lead id
    lead_ids: dict[str, int] = field(default_factory=dict)  # by plan name


def campaign_with(session: Session, rules: Rules, *, agents: int, **extra: Any) -> Campaign:
    """A draft campaign in London time with these rules (the manager starts it at 17:00)."""
    return make_campaign(
        session,
        agents=agents,
        state=CampaignState.DRAFT,
        window=rules.window,
        days=rules.days,
        timezone=LONDON,
        max_attempts=rules.max_attempts,
        retry_policy=rules.retry_policy(),
        **extra,
    )


def set_up_the_evening() -> Setup:
    """At 17:00 on Tuesday the manager starts three campaigns and books four callbacks."""
    setup = Setup()
    with new_session() as s, s.begin():
        evening = campaign_with(s, EVENING, agents=2)
        batch = campaign_with(s, BATCH, agents=1)
        batch.schedule_cron, batch.schedule_hours = BATCH_CRON, BATCH_HOURS
        blitz = campaign_with(s, BLITZ, agents=1, start_at=BLITZ_START)
        blitz.end_at = BLITZ_END
        for name, campaign, rules, plans in (
            ("evening", evening, EVENING, EVENING_LEADS),
            ("batch", batch, BATCH, BATCH_LEADS),
            ("blitz", blitz, BLITZ, BLITZ_LEADS),
        ):
            setup.campaigns[name] = campaign.id
            setup.rules[campaign.id] = rules
            setup.agents[campaign.id] = len(campaign.agents)
            for plan in plans:
                add_lead(s, setup, campaign, plan, now=START)
            start_campaign(session=s, campaign_id=campaign.id, now=START)
    return setup


def add_lead(session: Session, setup: Setup, campaign: Campaign, plan: LeadPlan, *, now: dt.datetime) -> None:
    """Add a lead with the zones the importer derives from its number, and its callback if any."""
    zones = zones_for(plan.phone, campaign.timezone)
    assert plan.zone in zones, (plan.name, zones)
    (lead,) = add_leads(session, campaign, phones=[plan.phone], timezones=zones)
    if plan.callback_at is not None:
        schedule_callback(session=session, lead_id=lead.id, at=plan.callback_at, now=now)
    setup.plans[lead.id] = plan
    setup.lead_ids[plan.name] = lead.id


# ---- one tick of the night -----------------------------------------------------------------------


@dataclass
class FakeAcefone:
    """Accepts every click-to-call (as Acefone does with 200) and records it."""

    requests: list[DialRequest] = field(default_factory=list)

    def click_to_call(self, request: DialRequest) -> DialResult:
        self.requests.append(request)
        return DialResult(
            ResultKind.ORIGINATED, 200, "Originate successfully queued", ref_id=f"ref-{len(self.requests)}"
        )


class GrantingLimiter:
    """The global rate is not under test here: every token is granted at once."""

    def acquire(self, *, campaign_id: int, campaign_cps: float | None, timeout: float) -> bool:
        return True

    def pause_fleet(self, seconds: float) -> None:
        raise AssertionError("nothing in this night asks for a fleet pause")


@dataclass
class Tick:
    at: dt.datetime
    claimed: list[int]  # lead ids, in the order the pacer claimed them
    waiting: set[int]  # leads (of any campaign) due and inside their window just before the pace
    states: dict[int, CampaignState]  # each campaign's state after the pace


@dataclass
class Night:
    setup: Setup
    acefone: FakeAcefone = field(default_factory=FakeAcefone)
    ticks: list[Tick] = field(default_factory=list)


def due_and_open(session: Session, setup: Setup, now: dt.datetime) -> set[int]:
    """Pending leads whose time has come and whose window (by the test's reading) is open."""
    rows = session.execute(
        select(Lead.id, Lead.campaign_id).where(Lead.status == LeadStatus.PENDING, Lead.next_attempt_at <= now)
    ).all()
    return {
        lead_id for lead_id, campaign_id in rows if setup.rules[campaign_id].open_at(now, setup.plans[lead_id].zone)
    }


def events_for(
    attempt: CallAttempt, outcome: AttemptStatus, dialed: dt.datetime
) -> list[tuple[dt.datetime, dict[str, str]]]:
    """The webhooks Acefone sends for a call that ends in `outcome`, each with when it arrives."""
    ended = dialed + dt.timedelta(seconds=CALL_SECONDS[outcome])
    common = {
        "custom_identifier": attempt.custom_identifier,
        "uuid": f"uuid-{attempt.id}",
        "direction": "clicktocall",
        "end_stamp": ended.astimezone(ZoneInfo(ACCOUNT_TZ)).strftime("%Y-%m-%d %H:%M:%S"),
    }
    if outcome == ANSWERED:
        progress = {"custom_identifier": attempt.custom_identifier, "uuid": f"uuid-{attempt.id}"}
        return [
            (dialed + dt.timedelta(seconds=5), {**progress, "call_status": "Answered by agent"}),
            (dialed + dt.timedelta(seconds=12), {**progress, "call_status": "Answered by customer"}),
            (ended, {**common, "call_status": "answered", "billsec": "138", "hangup_cause_key": "NORMAL_CLEARING"}),
        ]
    if outcome == BUSY:
        busy = {"call_status": "missed", "call_connected": "1", "billsec": "0", "hangup_cause_key": "USER_BUSY"}
        return [(ended, {**common, **busy, "reason_key": "busy"})]
    no_answer = {"call_status": "missed", "call_connected": "1", "billsec": "0", "hangup_cause_key": "NO_ANSWER"}
    return [(ended, {**common, **no_answer, "customer_ring_time": "30", "reason_key": "noanswer"})]


def deliver(fields: dict[str, str], now: dt.datetime) -> str:
    """Receive one JSON webhook the way the web endpoint does: parse, store raw, process, commit."""
    body = json.dumps(fields).encode()
    parsed = parse_body(method="POST", content_type=JSON_CT, body=body, query={})
    with new_session() as s, s.begin():
        _, status = receive_event(
            session=s,
            event=RawEvent("POST", JSON_CT, {"User-Agent": "Acefone"}, body, parsed),
            process=True,
            fast=True,
            now=now,
            wrapup_seconds=WRAPUP,
            account_tz=ACCOUNT_TZ,
        )
    return status


def tick(night: Night, now: dt.datetime) -> None:
    """Advance the clock to `now`: pace, dial what was claimed, and let every call end by its script."""
    with new_session() as s, s.begin():
        waiting = due_and_open(s, night.setup, now)
        attempt_ids = pace_campaigns(session=s, now=now, max_cps=MAX_CPS).attempt_ids
        attempts = [s.get_one(CallAttempt, i) for i in attempt_ids]  # as claimed, for their webhooks
        states = {c.id: CampaignState(c.state) for c in s.scalars(select(Campaign))}
    for attempt_id in attempt_ids:
        outcome = place_call(
            attempt_id=attempt_id,
            sessions=new_session,
            client=night.acefone,
            limiter=GrantingLimiter(),
            wrapup_seconds=WRAPUP,
            clock=lambda: now,
        )
        assert outcome.status == "originated", (now, attempt_id, outcome)
    for attempt in attempts:
        plan = night.setup.plans[attempt.lead_id]
        for arrives, fields in events_for(attempt, plan.outcome(attempt.attempt_no), now):
            assert deliver(fields, arrives) == "processed", (plan.name, fields)
    night.ticks.append(Tick(now, [a.lead_id for a in attempts], waiting, states))


def run_the_night(setup: Setup) -> Night:
    night = Night(setup)
    now = START
    while now <= END:
        if now == LATE_BATCH_LEAD_AT:  # the afternoon's callback requests go into the batch
            with new_session() as s, s.begin():
                batch = s.get_one(Campaign, setup.campaigns["batch"])
                add_lead(s, setup, batch, LATE_BATCH_LEAD, now=now)
        tick(night, now)
        now += STEP
    return night


# ---- the morning report ----------------------------------------------------------------------------


@dataclass
class Morning:
    """What the database says after the night, read once."""

    campaigns: dict[int, Campaign]
    leads: dict[int, Lead]
    attempts: list[CallAttempt]
    events: list[WebhookEvent]
    reserved_agents: list[int]

    def attempts_of(self, lead_id: int) -> list[CallAttempt]:
        return sorted((a for a in self.attempts if a.lead_id == lead_id), key=lambda a: a.attempt_no)


def read_the_morning() -> Morning:
    with new_session() as s:
        return Morning(
            campaigns={c.id: c for c in s.scalars(select(Campaign))},
            leads={lead.id: lead for lead in s.scalars(select(Lead))},
            attempts=list(s.scalars(select(CallAttempt).order_by(CallAttempt.id))),
            events=list(s.scalars(select(WebhookEvent))),
            reserved_agents=list(s.scalars(select(Agent.id).where(Agent.reserved_attempt_id.is_not(None)))),
        )


def first_tick_at_or_after(night: Night, when: dt.datetime) -> Tick:
    return next(t for t in night.ticks if t.at >= when)


def local(when: dt.datetime, zone: str) -> str:
    return when.astimezone(ZoneInfo(zone)).strftime("%a %H:%M %Z")


@dataclass
class Overnight:
    setup: Setup
    night: Night
    morning: Morning

    def campaign(self, name: str) -> int:
        return self.setup.campaigns[name]

    def lead(self, name: str) -> int:
        return self.setup.lead_ids[name]

    def each_lead(self) -> Iterator[tuple[LeadPlan, Rules, list[CallAttempt]]]:
        """Every lead's plan, its campaign's rules and its attempts in order."""
        for lead_id, plan in self.setup.plans.items():
            rules = self.setup.rules[self.morning.leads[lead_id].campaign_id]
            yield plan, rules, self.morning.attempts_of(lead_id)


@pytest.fixture(scope="module")
def overnight(engine: sa.Engine) -> Iterator[Overnight]:
    """Run the night once for every check below; everything commits, so empty the tables afterwards."""
    try:
        setup = set_up_the_evening()
        night = run_the_night(setup)
        yield Overnight(setup, night, read_the_morning())
    finally:
        names = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with engine.begin() as c:
            c.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def test_no_dial_outside_the_window_in_the_leads_own_zone(overnight: Overnight) -> None:
    outside = [
        (plan.name, a.attempt_no, a.dialed_at and local(a.dialed_at, plan.zone))
        for plan, rules, mine in overnight.each_lead()
        for a in mine
        if a.dialed_at is None or not rules.open_at(a.dialed_at, plan.zone)
    ]
    assert outside == [], f"dialled outside the window (lead, attempt, local time): {outside}"


def test_no_lead_is_dialled_once_it_has_no_attempt_left(overnight: Overnight) -> None:
    over_cap = {}
    for plan, rules, mine in overnight.each_lead():
        outcomes = [AttemptStatus(a.status) for a in mine]
        if any(not rules.may_dial_again(outcomes[:n]) for n in range(len(outcomes))):
            over_cap[plan.name] = [o.value for o in outcomes]
    assert over_cap == {}, f"dialled past max attempts or the busy cap: {over_cap}"


def test_each_redial_waits_its_outcomes_delay_after_the_previous_call_ended(overnight: Overnight) -> None:
    too_soon = []
    for plan, rules, mine in overnight.each_lead():
        for before, after in pairwise(mine):
            assert before.ended_at is not None and after.dialed_at is not None
            gap = after.dialed_at - before.ended_at
            if gap < rules.delays[AttemptStatus(before.status)]:
                too_soon.append((plan.name, after.attempt_no, before.status.value, str(gap)))
    assert too_soon == [], f"redialled before the policy's delay (lead, attempt, after, gap): {too_soon}"


@pytest.mark.parametrize(
    ("name", "first_dial"),
    [
        pytest.param("uk-night-cb", wed(9, 0), id="night-callback-waits-for-the-london-window"),
        pytest.param("ny-night-cb", wed(9, 0, NEW_YORK), id="night-callback-waits-for-the-new-york-window"),
        pytest.param("uk-morning-cb", MORNING_CALLBACK, id="morning-callback-on-the-dot"),
        pytest.param("b-uk-cb", wed(8, 0), id="callback-waits-for-the-batch"),
    ],
)
def test_a_callback_is_dialled_first_when_due_and_not_before(
    overnight: Overnight, name: str, first_dial: dt.datetime
) -> None:
    lead_id = overnight.lead(name)
    plan = overnight.setup.plans[lead_id]
    assert plan.callback_at is not None and plan.callback_at <= first_dial
    mine = overnight.morning.attempts_of(lead_id)
    assert mine, f"{name} was never dialled"
    first = mine[0]
    assert first.dialed_at == first_dial, (
        f"{name}: first dialled {first.dialed_at and local(first.dialed_at, plan.zone)}"
    )
    assert first.audit["callback_at"] == plan.callback_at.isoformat()
    tick_ = first_tick_at_or_after(overnight.night, first_dial)
    assert tick_.claimed[0] == lead_id, f"{name} was not the first lead dialled at {first_dial:%H:%M} UTC"
    # At least as many older leads of the campaign were waiting as it has agents: without its
    # priority, the callback would have waited behind them.
    others = [
        overnight.setup.plans[i].name
        for i in tick_.waiting
        if i != lead_id and overnight.morning.leads[i].campaign_id == first.campaign_id
    ]
    assert len(others) >= overnight.setup.agents[first.campaign_id], others


def test_the_batch_dials_only_after_its_0800_opening_and_waits_for_the_next_one(overnight: Overnight) -> None:
    batch_id = overnight.campaign("batch")
    opens, closes = wed(8, 0), wed(8 + BATCH_HOURS, 0)
    dials = sorted(a.dialed_at for a in overnight.morning.attempts if a.campaign_id == batch_id and a.dialed_at)
    # Its window (08:00-20:00) was open all Tuesday evening: only the batch held it back.
    assert dials and dials[0] == opens and dials[-1] < closes, dials
    states = {t.at: t.states[batch_id] for t in overnight.night.ticks}
    assert states == {at: CampaignState.RUNNING if opens <= at < closes else CampaignState.SCHEDULED for at in states}
    # It never completes by itself: nothing was left to dial from 09:00, yet it ran to the end of
    # its batch and now waits for tomorrow's, where the lead added in the afternoon will be dialled.
    work_done = max(a.ended_at for a in overnight.morning.attempts if a.campaign_id == batch_id and a.ended_at)
    assert work_done < wed(9, 0)
    batch = overnight.morning.campaigns[batch_id]
    assert batch.state == CampaignState.SCHEDULED
    assert "next at 2026-12-03 08:00" in (batch.state_reason or "")
    late = overnight.morning.leads[overnight.lead(LATE_BATCH_LEAD.name)]
    assert (late.status, late.attempts) == (PENDING, 0)


def test_the_start_at_end_at_campaign_dials_only_between_its_times(overnight: Overnight) -> None:
    blitz_id = overnight.campaign("blitz")
    dials = sorted(a.dialed_at for a in overnight.morning.attempts if a.campaign_id == blitz_id and a.dialed_at)
    assert dials and dials[0] == BLITZ_START and dials[-1] < BLITZ_END, dials
    assert all(t.states[blitz_id] == CampaignState.SCHEDULED for t in overnight.night.ticks if t.at < BLITZ_START)
    blitz = overnight.morning.campaigns[blitz_id]
    assert (blitz.state, blitz.state_reason) == (CampaignState.COMPLETED, "end time reached")
    # Stamped by the tick that ended it, on the pacer's clock (not the machine's).
    assert blitz.finished_at == first_tick_at_or_after(overnight.night, BLITZ_END).at


def test_the_evening_campaign_completes_once_no_lead_can_be_dialled_and_not_before(overnight: Overnight) -> None:
    evening_id = overnight.campaign("evening")
    last_end = max(a.ended_at for a in overnight.morning.attempts if a.campaign_id == evening_id and a.ended_at)
    completed = [t.at for t in overnight.night.ticks if t.states[evening_id] == CampaignState.COMPLETED]
    assert completed, "the evening campaign never completed"
    assert last_end < completed[0] <= last_end + STEP
    assert all(t.states[evening_id] == CampaignState.RUNNING for t in overnight.night.ticks if t.at < completed[0])
    evening = overnight.morning.campaigns[evening_id]
    assert (evening.state, evening.finished_at) == (CampaignState.COMPLETED, completed[0])


def test_every_lead_is_accounted_for(overnight: Overnight) -> None:
    """Contacted, exhausted (and only when a cap is reached) or still waiting, as planned."""
    fates = {plan.name: overnight.morning.leads[lead_id].status for lead_id, plan in overnight.setup.plans.items()}
    assert fates == {plan.name: plan.expect for plan in overnight.setup.plans.values()}
    for plan, rules, mine in overnight.each_lead():
        status = fates[plan.name]
        outcomes = [AttemptStatus(a.status) for a in mine]
        if ANSWERED in outcomes:
            assert status == CONTACTED, (plan.name, status)
        elif rules.may_dial_again(outcomes):
            assert status == PENDING, (plan.name, status)
        else:
            assert status == EXHAUSTED, (plan.name, status)


def test_the_counts_add_up(overnight: Overnight) -> None:
    """One request per attempt, every attempt ended as scripted and charged once, every webhook matched."""
    morning, requests = overnight.morning, overnight.night.acefone.requests
    assert len(requests) == len({r.custom_identifier for r in requests}) == len(morning.attempts)
    assert sum(len(t.claimed) for t in overnight.night.ticks) == len(morning.attempts)
    for plan, _, mine in overnight.each_lead():
        assert [a.attempt_no for a in mine] == list(range(1, len(mine) + 1)), plan.name
        assert [a.status for a in mine] == list(plan.script[: len(mine)]), plan.name
        assert all(a.status in ATTEMPT_FINAL and a.ended_at and a.charged for a in mine), plan.name
        assert morning.leads[overnight.lead(plan.name)].attempts == len(mine), plan.name
    assert len(morning.events) == sum(3 if a.status == ANSWERED else 1 for a in morning.attempts)
    assert {e.status for e in morning.events} == {"processed"}
    assert morning.reserved_agents == []
    # The shape of the night itself, so a change to the scenario is noticed.
    per_campaign = {
        name: sum(a.campaign_id == overnight.campaign(name) for a in morning.attempts)
        for name in ("evening", "batch", "blitz")
    }
    assert per_campaign == {"evening": 33, "batch": 6, "blitz": 6}
