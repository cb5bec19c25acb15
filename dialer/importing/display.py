"""What a manager sees on a terminal during and after an import: a progress bar and a summary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

# Plain words for the reason codes, in the importer's order.
REASON_LABELS = {
    "missing_number": "no number",
    "unparseable": "not a number",
    "invalid_number": "invalid number",
    "not_dialable_type": "not dialable (premium, freephone...)",
    "invalid_timezone": "bad timezone",
    "invalid_callback_at": "bad callback time",
    "invalid_priority": "bad priority",
    "unknown_agent": "unknown agent",
    "duplicate_in_file": "duplicate in the file",
    "dnc": "on the do-not-call list",
    "duplicate_in_campaign": "already in the campaign",
}


@contextmanager
def import_progress(console: Console, label: str, *, show: bool) -> Iterator[Callable[[float, int], None] | None]:
    """Yield a progress callback drawing a bar on `console` (None when `show` is false)."""
    if not show:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=1.0, rows=0)

        def update(done: float, rows: int) -> None:
            bar.update(task, completed=done, rows=rows)

        yield update


def summary_table(title: str, data: dict[str, Any], *, kept: str = "accepted") -> Table:
    """Return the summary of an import report (ImportReport.to_dict() or the DNC report)."""
    table = Table(title=title)
    table.add_column("rows")
    table.add_column("count", justify="right")
    table.add_row("total", f"{data['total_rows']:,}")
    table.add_row(kept, f"{data[kept]:,}", style="green")
    table.add_row("rejected", f"{data['rejected']:,}", style="red" if data["rejected"] else None)
    for reason, n in data["rejects_by_reason"].items():
        table.add_row(f"  {reason}", f"{n:,}", style="dim")
    for extra in ("duplicates", "dnc", "callbacks", "already_listed"):
        if extra in data:
            table.add_row(REASON_LABELS.get(extra, extra.replace("_", " ")), f"{data[extra]:,}")
    return table


def source_line(data: dict[str, Any]) -> str:
    """Return one line saying how the file was read."""
    source = data.get("source") or {}
    if source.get("format") == "xlsx":
        how = f"XLSX, sheet {source.get('sheet')!r}"
    else:
        how = f"CSV, {source.get('encoding')}, {source.get('delimiter')}-separated"
    phone = data.get("phone_column")
    return f"read as {how}; numbers from column {phone!r}" if phone else f"read as {how}"
