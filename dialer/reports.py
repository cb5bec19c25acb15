"""Campaign numbers: one definition each, used by the CLI, the API, the HTML report and the dashboard.

Every number is a sum of *facts*: small (kind, key, n, total) rows that each lead and each call
attempt contributes (`_lead_facts`, `_attempt_facts` below). A report is the sum of its
campaign's facts, plus the few numbers that depend on the clock (due leads, free agents, pace).

Two ways to get the sums, same facts, same numbers:
- maintained: the `campaign_counters` table, fed by statement-level triggers on `leads` and
  `call_attempts` (`counters_ddl()`, installed by a migration) with the facts of the rows each
  statement changed (new rows minus old rows). Appending deltas never locks a shared row, so
  workers and webhooks never wait on each other for a counter; `compact_counters` folds them.
  A report then reads a few thousand rows whatever the campaign's size.
- computed: when the table is not installed, the same facts are summed from the campaign's rows
  (fine for thousands of leads, seconds for millions).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, and_, func, or_, select, text
from sqlalchemy.orm import Session

from dialer.campaigns import get_campaign
from dialer.models import Agent, Campaign, CampaignAgent, ImportJob, Lead
from dialer.states import ATTEMPT_LIVE, LEAD_FINAL, AttemptStatus, CampaignState, LeadStatus

# A call was placed (or may have been): everything but an attempt still queued or dropped before dialling.
CALL_PLACED = frozenset(set(AttemptStatus) - {AttemptStatus.QUEUED, AttemptStatus.CANCELLED})
# Attempts holding a lead right now: claimed by the pacer, or on the line.
IN_PROGRESS = frozenset({AttemptStatus.QUEUED, *ATTEMPT_LIVE})
# Pace (and so the ETA) is measured over this trailing window.
PACE_WINDOW = dt.timedelta(minutes=10)
# The per-minute timeline covers this many minutes up to now.
TIMELINE_MINUTES = 60
# Hours are zero-filled up to this span; a longer campaign lists only its active hours.
MAX_FILLED_HOURS = 24 * 31
# Report reads compact a campaign's counters once it has this many delta rows.
COMPACT_AFTER_ROWS = 5000
# Compaction turns per-minute keys older than this into per-hour keys (the timeline shows minutes
# for the last hour only), and pending leads already due into one key per reason.
FOLD_MINUTES_AFTER = dt.timedelta(days=2)
LONG_AGO_KEY = "0001-01-01T00:00:00"

COUNTERS_TABLE = "campaign_counters"
_TRIGGERS = (
    "campaign_counters_leads_ins",
    "campaign_counters_leads_upd",
    "campaign_counters_attempts_ins",
    "campaign_counters_attempts_upd",
)


def _sql_list(values: frozenset[Any] | set[Any]) -> str:
    # Enum values only (never user input): a literal list keeps the facts SQL one static text.
    return "(" + ", ".join(f"'{v.value}'" for v in sorted(values, key=lambda v: v.value)) + ")"


_PLACED = _sql_list(CALL_PLACED)
_FINAL_LEAD = _sql_list(set(LEAD_FINAL))
_COMPLETED = f"'{AttemptStatus.COMPLETED.value}'"
_PENDING = f"'{LeadStatus.PENDING.value}'"
_SECOND_FMT = "'YYYY-MM-DD\"T\"HH24:MI:SS'"
_MINUTE_FMT = "'YYYY-MM-DD\"T\"HH24:MI'"


def _second(column: str) -> str:
    return f"to_char({column} AT TIME ZONE 'UTC', {_SECOND_FMT})"


def _minute(column: str) -> str:
    return f"to_char({column} AT TIME ZONE 'UTC', {_MINUTE_FMT})"


def _lead_facts(src: str, *, raw_first: bool = False) -> str:
    """SQL: the facts of the lead rows in `src` (a table, a transition table or a subquery).

    - lead_status/<status>: one per lead.
    - pending_at/<blocked_reason>@<next_attempt_at, UTC second>: pending leads, by why they wait
      and when they are due (so "due now" is a sum over keys, no scan).
    - finished_minute/<UTC minute of updated_at>: leads in a final status, for the pace and the ETA.

    `raw_first` counts equal raw values first and computes the keys once per group: the rows of
    one import share them all (status, due time, update time), so a 50,000-row COPY costs one
    hash lookup per row instead of the key expressions per row.
    """
    rows = (
        f"(SELECT campaign_id, status, blocked_reason, next_attempt_at, updated_at, count(*) AS n FROM {src}"
        " GROUP BY 1, 2, 3, 4, 5)"
        if raw_first
        else src
    )
    return f"""
