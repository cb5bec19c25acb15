"""`dialer events`: the stored webhooks, e.g. the orphans nobody could match to a call."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from dialer.cli.common import JsonOpt, console, emit_json, session
from dialer.logs import mask_phone
from dialer.webhooks import list_events


def events(
    orphans: Annotated[bool, typer.Option("--orphans", help="Only events no call could be matched to.")] = False,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List stored webhook events (newest first)."""
    with session() as s:
        rows = list_events(session=s, status="orphan" if orphans else None, limit=limit)
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"Webhook events ({'orphans' if orphans else 'all'}, newest {limit})")
    for col in ("id", "received", "status", "kind", "custom_identifier", "copies", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["received_at"])[:19],
            str(r["status"]),
            str(r["kind"] or ""),
            str(r["custom_identifier"] or ""),
            str(r["copies"]),
            mask_phone(str(r["orphan_reason"] or "")),
        )
    console.print(table)
