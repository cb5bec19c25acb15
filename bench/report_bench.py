"""Benchmark campaign_report and campaign_status on a campaign of 1,000,000 leads and 2,000,000 attempts.

    .venv/bin/python bench/report_bench.py [--leads 1000000] [--attempts-per-lead 2] [--runs 7]

Works in a throwaway DATABASE (`dialer_report_bench_<pid>`) created on the server named by
DIALER_DATABASE_URL (or the embedded one) and dropped at the end, so no real campaign is ever
touched and nothing can dial it; the role needs CREATEDB. Steps:
  1. migrate it (Alembic) and load one campaign, 20 agents, the leads and attempts with COPY
     (indexes and constraints dropped for the load and rebuilt after, as pg_restore does);
  2. time both functions on the schema as migrated (median of several runs);
  3. if the migrations do not create `campaign_counters` yet: install the proposed table, its
     triggers and the backfill (dialer.reports.counters_table_ddl/counters_ddl), time that, and
     time both functions again;
  4. play live traffic through the triggers (single-row updates, as webhooks make them) and time
     the first read (which compacts the deltas) and the next ones; measure the triggers' cost per
     UPDATE statement.
Target: <= 300 ms for each function.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dialer import reports  # noqa: E402

TARGET_MS = 300.0
AGENTS = 20
TABLES = ("leads", "call_attempts")
# Outcomes of the attempts before the last one, and their hangup causes.
EARLIER: list[tuple[str, str | None]] = [
    ("no_answer", "NO_ANSWER"),
    ("busy", "USER_BUSY"),
    ("agent_missed", None),
    ("failed", None),
    ("lost", None),
]
NULL = "\\N"  # COPY text format


@dataclass
class Timing:
    step: str
    function: str
    runs: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def _server_url() -> str:
    url = os.environ.get("DIALER_DATABASE_URL")
    if url:
        return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    from dialer.db import database_url

    return database_url()


@contextmanager
def throwaway_database(server_url: str, keep: bool = False) -> Iterator[str]:
    """Create a database for the run and drop it afterwards (unless `keep`), whatever happens."""
    base = make_url(server_url)
    name = f"dialer_report_bench_{os.getpid()}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.ProgrammingError as exc:
        raise SystemExit(f"cannot create a throwaway database (the role needs CREATEDB): {exc.orig}") from None
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        if keep:
            print(f'kept database {name}: drop it with  DROP DATABASE "{name}" WITH (FORCE)')
        else:
            with admin.connect() as c:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def migrate(url: str) -> None:
    """Build the schema with the project's own migrations."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["url"] = url
    command.upgrade(config, "head")