SELECT g.campaign_id, f.kind, f.key, g.n, 0::bigint AS total FROM (
  SELECT r.campaign_id, r.status::text AS status,
    CASE WHEN r.status = {_PENDING} THEN coalesce(r.blocked_reason, '') END AS reason,
    CASE WHEN r.status = {_PENDING} THEN date_trunc('second', r.next_attempt_at AT TIME ZONE 'UTC') END AS due,
    CASE WHEN r.status IN {_FINAL_LEAD} THEN date_trunc('minute', r.updated_at AT TIME ZONE 'UTC') END AS fin,
    {"sum(r.n)" if raw_first else "count(*)"}::bigint AS n
  FROM {rows} AS r GROUP BY 1, 2, 3, 4, 5
) AS g
CROSS JOIN LATERAL (VALUES
  ('lead_status', g.status),
  ('pending_at', g.reason || '@' || to_char(g.due, {_SECOND_FMT})),
  ('finished_minute', to_char(g.fin, {_MINUTE_FMT}))
) AS f(kind, key)
WHERE f.key IS NOT NULL"""


def _attempt_facts(src: str) -> str:
    """SQL: the summable facts of the call attempts in `src`.

    - attempt_status/<status>: every attempt.
    - hangup_cause/<cause>: attempts with a hangup cause.
    - talk: completed attempts (n) and their billsec (total).
    - calls_minute, contacts_minute/<UTC minute of dialed_at>: placed and completed calls.
    - agent_calls, agent_contacts (total: billsec), agent_busy (ended calls, total: duration)/<agent id>.
    - pass_calls, pass_contacts/<attempt_no>: the pass report.
    """
    placed = f"r.status IN {_PLACED}"
    done = f"r.status = {_COMPLETED}"
    minute = "date_trunc('minute', r.dialed_at AT TIME ZONE 'UTC')"
    return f"""
SELECT g.campaign_id, f.kind, f.key, f.n, f.total FROM (
  SELECT r.campaign_id,
    GROUPING(r.status) AS gs, GROUPING(r.hangup_cause) AS gh, GROUPING({minute}) AS gm,
    GROUPING(r.agent_id) AS ga, GROUPING(r.attempt_no) AS gp,
    r.status::text AS status, r.hangup_cause::text AS cause, {minute} AS minute,
    r.agent_id::text AS agent, r.attempt_no::text AS pass,
    count(*)::bigint AS n,
    count(*) FILTER (WHERE {placed})::bigint AS placed,
    count(*) FILTER (WHERE {done})::bigint AS done,
    coalesce(sum(r.billsec) FILTER (WHERE {done}), 0)::bigint AS talk,
    count(*) FILTER (WHERE {placed} AND r.ended_at IS NOT NULL)::bigint AS ended,
    coalesce(sum(coalesce(r.duration, r.billsec, 0)) FILTER (WHERE {placed} AND r.ended_at IS NOT NULL), 0)::bigint
      AS busy
  FROM {src} AS r
  GROUP BY r.campaign_id, GROUPING SETS ((r.status), (r.hangup_cause), ({minute}), (r.agent_id), (r.attempt_no))
) AS g
CROSS JOIN LATERAL (VALUES
  ('attempt_status', CASE WHEN g.gs = 0 THEN g.status END, g.n, 0::bigint),
  ('talk', CASE WHEN g.gs = 0 AND g.status = {_COMPLETED} THEN '' END, g.done, g.talk),
  ('hangup_cause', CASE WHEN g.gh = 0 THEN g.cause END, g.n, 0),
  ('calls_minute', CASE WHEN g.gm = 0 THEN to_char(g.minute, {_MINUTE_FMT}) END, g.placed, 0),
  ('contacts_minute', CASE WHEN g.gm = 0 THEN to_char(g.minute, {_MINUTE_FMT}) END, g.done, 0),
  ('agent_calls', CASE WHEN g.ga = 0 THEN g.agent END, g.placed, 0),
  ('agent_contacts', CASE WHEN g.ga = 0 THEN g.agent END, g.done, g.talk),
  ('agent_busy', CASE WHEN g.ga = 0 THEN g.agent END, g.ended, g.busy),
  ('pass_calls', CASE WHEN g.gp = 0 THEN g.pass END, g.placed, 0),
  ('pass_contacts', CASE WHEN g.gp = 0 THEN g.pass END, g.done, 0)
) AS f(kind, key, n, total)
WHERE f.key IS NOT NULL AND (f.n <> 0 OR f.total <> 0)"""


def _attempt_marks(src: str) -> str:
    """SQL: observations kept as min/max, not sums: each agent's first dial and last hang-up (epoch)."""
    return f"""
SELECT g.campaign_id, f.kind, g.agent AS key, 1::bigint AS n, f.total FROM (
  SELECT r.campaign_id, r.agent_id::text AS agent,
    min(r.dialed_at) FILTER (WHERE r.status IN {_PLACED}) AS first_dial,
    max(r.ended_at) FILTER (WHERE r.status IN {_PLACED}) AS last_end
  FROM {src} AS r WHERE r.agent_id IS NOT NULL GROUP BY 1, 2
) AS g
CROSS JOIN LATERAL (VALUES
  ('agent_first', extract(epoch FROM g.first_dial)::bigint),
  ('agent_last', extract(epoch FROM g.last_end)::bigint)
) AS f(kind, total)
WHERE f.total IS NOT NULL"""


