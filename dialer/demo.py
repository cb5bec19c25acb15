"""`dialer demo`: one campaign end to end on the embedded servers, every process started and stopped here."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from dialer.fleet import Fleet, fleet_env, free_port, wait_http

SIM_SPEED = 0.02


def run_demo(*, leads: Path, agents: int, workers: int, timeout: float, keep_services: bool, console: Console) -> int:
    """Run the demo; return the exit code."""
    from dialer.config import get_settings
    from dialer.embedded import resolve_urls, stop_services

    settings = get_settings()
    if not leads.exists():
        console.print(f"[red]error:[/] lead list {leads} not found")
        return 1
    console.rule("[bold]dialer demo")
    urls = resolve_urls()
    console.print(
        f"servers: {'embedded (started now: ' + ', '.join(urls.started) + ')' if urls.started else 'running'}"
    )
    run_dir = settings.var_dir.resolve() / "demo" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    sim_port, web_port = free_port(), free_port()
    env = fleet_env(
        database_url=urls.database_url,
        redis_url=urls.redis_url,
        sim_port=sim_port,
        web_port=web_port,
        var_dir=settings.var_dir.resolve(),
    )
    fleet = Fleet(run_dir, env)
    code = 1
    campaign_id: int | None = None
    try:
        subprocess.run(
            [sys.executable, "-m", "dialer", "db", "upgrade"], env=env, check=True, capture_output=True, text=True
        )
        console.print("schema migrated")
        truth = run_dir / "simulator-calls.jsonl"
        fleet.start(
            "simulator",
            "simulate",
            "--port",
            str(sim_port),
            "--seed",
            "7",
            "--speed",
            str(SIM_SPEED),
            "--record",
            str(truth),
        )
        fleet.start("web", "web", "--port", str(web_port))
        for i in range(workers):
            fleet.start(f"worker-{i + 1}", "worker", "--concurrency", "4", "--loglevel", "WARNING")
        fleet.start("beat", "beat", "--loglevel", "WARNING")
        wait_http(f"http://127.0.0.1:{sim_port}/healthz", fleet)
        wait_http(f"http://127.0.0.1:{web_port}/healthz", fleet)
        console.print(f"simulator :{sim_port}, web :{web_port}, {workers} workers, beat - logs in {run_dir}")
        campaign_id = _create_campaign(env, leads, agents, console)
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{web_port}",
            headers={"Authorization": f"Bearer {env['DIALER_API_TOKEN']}"},
            timeout=10,
        )
        api.post(f"/api/campaigns/{campaign_id}/start").raise_for_status()
        from dialer.progress import report_table, watch_campaign

        def load() -> dict[str, Any]:
            fleet.check()
            return dict(api.get(f"/api/campaigns/{campaign_id}").json())

        final = watch_campaign(campaign_id=campaign_id, load=load, console=console, timeout=timeout)
        report = api.get(f"/api/campaigns/{campaign_id}/report").json()
        console.print(report_table(report))
        # The embedded database outlives a demo: count only this campaign's calls.
        sim_calls = [
            c
            for c in httpx.get(f"http://127.0.0.1:{sim_port}/sim/calls", timeout=10).json()
            if str(c["custom_identifier"]).startswith(f"c{campaign_id}-")
        ]
        code = _check_books(final, report, sim_calls, console)
        (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or "").strip().splitlines()
        console.print(f"[red]demo failed:[/] {' '.join(map(str, exc.cmd[2:]))}: {detail[-1] if detail else exc}")
    except (RuntimeError, httpx.HTTPError) as exc:
        console.print(f"[red]demo failed:[/] {exc}")
    finally:
        if code != 0 and campaign_id is not None:
            _cancel(env, campaign_id)
        fleet.stop()
        console.print("stopped simulator, web, workers and beat")
        if not keep_services and urls.started:
            console.print(f"stopped embedded {', '.join(stop_services(settings.var_dir))}")
    return code


def _cancel(env: dict[str, str], campaign_id: int) -> None:
    # A failed demo must not leave a running campaign for the next one's beat to dial.
    subprocess.run(
        [sys.executable, "-m", "dialer", "campaign", "cancel", str(campaign_id)], env=env, capture_output=True
    )


def _create_campaign(env: dict[str, str], leads: Path, agents: int, console: Console) -> int:
    agent_numbers = ",".join(f"+4420794600{i:02d}" for i in range(1, agents + 1))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "dialer",
            "campaign",
            "create",
            "--name",
            f"Demo {dt.date.today():%d %b}",
            "--caller-id",
            "+441134960000",
            "--agents",
            agent_numbers,
            "--max-attempts",
            "3",
            "--retry-delay",
            "3s",
            "--window",
            "00:00-24:00",
            "--days",
            "mon-sun",
            "--call-timeout",
            "60",
            "--json",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    campaign_id = int(json.loads(out.stdout)["id"])
    # The demo's window is the whole day so it runs at any hour; real campaigns keep 09:00-20:00.
    console.print(f"campaign {campaign_id} created with {agents} agents (window 00:00-24:00 for the demo)")
    imported = subprocess.run(
        [sys.executable, "-m", "dialer", "campaign", "import", str(campaign_id), str(leads), "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    summary = json.loads(imported.stdout)
    console.print(
        f"imported {leads.name}: {summary['total_rows']} rows, {summary['accepted']} leads, "
        f"{summary['rejected']} rejected {summary['rejects_by_reason']}"
    )
    return campaign_id


def _check_books(
    status: dict[str, Any], report: dict[str, Any], sim_calls: list[dict[str, Any]], console: Console
) -> int:
    """Print whether the report adds up against the simulator's own record; 0 when it does."""
    accounted = sum(report["leads"].values())
    open_leads = report["leads"]["pending"] + report["leads"]["in_call"]
    placed_by_us = report["attempts"] - report["outcomes"].get("ambiguous", 0)
    busy_agents = sum(1 for c in sim_calls if c.get("agent_was_busy"))
    checks = [
        ("campaign completed", status["state"] == "completed", status["state"]),
        ("every lead accounted for", accounted == report["total_leads"], f"{accounted} of {report['total_leads']}"),
        ("no lead left open", open_leads == 0, str(open_leads)),
        ("calls placed = simulator's calls", placed_by_us == len(sim_calls), f"{placed_by_us} vs {len(sim_calls)}"),
        (
            "attempts placed twice",
            len({c["custom_identifier"] for c in sim_calls}) == len(sim_calls),
            str(len(sim_calls) - len({c["custom_identifier"] for c in sim_calls})),
        ),
        ("agent rung while on a call", busy_agents == 0, str(busy_agents)),
    ]
    table = Table(title="Do the books add up?")
    for col in ("check", "result", "value"):
        table.add_column(col)
    for name, ok, value in checks:
        table.add_row(name, "[green]ok[/]" if ok else "[red]FAIL[/]", value)
    console.print(table)
    return 0 if all(ok for _, ok, _ in checks) else 1