@contextmanager
def indexes_dropped(engine: sa.Engine) -> Iterator[None]:
    """Drop the tables' secondary indexes and their unique/foreign keys for a bulk load; rebuild them after."""
    with engine.begin() as c:
        constraints = c.execute(
            sa.text(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid::regclass::text = ANY(:t) AND contype IN ('u', 'f')"
            ),
            {"t": list(TABLES)},
        ).all()
        indexes = c.execute(
            sa.text(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index AS i"
                " WHERE i.indrelid::regclass::text = ANY(:t) AND NOT i.indisprimary"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.indexrelid)"
            ),
            {"t": list(TABLES)},
        ).all()
        for table, name, _ in constraints:
            c.execute(sa.text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
        for name, _ in indexes:
            c.execute(sa.text(f"DROP INDEX {name}"))
    yield
    with engine.begin() as c:
        c.execute(sa.text("SET LOCAL maintenance_work_mem = '256MB'"))
        for _, definition in indexes:
            c.execute(sa.text(definition))
        for table, name, definition in sorted(constraints, key=lambda r: "FOREIGN" in r[2]):
            c.execute(sa.text(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'))


def _copy(raw: Any, table: str, columns: list[str], lines: Iterator[str]) -> None:
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        buf = io.StringIO()
        for n, line in enumerate(lines, 1):
            buf.write(line)
            if n % 50_000 == 0:
                copy.write(buf.getvalue())
                buf = io.StringIO()
        copy.write(buf.getvalue())


def _roll(lead_id: int, salt: int = 0) -> float:
    # Deterministic per lead, so leads and attempts can be generated in two separate streams.
    return ((lead_id * 2654435761 + salt * 40503) % 1_000_003) / 1_000_003


def seed(engine: sa.Engine, *, leads: int, per_lead: int, now: dt.datetime) -> tuple[int, int]:
    """Load one running campaign mid-way through: `leads` leads, on average `per_lead` attempts each."""
    with engine.begin() as c:
        campaign_id = int(
            c.execute(
                sa.text(
                    "INSERT INTO campaigns (name, caller_id, state, region, timezone, window_start, window_end, days,"
                    " max_attempts, call_timeout, retry_policy, min_gap_seconds)"
                    " VALUES ('report bench', '+441134960000', 'running', 'GB', 'Europe/London', '00:00', '23:59:59',"
                    " '{1,2,3,4,5,6,7}', 5, 300, '{}', 0) RETURNING id"
                )
            ).scalar_one()
        )
        agent_ids = [
            int(
                c.execute(
                    sa.text("INSERT INTO agents (number) VALUES (:n) RETURNING id"), {"n": f"+4420790{i:05d}"}
                ).scalar_one()
            )
            for i in range(AGENTS)
        ]
        c.execute(
            sa.text("INSERT INTO campaign_agents (campaign_id, agent_id) SELECT :c, unnest(CAST(:a AS integer[]))"),
            {"c": campaign_id, "a": agent_ids},
        )
    cycle = 2 * per_lead + 1
    total_attempts = sum((i % cycle) for i in range(1, leads + 1))
    # Calls spread over the hours 20 agents take to place them (about 8 a second).
    span = dt.timedelta(seconds=total_attempts / 8)
    start = now - span

    def calls(lead_id: int) -> int:
        return lead_id % cycle  # 0 .. 2*per_lead, mean per_lead

    def call(attempt_id: int, lead_id: int, no: int) -> tuple[str, str | None, int, dt.datetime, dt.datetime]:
        dialed = start + span * ((attempt_id - 1) / max(total_attempts, 1))
        cause: str | None
        if no == calls(lead_id) and _roll(lead_id) < 0.45:
            status, cause, billsec = "completed", "NORMAL_CLEARING", 20 + int(_roll(lead_id, no) * 580)
        else:
            (status, cause), billsec = EARLIER[(lead_id + no) % len(EARLIER)], 0
        duration = billsec + 5 + int(_roll(lead_id, no + 7) * 25)
        return status, cause, billsec, dialed, dialed + dt.timedelta(seconds=duration)

    def attempt_lines() -> Iterator[str]:
        attempt_id = 0
        for lead_id in range(1, leads + 1):
            for no in range(1, calls(lead_id) + 1):
                attempt_id += 1
                status, cause, billsec, dialed, ended = call(attempt_id, lead_id, no)
                duration = int((ended - dialed).total_seconds())
                recording = f"https://rec.example/{lead_id}-{no}.mp3" if status == "completed" else "\\N"
                yield (
                    f"{attempt_id}\t{campaign_id}\t{lead_id}\t{agent_ids[attempt_id % AGENTS]}\t{no}\t"
                    f"c{campaign_id}-l{lead_id}-a{no}\t{status}\t{'f' if status == 'agent_missed' else 't'}\t{{}}\t1\t"
                    f"{cause or NULL}\t{billsec}\t{duration}\t{recording}\t{dialed.isoformat()}\t{dialed.isoformat()}\t"
                    f"{ended.isoformat()}\n"
                )

    def lead_lines() -> Iterator[str]:
        attempt_id = 0
        for lead_id in range(1, leads + 1):
            n, roll = calls(lead_id), _roll(lead_id)
            attempt_id += n
            finished = call(attempt_id, lead_id, n)[4] if n else start
            if n and roll < 0.45:
                status, reason, due, last = "contacted", NULL, now, "completed"
            elif n >= 4:
                status, reason, due, last = "exhausted", NULL, now, "no_answer"
            elif n == 0:
                status, reason, due, last = "pending", NULL, start, NULL
            else:
                status = "pending"
                reason = "waiting_for_retry" if roll < 0.85 else "outside_window"
                due = now + dt.timedelta(minutes=int(_roll(lead_id, 3) * 150) - 30)
                last = EARLIER[(lead_id + n) % len(EARLIER)][0]
            if roll > 0.995:
                status, reason = "dnc", "dnc"
            fields = json.dumps({"first_name": "Ann", "ref": f"CRM-{lead_id}"})
            yield (
                f"{lead_id}\t{campaign_id}\t+4477{lead_id:09d}\t{{Europe/London}}\t{fields}\t{status}\t0\t"
                f"{min(n, 4)}\t{n}\t{due.isoformat()}\t{last}\t{reason}\t{start.isoformat()}\t{finished.isoformat()}\n"
            )

    lead_cols = [
        "id", "campaign_id", "phone_e164", "timezones", "custom_fields", "status", "priority", "attempts",
        "attempt_seq", "next_attempt_at", "last_outcome", "blocked_reason", "created_at", "updated_at",
    ]  # fmt: skip
    attempt_cols = [
        "id", "campaign_id", "lead_id", "agent_id", "attempt_no", "custom_identifier", "status", "charged", "audit",
        "send_count", "hangup_cause", "billsec", "duration", "recording_url", "created_at", "dialed_at", "ended_at",
    ]  # fmt: skip
    with indexes_dropped(engine):
        raw = engine.raw_connection()
        try:
            dbapi = raw.driver_connection
            _copy(dbapi, "leads", lead_cols, lead_lines())
            _copy(dbapi, "call_attempts", attempt_cols, attempt_lines())
            raw.commit()
        finally:
            raw.close()
    with engine.begin() as c:
        c.execute(sa.text("SELECT setval('leads_id_seq', :n)"), {"n": leads})
        c.execute(sa.text("SELECT setval('call_attempts_id_seq', :n)"), {"n": max(total_attempts, 1)})
    _vacuum(engine)
    return campaign_id, total_attempts


def _vacuum(engine: sa.Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        for table in (*TABLES, "campaigns", "agents"):
            c.execute(sa.text(f"VACUUM ANALYZE {table}"))
        if c.execute(sa.text("SELECT to_regclass('campaign_counters') IS NOT NULL")).scalar():
            c.execute(sa.text("VACUUM ANALYZE campaign_counters"))


def time_calls(engine: sa.Engine, step: str, campaign_id: int, runs: int) -> list[Timing]:
    """Time each function `runs` times, each in its own committed session (as a request would)."""
    out = []
    for name, fn in (("campaign_report", reports.campaign_report), ("campaign_status", reports.campaign_status)):
        samples = []
        for _ in range(runs):
            with Session(engine) as session:
                start = time.perf_counter()
                fn(session=session, campaign_id=campaign_id)
                session.commit()
                samples.append((time.perf_counter() - start) * 1000)
        out.append(Timing(step, name, samples))
    return out


def install_counters(engine: sa.Engine) -> float:
    """Install the proposed campaign_counters table, triggers and backfill; return the seconds it took."""
    start = time.perf_counter()
    with engine.begin() as c:
        c.exec_driver_sql(reports.counters_table_ddl())
        c.exec_driver_sql(reports.counters_ddl())
    seconds = time.perf_counter() - start
    _vacuum(engine)
    return seconds


def live_traffic(engine: sa.Engine, campaign_id: int, calls: int) -> float:
    """End `calls` calls as webhooks do (one attempt UPDATE, one lead UPDATE each); return ms per statement."""
    with engine.begin() as c:
        ids = c.execute(
            sa.text(
                "SELECT id, lead_id FROM call_attempts WHERE campaign_id = :c AND status = 'no_answer' ORDER BY id DESC LIMIT :n"
            ),
            {"c": campaign_id, "n": calls},
        ).all()
    start = time.perf_counter()
    with engine.begin() as c:
        for attempt_id, lead_id in ids:
            c.execute(
                sa.text("UPDATE call_attempts SET status = 'completed', billsec = 42, ended_at = now() WHERE id = :i"),
                {"i": attempt_id},
            )
            c.execute(
                sa.text("UPDATE leads SET status = 'contacted', blocked_reason = NULL WHERE id = :i"), {"i": lead_id}
            )
    return (time.perf_counter() - start) * 1000 / max(1, 2 * len(ids))


def trigger_cost(engine: sa.Engine, campaign_id: int, statements: int = 500) -> tuple[float, float]:
    """Milliseconds per single-row UPDATE with and without the counter triggers (rolled back)."""
    result = []
    for disable in (False, True):
        with engine.connect() as c:
            tx = c.begin()
            if disable:
                c.execute(sa.text("ALTER TABLE call_attempts DISABLE TRIGGER USER"))
            ids = list(
                c.execute(
                    sa.text("SELECT id FROM call_attempts WHERE campaign_id = :c AND status = 'busy' LIMIT :n"),
                    {"c": campaign_id, "n": statements},
                ).scalars()
            )
            start = time.perf_counter()
            for i in ids:
                c.execute(sa.text("UPDATE call_attempts SET status = 'no_answer' WHERE id = :i"), {"i": i})
            result.append((time.perf_counter() - start) * 1000 / max(1, len(ids)))
            tx.rollback()
    return result[0], result[1]


def main() -> None:
    """Seed, measure, print, drop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--attempts-per-lead", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7, help="runs per function on the counters")
    parser.add_argument("--computed-runs", type=int, default=3, help="runs per function without the counters")
    parser.add_argument("--live-calls", type=int, default=3000, help="calls ended through the triggers in step 4")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards (to explore it)")
    args = parser.parse_args()

    timings: list[Timing] = []
    notes: list[str] = []
    with throwaway_database(_server_url(), keep=args.keep) as url:
        migrate(url)
        engine = sa.create_engine(url, pool_size=2)
        try:
            now = dt.datetime.now(dt.UTC)
            started = time.perf_counter()
            campaign_id, attempts = seed(engine, leads=args.leads, per_lead=args.attempts_per_lead, now=now)
            notes.append(
                f"seeded {args.leads:,} leads and {attempts:,} attempts with COPY in {time.perf_counter() - started:.0f} s"
            )
            with Session(engine) as s:
                migrated = reports.counters_installed(session=s)
            step = "counters (migrated)" if migrated else "no counters (current schema)"
            timings += time_calls(engine, step, campaign_id, args.runs if migrated else args.computed_runs)
            if not migrated:
                seconds = install_counters(engine)
                notes.append(f"installed campaign_counters + triggers + backfill in {seconds:.1f} s")
                timings += time_calls(engine, "counters (proposed migration)", campaign_id, args.runs)
            per_statement = live_traffic(engine, campaign_id, args.live_calls)
            with Session(engine) as s:
                rows = s.scalar(
                    sa.text("SELECT count(*) FROM campaign_counters WHERE campaign_id = :c"), {"c": campaign_id}
                )
            notes.append(
                f"{args.live_calls:,} calls ended through the triggers: {per_statement:.2f} ms per UPDATE; "
                f"{rows:,} counter rows before the next read compacts them"
            )
            timings += time_calls(engine, f"counters + {args.live_calls:,} live calls", campaign_id, args.runs)
            with_t, without_t = trigger_cost(engine, campaign_id)
            notes.append(
                f"single-row UPDATE on call_attempts: {with_t:.2f} ms with the triggers, {without_t:.2f} ms without"
            )
        finally:
            engine.dispose()
    _print(args, timings, notes)


def _print(args: argparse.Namespace, timings: list[Timing], notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Report speed: {args.leads:,} leads, ~{args.leads * args.attempts_per_lead:,} attempts")
    for col in ("step", "function", "runs", "median ms", "min ms", "max ms", f"<= {TARGET_MS:.0f} ms"):
        table.add_column(col, justify="left" if col in ("step", "function") else "right")
    for t in timings:
        ok = "[green]yes[/]" if t.median <= TARGET_MS else "[red]no[/]"
        table.add_row(
            t.step, t.function, str(len(t.runs)), f"{t.median:.1f}", f"{min(t.runs):.1f}", f"{max(t.runs):.1f}", ok
        )
    console = Console(width=max(Console().width, 130))
    console.print(table)
    for note in notes:
        console.print(f"· {note}")


if __name__ == "__main__":
    main()