# How each kind's `total` adds up: marks keep the extreme, everything else sums.
_TOTAL = "CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END"
_N = "CASE WHEN kind IN ('agent_first', 'agent_last') THEN 1 ELSE sum(n) END"


def _negated(facts: str) -> str:
    return f"SELECT campaign_id, kind, key, -n AS n, -total AS total FROM ({facts}) AS o"


def _attempted_delta(*, with_old: bool) -> str:
    """SQL: the change in "leads with a placed call" caused by one statement on call_attempts.

    Per lead touched: placed calls now (the table after the statement) against placed calls
    before (now, minus the statement's new rows, plus its old rows).
    """
    old = f" UNION ALL SELECT lead_id, campaign_id, -((status IN {_PLACED})::int) FROM old_rows" if with_old else ""
    return f"""
SELECT campaign_id, 'leads_attempted' AS kind, '' AS key, sum(now_placed - before_placed)::bigint AS n, 0::bigint AS total
FROM (
  SELECT d.campaign_id, (c.placed > 0)::int AS now_placed, (c.placed - d.dp > 0)::int AS before_placed
  FROM (
    SELECT lead_id, campaign_id, sum(p) AS dp FROM (
      SELECT lead_id, campaign_id, (status IN {_PLACED})::int AS p FROM new_rows{old}
    ) AS x GROUP BY lead_id, campaign_id HAVING sum(p) <> 0
  ) AS d
  CROSS JOIN LATERAL (
    SELECT count(*) AS placed FROM call_attempts AS a WHERE a.lead_id = d.lead_id AND a.status IN {_PLACED}
  ) AS c
) AS y GROUP BY campaign_id HAVING sum(now_placed - before_placed) <> 0"""


def _insert_sums(facts: str) -> str:
    return f"""
INSERT INTO {COUNTERS_TABLE} (campaign_id, kind, key, n, total)
SELECT campaign_id, kind, key, {_N}, {_TOTAL} FROM ({facts}) AS d
GROUP BY campaign_id, kind, key HAVING sum(n) <> 0 OR {_TOTAL} <> 0;"""


def counters_table_ddl() -> str:
    """Return the CREATE statements of `campaign_counters` (what the migration makes from models.CampaignCounter).

    No foreign key on purpose: a key check would take a KEY SHARE lock on the campaign row that
    conflicts with the pacer's FOR UPDATE SKIP LOCKED, making it skip busy campaigns.
    """
    return f"""
CREATE TABLE {COUNTERS_TABLE} (
  id BIGSERIAL NOT NULL,
  campaign_id INTEGER NOT NULL,
  kind VARCHAR(24) NOT NULL,
  key TEXT NOT NULL,
  n BIGINT NOT NULL,
  total BIGINT NOT NULL,
  CONSTRAINT pk_{COUNTERS_TABLE} PRIMARY KEY (id)
);
CREATE INDEX ix_{COUNTERS_TABLE}_campaign_id ON {COUNTERS_TABLE} (campaign_id);
"""


def counters_ddl() -> str:
    """Return the SQL that installs the maintained counters: functions, triggers and the backfill.

    Runs inside the migration's transaction after `campaign_counters` is created; the tables are
    locked for the backfill so no change slips between the backfill and the triggers.
    """
    changed = "(SELECT n.* FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id WHERE (n.status, n.dialed_at, n.ended_at) IS DISTINCT FROM (o.status, o.dialed_at, o.ended_at))"
    lead_update = f"{_lead_facts('new_rows')}\nUNION ALL {_negated(_lead_facts('old_rows'))}"
    attempt_update = f"{_attempt_facts('new_rows')}\nUNION ALL {_negated(_attempt_facts('old_rows'))}"
    backfill = (
        f"{_lead_facts('leads')}\nUNION ALL {_attempt_facts('call_attempts')}\nUNION ALL {_attempt_marks('call_attempts')}"
        f"\nUNION ALL SELECT campaign_id, 'leads_attempted', '', count(DISTINCT lead_id), 0 FROM call_attempts"
        f" WHERE status IN {_PLACED} GROUP BY campaign_id"
    )
    return f"""
LOCK TABLE leads, call_attempts IN SHARE ROW EXCLUSIVE MODE;

CREATE OR REPLACE FUNCTION campaign_counters_leads() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN{_insert_sums(_lead_facts("new_rows", raw_first=True))}
  ELSE{_insert_sums(lead_update)}
  END IF;
  RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION campaign_counters_attempts() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN{_insert_sums(_attempt_facts("new_rows"))}{_insert_sums(_attempt_marks("new_rows"))}{_insert_sums(_attempted_delta(with_old=False))}
  ELSE{_insert_sums(attempt_update)}{_insert_sums(_attempt_marks(changed))}{_insert_sums(_attempted_delta(with_old=True))}
  END IF;
  RETURN NULL;
END
$fn$;

CREATE TRIGGER {_TRIGGERS[0]} AFTER INSERT ON leads REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION campaign_counters_leads();
CREATE TRIGGER {_TRIGGERS[1]} AFTER UPDATE ON leads REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION campaign_counters_leads();
CREATE TRIGGER {_TRIGGERS[2]} AFTER INSERT ON call_attempts REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION campaign_counters_attempts();
CREATE TRIGGER {_TRIGGERS[3]} AFTER UPDATE ON call_attempts REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION campaign_counters_attempts();
{_insert_sums(backfill)}
"""


