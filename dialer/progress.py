"""Rich views of a campaign: status table, live progress bars, the report table."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

FINAL_STATES = ("completed", "cancelled")


def status_table(data: dict[str, Any]) -> Table:
    """Render campaign_status() as a table."""
    reason = f" ({data['state_reason']})" if data.get("state_reason") else ""
    table = Table(title=f"Campaign {data['id']} · {data['name']} · {data['state']}{reason}")
    table.add_column("leads")
    table.add_column("count", justify="right")
    for status, n in data["leads"].items():
        table.add_row(status, str(n))
    table.add_row("[bold]total[/]", f"[bold]{data['total_leads']}[/]")
    table.add_row("calls in progress", str(data["calls_in_progress"]))
    for reason_name, n in sorted(data["pending_by_reason"].items()):
        table.add_row(f"pending: {reason_name}", str(n))
    return table


def report_table(data: dict[str, Any]) -> Group:
    """Render campaign_report() as tables."""
    c = data["campaign"]
    summary = Table(title=f"Report · campaign {c['id']} · {c['name']} · {c['state']}")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    summary.add_row("leads", str(data["total_leads"]))
    summary.add_row("contacted", str(data["contacted"]))
    summary.add_row("calls placed", str(data["attempts"]))
    summary.add_row("contact rate", f"{data['contact_rate']:.1%}")
    summary.add_row("answer rate", f"{data['answer_rate']:.1%}")
    summary.add_row("penetration", f"{data['penetration']:.1%}")
    summary.add_row("talk time (s)", str(data["talk_seconds"]))
    summary.add_row("average talk (s)", str(data["avg_talk_seconds"]))
    leads = Table(title="Leads by status")
    leads.add_column("status")
    leads.add_column("leads", justify="right")
    for status, n in data["leads"].items():
        leads.add_row(status, str(n))
    outcomes = Table(title="Attempts by outcome")
    outcomes.add_column("outcome")
    outcomes.add_column("attempts", justify="right")
    for status, n in data["outcomes"].items():
        if n:
            outcomes.add_row(status, str(n))
    agents = Table(title="Agents")
    for col in ("agent", "calls", "contacts", "talk (s)"):
        agents.add_column(col)
    for a in data["agents"]:
        agents.add_row(a["agent"], str(a["calls"]), str(a["contacts"]), str(a["talk_seconds"]))
    return Group(summary, leads, outcomes, agents)


def watch_campaign(
    *,
    campaign_id: int,
    load: Callable[[], dict[str, Any]],
    console: Console,
    interval: float = 1.0,
    timeout: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Show live progress until the campaign ends (or timeout / stop()); return the last status."""
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    data = load()
    done = progress.add_task("leads finished", total=data["total_leads"] or 1)
    contacted = progress.add_task("contacted", total=data["total_leads"] or 1)
    deadline = time.monotonic() + timeout if timeout else None
    with Live(Group(progress, status_table(data)), console=console, refresh_per_second=4) as live:
        while True:
            progress.update(done, completed=data["finished_leads"], total=data["total_leads"] or 1)
            progress.update(contacted, completed=data["leads"]["contacted"], total=data["total_leads"] or 1)
            live.update(Group(progress, status_table(data)))
            if data["state"] in FINAL_STATES or (deadline and time.monotonic() > deadline) or (stop and stop()):
                return data
            time.sleep(interval)
            data = load()
