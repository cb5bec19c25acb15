"""Rich views of a campaign: the status panel with progress bars, the live watch, the report tables.

They draw the dictionaries of `dialer.reports` (campaign_status, campaign_report) and compute
nothing of their own beyond formatting.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

FINAL_STATES = ("completed", "cancelled")
LEAD_STYLES = {
    "contacted": "green",
    "exhausted": "yellow",
    "dnc": "magenta",
    "invalid": "red",
    "cancelled": "bright_black",
    "in_call": "cyan",
    "pending": "blue",
}
SPARK = " ▁▂▃▄▅▆▇█"


def pct(x: float) -> str:
    """Format a 0..1 ratio as a percentage."""
    return f"{x:.1%}"


def duration(seconds: float | None) -> str:
    """Format seconds as 1h 02m, 3m 05s or 45s."""
    if seconds is None:
        return "-"
    s = max(0, int(round(seconds)))
    d, h, m, sec = s // 86400, s % 86400 // 3600, s % 3600 // 60, s % 60
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m:02d}m"
    if m:
        return f"{m}m {sec:02d}s"
    return f"{sec}s"


def sparkline(values: list[int]) -> str:
    """Draw a list of counts as one line of block characters."""
    top = max(values, default=0)
    if not top:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, round(v / top * (len(SPARK) - 1)))] if v else SPARK[0] for v in values)


def _title(data: dict[str, Any]) -> Text:
    reason = f" ({data['state_reason']})" if data.get("state_reason") else ""
    style = {"running": "bold green", "paused": "bold yellow", "completed": "bold blue"}.get(data["state"], "bold")
    text = Text(f"Campaign {data['id']} · {data['name']} · ")
    text.append(data["state"].upper(), style=style)
    text.append(reason)
    return text


def _bar_row(table: Table, label: str, done: int, total: int, style: str) -> None:
    bar = ProgressBar(total=max(total, 1), completed=done, width=40, complete_style=style, finished_style=style)
    table.add_row(label, bar, f"{done:,}/{total:,}", pct(done / total if total else 0))


def progress_bars(data: dict[str, Any]) -> Table:
    """Bars: leads finished, contacted, and each final status, out of all leads."""
    total = data["total_leads"]
    table = Table.grid(padding=(0, 1))
    for _ in range(4):
        table.add_column()
    _bar_row(table, "finished", data["finished_leads"], total, "green")
    _bar_row(table, "contacted", data["leads"]["contacted"], total, "bright_green")
    for status in ("exhausted", "dnc", "invalid", "cancelled"):
        if data["leads"].get(status):
            _bar_row(table, status, data["leads"][status], total, LEAD_STYLES[status])
    return table


def status_table(data: dict[str, Any]) -> Table:
    """Render campaign_status() as counters: leads by status, calls, dialable and blocked leads, agents, ETA."""
    table = Table(title=_title(data), title_justify="left")
    table.add_column("leads")
    table.add_column("count", justify="right")
    table.add_column("now")
    table.add_column("", justify="right")
    agents = data.get("agents_summary") or {}
    pace = data.get("pace") or {}
    now_rows: list[tuple[str, str]] = [
        ("calls in progress", f"{data['calls_in_progress']:,}"),
        ("dialable now", f"{data.get('dialable_now', 0):,}"),
        *((f"blocked: {k.replace('_', ' ')}", f"{n:,}") for k, n in sorted(data.get("blocked_by_reason", {}).items())),
        (
            "agents free / on call / paused",
            f"{agents.get('free', 0)} / {agents.get('on_call', 0)} / {agents.get('paused', 0)}",
        ),
        ("pace (calls/min)", f"{pace.get('calls_per_minute', 0):.1f}"),
        ("penetration", pct(data.get("penetration", 0.0))),
        ("ETA", duration(data.get("eta_seconds")) if data.get("eta_seconds") is not None else "-"),
    ]
    lead_rows = [(Text(s, style=LEAD_STYLES.get(s, "")), f"{n:,}") for s, n in data["leads"].items()]
    lead_rows.append((Text("total", style="bold"), f"{data['total_leads']:,}"))
    for i in range(max(len(lead_rows), len(now_rows))):
        left = lead_rows[i] if i < len(lead_rows) else ("", "")
        right = now_rows[i] if i < len(now_rows) else ("", "")
        table.add_row(left[0], left[1], right[0], right[1])
    return table


def status_view(data: dict[str, Any]) -> Group:
    """Render campaign_status() as progress bars above the counters."""
    return Group(status_table(data), progress_bars(data))


def report_table(data: dict[str, Any]) -> Group:
    """Render campaign_report() as tables: summary, leads, outcomes, waiting leads, passes, causes, agents, imports."""
    c = data["campaign"]
    summary = Table(title=f"Report · campaign {c['id']} · {c['name']} · {c['state']}", title_justify="left")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    for label, value in (
        ("leads", f"{data['total_leads']:,}"),
        ("finished", f"{data['finished_leads']:,}"),
        ("leads attempted", f"{data.get('leads_attempted', 0):,}"),
        ("contacted", f"{data['contacted']:,}"),
        ("calls placed", f"{data['attempts']:,}"),
        ("contact rate (contacted / attempted)", pct(data["contact_rate"])),
        ("answer rate (completed / placed)", pct(data["answer_rate"])),
        ("penetration", pct(data["penetration"])),
        ("talk time", duration(data["talk_seconds"])),
        ("average talk (s)", f"{data['avg_talk_seconds']:.1f}"),
        ("dialable now", f"{data.get('dialable_now', 0):,}"),
        ("ETA", duration(data.get("eta_seconds")) if data.get("eta_seconds") is not None else "-"),
    ):
        summary.add_row(label, value)
    leads = Table(title="Leads by status", title_justify="left")
    leads.add_column("status")
    leads.add_column("leads", justify="right")
    for status, n in data["leads"].items():
        leads.add_row(Text(status, style=LEAD_STYLES.get(status, "")), f"{n:,}")
    outcomes = Table(title="Attempts by outcome", title_justify="left")
    outcomes.add_column("outcome")
    outcomes.add_column("attempts", justify="right")
    for status, n in data["outcomes"].items():
        if n:
            outcomes.add_row(status, f"{n:,}")
    parts: list[RenderableType] = [summary, leads, outcomes]
    if data.get("blocked_by_reason"):
        blocked = Table(title="Why pending leads wait", title_justify="left")
        blocked.add_column("reason")
        blocked.add_column("leads", justify="right")
        for reason, n in data["blocked_by_reason"].items():
            blocked.add_row(reason.replace("_", " "), f"{n:,}")
        parts.append(blocked)
    if data.get("hangup_causes"):
        causes = Table(title="Hangup causes", title_justify="left")
        causes.add_column("cause")
        causes.add_column("calls", justify="right")
        for cause, n in data["hangup_causes"].items():
            causes.add_row(cause, f"{n:,}")
        parts.append(causes)
    if data.get("passes"):
        passes = Table(title="Pass report (contact rate by attempt number)", title_justify="left")
        for col in ("attempt", "calls", "contacts", "contact rate"):
            passes.add_column(col, justify="right")
        for p in data["passes"]:
            passes.add_row(str(p["attempt"]), f"{p['calls']:,}", f"{p['contacts']:,}", pct(p["contact_rate"]))
        parts.append(passes)
    if data.get("calls_per_hour"):
        hours = data["calls_per_hour"][-48:]
        line = sparkline([h["calls"] for h in hours])
        parts.append(Text(f"Calls per hour (last {len(hours)} h, UTC from {hours[0]['t'][:13]}): {line}"))
    agents = Table(title="Agents", title_justify="left")
    for col in ("agent", "state", "calls", "contacts", "talk", "idle"):
        agents.add_column(col, justify="left" if col in ("agent", "state") else "right")
    for a in data["agents"]:
        agents.add_row(
            a["agent"],
            a.get("state", ""),
            f"{a['calls']:,}",
            f"{a['contacts']:,}",
            duration(a["talk_seconds"]),
            duration(a.get("idle_seconds", 0)),
        )
    parts.append(agents)
    if data.get("import_jobs"):
        imports = Table(title="Imports", title_justify="left")
        for col in ("file", "rows", "accepted", "rejected", "rejects by reason"):
            imports.add_column(col, justify="right" if col in ("rows", "accepted", "rejected") else "left")
        for j in data["import_jobs"]:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(j["rejects_by_reason"].items())) or "-"
            imports.add_row(j["filename"], f"{j['total_rows']:,}", f"{j['accepted']:,}", f"{j['rejected']:,}", reasons)
        parts.append(imports)
    generated = data.get("generated_at")
    if generated:
        parts.append(Text(f"generated {dt.datetime.fromisoformat(generated):%Y-%m-%d %H:%M:%S %Z}", style="dim"))
    return Group(*parts)


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
    data = load()
    deadline = time.monotonic() + timeout if timeout else None
    with Live(status_view(data), console=console, refresh_per_second=4) as live:
        while True:
            live.update(status_view(data))
            if data["state"] in FINAL_STATES or (deadline and time.monotonic() > deadline) or (stop and stop()):
                return data
            time.sleep(interval)
            data = load()