def drop_counters_ddl() -> str:
    """Return the SQL that removes the triggers and functions (the migration's downgrade)."""
    drops = [
        f"DROP TRIGGER IF EXISTS {name} ON {'leads' if 'leads' in name else 'call_attempts'};" for name in _TRIGGERS
    ]
    return "\n".join(
        [
            *drops,
            "DROP FUNCTION IF EXISTS campaign_counters_leads();",
            "DROP FUNCTION IF EXISTS campaign_counters_attempts();",
        ]
    )


def counters_installed(*, session: Session) -> bool:
    """Tell whether the maintained counters (table and triggers) are in this database."""
    return bool(
        session.scalar(
            text(
                "SELECT to_regclass(:table) IS NOT NULL"
                " AND (SELECT count(*) FROM pg_trigger WHERE tgname = ANY(:names)) = :n"
            ),
            {"table": COUNTERS_TABLE, "names": list(_TRIGGERS), "n": len(_TRIGGERS)},
        )
    )


def compact_counters(*, session: Session, campaign_id: int | None = None, now: dt.datetime | None = None) -> int:
    """Fold the counters' delta rows into one row per key (all campaigns, or one); return rows removed.

    Also keeps the keys few: pending leads due before `now` share one key per reason (they stay
    due), and minutes older than FOLD_MINUTES_AFTER become hours. Safe beside the triggers and
    another compaction: deltas added meanwhile are not seen and stay; rows another compaction took
    are skipped. Counters of deleted campaigns go too. A no-op until the counters are installed.
    """
    if not counters_installed(session=session):
        return 0
    now = now or dt.datetime.now(dt.UTC)
    where = "WHERE campaign_id = :campaign_id" if campaign_id is not None else ""
    removed = session.execute(
        text(
            f"""
WITH gone AS (DELETE FROM {COUNTERS_TABLE} {where} RETURNING campaign_id, kind, key, n, total),
keyed AS (
  SELECT campaign_id, kind, n, total, CASE
    WHEN kind = 'pending_at' AND substring(key FROM '@([^@]*)$') <= :now_second
      THEN regexp_replace(key, '@[^@]*$', '') || '@' || :long_ago
    WHEN kind IN ('calls_minute', 'contacts_minute', 'finished_minute') AND length(key) = 16 AND key < :fold_before
      THEN left(key, 13)
    ELSE key END AS key
  FROM gone
),
folded AS (
  INSERT INTO {COUNTERS_TABLE} (campaign_id, kind, key, n, total)
  SELECT campaign_id, kind, key, {_N}, {_TOTAL} FROM keyed
  WHERE EXISTS (SELECT 1 FROM campaigns AS c WHERE c.id = keyed.campaign_id)
  GROUP BY campaign_id, kind, key HAVING sum(n) <> 0 OR {_TOTAL} <> 0
  RETURNING 1
)
SELECT (SELECT count(*) FROM gone) - (SELECT count(*) FROM folded)"""
        ),
        {
            "campaign_id": campaign_id,
            "now_second": _utc_key(now),
            "long_ago": LONG_AGO_KEY,
            "fold_before": _utc_key(now - FOLD_MINUTES_AFTER, minute=True),
        },
    ).scalar_one()
    return int(removed)


@dataclass
class Facts:
    """A campaign's facts summed: (kind, key) -> (n, total)."""

    sums: dict[tuple[str, str], tuple[int, int]]
    rows: int = 0

    def __post_init__(self) -> None:
        self._by_kind: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
        for (kind, key), value in self.sums.items():
            self._by_kind[kind][key] = value

    def n(self, kind: str, key: str = "") -> int:
        return self.sums.get((kind, key), (0, 0))[0]

    def total(self, kind: str, key: str = "") -> int:
        return self.sums.get((kind, key), (0, 0))[1]

    def keys(self, kind: str) -> dict[str, tuple[int, int]]:
        return self._by_kind.get(kind, {})


def campaign_facts(*, session: Session, campaign_id: int, now: dt.datetime | None = None) -> Facts:
    """Sum a campaign's facts: from the maintained counters when installed, else from its rows."""
    if not counters_installed(session=session):
        return compute_facts(session=session, campaign_id=campaign_id)
    facts = _read_facts(session, f"SELECT * FROM {COUNTERS_TABLE} WHERE campaign_id = :campaign_id", campaign_id)
    if facts.rows > COMPACT_AFTER_ROWS and facts.rows > 2 * len(facts.sums):
        # Keep the next read short. One compactor at a time; the others just read.
        if session.scalar(text("SELECT pg_try_advisory_xact_lock(872233, :c)"), {"c": campaign_id}):
            # Folding "already due" is for good, so never fold by a clock ahead of the real one.
            real = dt.datetime.now(dt.UTC)
            compact_counters(session=session, campaign_id=campaign_id, now=min(now or real, real))
    return facts


def compute_facts(*, session: Session, campaign_id: int) -> Facts:
    """Sum a campaign's facts from its leads and attempts (no counters: a scan of the campaign's rows)."""
    leads = "(SELECT * FROM leads WHERE campaign_id = :campaign_id)"
    attempts = "(SELECT * FROM call_attempts WHERE campaign_id = :campaign_id)"
    computed = (
        f"{_lead_facts(leads)}\nUNION ALL {_attempt_facts(attempts)}\nUNION ALL {_attempt_marks(attempts)}"
        f"\nUNION ALL SELECT campaign_id, 'leads_attempted', '', count(DISTINCT lead_id), 0 FROM call_attempts"
        f" WHERE campaign_id = :campaign_id AND status IN {_PLACED} GROUP BY campaign_id"
    )
    # Hash aggregates over a large campaign: JIT compilation costs more than it saves here, and
    # a little more memory keeps the sorts off disk. For this transaction only.
    session.execute(text("SET LOCAL jit = off"))
    session.execute(text("SET LOCAL work_mem = '64MB'"))
    return _read_facts(session, computed, campaign_id)


def _read_facts(session: Session, source: str, campaign_id: int) -> Facts:
    rows = session.execute(
        text(f"SELECT kind, key, {_N}, {_TOTAL}, count(*) FROM ({source}) AS f GROUP BY kind, key"),
        {"campaign_id": campaign_id},
    ).all()
    return Facts(
        sums={(str(kind), str(key)): (int(n), int(total)) for kind, key, n, total, _ in rows if n or total},
        rows=sum(int(r[4]) for r in rows),
    )


# --- clock-dependent pieces ---------------------------------------------------------------------


def _utc_key(moment: dt.datetime, minute: bool = False) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M" if minute else "%Y-%m-%dT%H:%M:%S")


def _from_minute_key(key: str) -> dt.datetime:
    # A minute, or an hour once compaction has folded old minutes.
    return dt.datetime.strptime(key, "%Y-%m-%dT%H:%M" if len(key) > 13 else "%Y-%m-%dT%H").replace(tzinfo=dt.UTC)


def _free_agent_condition(now: dt.datetime) -> Any:
    # The pacer's own test of a free agent (dialer.pacing._free_agents), without its row locks.
    return and_(
        or_(Agent.paused_until.is_(None), Agent.paused_until <= now),
        or_(Agent.reserved_attempt_id.is_(None), Agent.lease_until <= now),
        or_(Agent.available_at.is_(None), Agent.available_at <= now),
    )


def _agent_rows(session: Session, campaign_id: int, now: dt.datetime) -> list[Row[Any]]:
    on_call = and_(Agent.reserved_attempt_id.is_not(None), or_(Agent.lease_until.is_(None), Agent.lease_until > now))
    paused = and_(Agent.paused_until.is_not(None), Agent.paused_until > now)
    return list(
        session.execute(
            select(
                Agent.id,
                Agent.number,
                Agent.name,
                Agent.available_at,
                _free_agent_condition(now).label("free"),
                on_call.label("on_call"),
                paused.label("paused"),
            )
            .join(CampaignAgent, CampaignAgent.agent_id == Agent.id)
            .where(CampaignAgent.campaign_id == campaign_id)
            .order_by(Agent.number)
        ).all()
    )


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


@dataclass
class _Snapshot:
    session: Session
    campaign: Campaign
    facts: Facts
    agents: list[Row[Any]]
    now: dt.datetime


def _snapshot(session: Session, campaign_id: int, now: dt.datetime | None) -> _Snapshot:
    campaign = get_campaign(session=session, campaign_id=campaign_id)
    now = now or dt.datetime.now(dt.UTC)
    return _Snapshot(
        session=session,
        campaign=campaign,
        facts=campaign_facts(session=session, campaign_id=campaign_id, now=now),
        agents=_agent_rows(session, campaign_id, now),
        now=now,
    )


def _lead_numbers(snap: _Snapshot) -> dict[str, Any]:
    """Leads by status, due now, dialable now and why the others wait; pace and ETA."""
    facts, now, campaign = snap.facts, snap.now, snap.campaign
    leads = {s.value: facts.n("lead_status", s.value) for s in LeadStatus}
    total = sum(leads.values())
    open_leads = leads[LeadStatus.PENDING.value] + leads[LeadStatus.IN_CALL.value]
    now_key = _utc_key(now)
    pending_by_reason: dict[str, int] = defaultdict(int)
    waiting: dict[str, int] = defaultdict(int)
    due = 0
    for key, (n, _) in facts.keys("pending_at").items():
        reason, _, when = key.rpartition("@")
        pending_by_reason[reason or "due"] += n
        if when <= now_key:
            due += n
        else:
            # Not due yet: the reason the lead was put back, or a plain wait (callback, start).
            waiting[reason or "scheduled"] += n
    free_agents = sum(1 for a in snap.agents if a.free)
    running = campaign.state == CampaignState.RUNNING
    blocked = {k: v for k, v in waiting.items() if v}
    dialable = 0
    if due:
        if not running:
            blocked[f"campaign_{campaign.state.value}"] = blocked.get(f"campaign_{campaign.state.value}", 0) + due
        elif not free_agents:
            blocked["no_agent"] = blocked.get("no_agent", 0) + due
        else:
            dialable = due
    calls_in_progress = sum(facts.n("attempt_status", s.value) for s in IN_PROGRESS)
    since, leads_per_minute, calls_per_minute = _pace(facts, now)
    eta = None
    if open_leads == 0:
        eta = 0
    elif running and leads_per_minute > 0:
        eta = round(open_leads / leads_per_minute * 60)
    return {
        "total_leads": total,
        "leads": leads,
        "finished_leads": total - open_leads,
        "open_leads": open_leads,
        "contacted": leads[LeadStatus.CONTACTED.value],
        "calls_in_progress": calls_in_progress,
        "due_leads": due,
        "dialable_now": dialable,
        "blocked_by_reason": dict(sorted(blocked.items())),
        "pending_by_reason": {k: v for k, v in sorted(pending_by_reason.items()) if v},
        "penetration": _rate(total - open_leads, total),
        "pace": {
            "since": since.isoformat(),
            "leads_per_minute": round(leads_per_minute, 2),
            "calls_per_minute": round(calls_per_minute, 2),
        },
        "eta_seconds": eta,
        "eta_at": (now + dt.timedelta(seconds=eta)).isoformat() if eta is not None else None,
        "agents_summary": {
            "total": len(snap.agents),
            "free": free_agents,
            "on_call": sum(1 for a in snap.agents if a.on_call),
            "paused": sum(1 for a in snap.agents if a.paused),
        },
    }


def _pace(facts: Facts, now: dt.datetime) -> tuple[dt.datetime, float, float]:
    """Leads finished and calls placed per minute over the last PACE_WINDOW (or since the first call)."""
    calls = facts.keys("calls_minute")
    start = now.astimezone(dt.UTC).replace(second=0, microsecond=0) - PACE_WINDOW + dt.timedelta(minutes=1)
    if calls:
        start = max(start, _from_minute_key(min(calls)))
    minutes = max((now - start).total_seconds() / 60, 1 / 60)
    start_key = _utc_key(start, minute=True)
    finished = sum(n for k, (n, _) in facts.keys("finished_minute").items() if k >= start_key)
    placed = sum(n for k, (n, _) in calls.items() if k >= start_key)
    return start, finished / minutes, placed / minutes


def campaign_status(*, session: Session, campaign_id: int, now: dt.datetime | None = None) -> dict[str, Any]:
    """Return the live view: state, leads by status, dialable and blocked leads, calls, agents, ETA."""
    snap = _snapshot(session, campaign_id, now)
    c = snap.campaign
    return {
        "id": c.id,
        "name": c.name,
        "state": c.state.value,
        "state_reason": c.state_reason,
        **_lead_numbers(snap),
        "generated_at": snap.now.isoformat(),
    }


def campaign_report(*, session: Session, campaign_id: int, now: dt.datetime | None = None) -> dict[str, Any]:
    """Return the campaign report: every number of the live view plus calls, outcomes, rates, agents."""
    snap = _snapshot(session, campaign_id, now)
    facts, c = snap.facts, snap.campaign
    live = _lead_numbers(snap)
    outcomes = {s.value: facts.n("attempt_status", s.value) for s in AttemptStatus}
    placed = sum(n for s, n in outcomes.items() if AttemptStatus(s) in CALL_PLACED)
    completed = outcomes[AttemptStatus.COMPLETED.value]
    attempted = facts.n("leads_attempted")
    talk = facts.total("talk")
    return {
        "campaign": {
            "id": c.id,
            "name": c.name,
            "state": c.state.value,
            "state_reason": c.state_reason,
            "timezone": c.timezone,
            "created_at": c.created_at.isoformat() if c.created_at else None,
            "finished_at": c.finished_at.isoformat() if c.finished_at else None,
        },
        **live,
        "leads_attempted": attempted,
        "attempts": placed,
        "calls_placed": placed,
        "outcomes": outcomes,
        "hangup_causes": dict(
            sorted(((k, n) for k, (n, _) in facts.keys("hangup_cause").items()), key=lambda x: -x[1])
        ),
        "contact_rate": _rate(live["contacted"], attempted),
        "answer_rate": _rate(completed, placed),
        "talk_seconds": talk,
        "avg_talk_seconds": round(talk / completed, 1) if completed else 0.0,
        "calls_per_minute": _per_minute(facts, snap.now),
        "calls_per_hour": _per_hour(facts),
        "passes": _passes(facts),
        "agents": _agents(snap),
        "import_jobs": import_jobs(session=session, campaign_id=c.id),
        "generated_at": snap.now.isoformat(),
    }


def _per_minute(facts: Facts, now: dt.datetime) -> list[dict[str, Any]]:
    """Calls and contacts per minute for the last TIMELINE_MINUTES (UTC minute starts), zeros filled."""
    calls, contacts = facts.keys("calls_minute"), facts.keys("contacts_minute")
    last = now.astimezone(dt.UTC).replace(second=0, microsecond=0)
    out = []
    for i in range(TIMELINE_MINUTES - 1, -1, -1):
        key = _utc_key(last - dt.timedelta(minutes=i), minute=True)
        out.append({"t": key + ":00Z", "calls": calls.get(key, (0, 0))[0], "contacts": contacts.get(key, (0, 0))[0]})
    return out


def _per_hour(facts: Facts) -> list[dict[str, Any]]:
    """Calls and contacts per UTC hour over the campaign's life, zeros filled between active hours."""
    hours: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for index, kind in enumerate(("calls_minute", "contacts_minute")):
        for key, (n, _) in facts.keys(kind).items():
            hours[key[:13]][index] += n
    active = sorted(k for k, v in hours.items() if v[0] or v[1])
    if not active:
        return []
    first = dt.datetime.strptime(active[0], "%Y-%m-%dT%H").replace(tzinfo=dt.UTC)
    last = dt.datetime.strptime(active[-1], "%Y-%m-%dT%H").replace(tzinfo=dt.UTC)
    span = int((last - first).total_seconds() // 3600) + 1
    keys = (
        [(first + dt.timedelta(hours=i)).strftime("%Y-%m-%dT%H") for i in range(span)]
        if span <= MAX_FILLED_HOURS
        else active
    )
    return [{"t": k + ":00:00Z", "calls": hours[k][0], "contacts": hours[k][1]} for k in keys]


def _passes(facts: Facts) -> list[dict[str, Any]]:
    """Contact rate by attempt number: contacts / calls placed on the n-th attempt."""
    calls = facts.keys("pass_calls")
    out = []
    for no in sorted(calls, key=int):
        placed = calls[no][0]
        contacts = facts.n("pass_contacts", no)
        out.append({"attempt": int(no), "calls": placed, "contacts": contacts, "contact_rate": _rate(contacts, placed)})
    return out


def _agents(snap: _Snapshot) -> list[dict[str, Any]]:
    """Per agent: calls, contacts, talk, time on calls, idle between first dial and last hang-up, state."""
    facts = snap.facts
    rows = {a.id: a for a in snap.agents}
    ids = {int(k) for kind in ("agent_calls", "agent_busy") for k in facts.keys(kind)} | set(rows)
    missing = ids - set(rows)
    numbers = {a.id: (a.number, a.name) for a in snap.agents}
    if missing:
        # Agents that took calls and have since left the campaign still count.
        numbers.update(
            {
                i: (n, nm)
                for i, n, nm in snap.session.execute(
                    select(Agent.id, Agent.number, Agent.name).where(Agent.id.in_(missing))
                )
            }
        )
    out = []
    for agent_id in ids:
        key = str(agent_id)
        busy = facts.total("agent_busy", key)
        first, last = facts.total("agent_first", key), facts.total("agent_last", key)
        idle = max(0, last - first - busy) if first and last else 0
        row = rows.get(agent_id)
        state = "left"
        if row is not None:
            state = "on_call" if row.on_call else "paused" if row.paused else "free" if row.free else "wrap_up"
        number, name = numbers.get(agent_id, (key, None))
        out.append(
            {
                "agent": number,
                "name": name,
                "calls": facts.n("agent_calls", key),
                "contacts": facts.n("agent_contacts", key),
                "talk_seconds": facts.total("agent_contacts", key),
                "busy_seconds": busy,
                "idle_seconds": idle,
                "state": state,
            }
        )
    return sorted(out, key=lambda a: a["agent"])


def import_jobs(*, session: Session, campaign_id: int) -> list[dict[str, Any]]:
    """Return the campaign's imports, oldest first, with their reject counts by reason."""
    jobs = session.scalars(select(ImportJob).where(ImportJob.campaign_id == campaign_id).order_by(ImportJob.id))
    return [
        {
            "id": j.id,
            "filename": j.filename,
            "total_rows": j.total_rows,
            "accepted": j.accepted,
            "rejected": j.rejected,
            "rejects_by_reason": dict(j.rejects_by_reason or {}),
            "created_at": j.created_at.isoformat() if j.created_at else None,
        }
        for j in jobs
    ]


def lead_counts(*, session: Session, campaign_id: int) -> dict[str, int]:
    """Return leads by status, every status present (zero when none)."""
    facts = campaign_facts(session=session, campaign_id=campaign_id)
    return {s.value: facts.n("lead_status", s.value) for s in LeadStatus}


# --- lead-level export ---------------------------------------------------------------------------

# A cell starting with one of these is a formula (or DDE) to Excel, LibreOffice and Sheets; the
# full-width forms are folded to ASCII by some of them.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
EXPORT_COLUMNS = (
    "lead_id",
    "phone",
    "status",
    "attempts",
    "last_outcome",
    "talk_seconds",
    "recording_url",
    "last_call_at",
)


def safe_cell(value: Any) -> str:
    """Return the value as CSV text a spreadsheet shows as text, never runs as a formula."""
    text_value = "" if value is None else str(value)
    return "'" + text_value if text_value.startswith(_FORMULA_START) else text_value


def iter_leads_csv(*, session: Session, campaign_id: int, batch: int = 5000) -> Iterator[str]:
    """Yield the lead-level export as CSV text chunks (one row per lead), formula-safe, streamed."""
    get_campaign(session=session, campaign_id=campaign_id)
    # An imported lead's fields are its import job's custom_keys against its custom_values; a
    # key is None when no stored lead of that import has a value in the column.
    job_keys = {
        job_id: list(keys or ())
        for job_id, keys in session.execute(
            select(ImportJob.id, ImportJob.custom_keys).where(
                ImportJob.campaign_id == campaign_id, ImportJob.custom_keys.is_not(None)
            )
        )
    }
    own_keys = session.scalars(
        select(func.jsonb_object_keys(Lead.own_fields)).where(Lead.campaign_id == campaign_id).distinct()
    )
    extra = sorted({str(k) for k in own_keys} | {k for keys in job_keys.values() for k in keys if k})
    # A custom column named like one of ours is kept, renamed, rather than shadowing it.
    headers = [*EXPORT_COLUMNS, *(f"custom_{k}" if k in EXPORT_COLUMNS else k for k in extra)]
    stmt = text(
        """
SELECT l.id, l.phone_e164, l.status, l.attempts, l.last_outcome, l.custom_fields, l.import_job_id, l.custom_values,
       a.talk, a.recording_url, a.last_call
FROM leads AS l
LEFT JOIN LATERAL (
  SELECT coalesce(sum(billsec) FILTER (WHERE status = :completed), 0) AS talk,
         (array_agg(recording_url ORDER BY attempt_no DESC) FILTER (WHERE recording_url IS NOT NULL))[1] AS recording_url,
         max(dialed_at) AS last_call
  FROM call_attempts WHERE lead_id = l.id
) AS a ON true
WHERE l.campaign_id = :campaign_id
ORDER BY l.id"""
    )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    result = session.execute(
        stmt,
        {"campaign_id": campaign_id, "completed": AttemptStatus.COMPLETED.value},
        execution_options={"yield_per": batch},
    )
    for partition in result.partitions(batch):
        for lead_id, phone, status, attempts, last_outcome, own, job_id, cells, talk, recording, last_call in partition:
            fields = dict(own or {})
            if cells is not None:
                fields.update((k, v) for k, v in zip(job_keys.get(job_id, ()), cells, strict=False) if k and v)
            writer.writerow(
                [
                    lead_id,
                    # E.164 starts with "+": written as-is it is a formula to a spreadsheet.
                    safe_cell(phone),
                    status,
                    attempts,
                    safe_cell(last_outcome),
                    int(talk or 0),
                    safe_cell(recording),
                    last_call.astimezone(dt.UTC).isoformat() if last_call else "",
                    *(safe_cell(fields.get(k)) for k in extra),
                ]
            )
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    if out.getvalue():
        yield out.getvalue()


def leads_csv(*, session: Session, campaign_id: int) -> str:
    """Return the lead-level export (one row per lead) as CSV text, formula-safe."""
    return "".join(iter_leads_csv(session=session, campaign_id=campaign_id))
