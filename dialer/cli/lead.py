"""`dialer lead`: one lead at a time (scheduled callbacks)."""

from __future__ import annotations

from typing import Annotated

import typer

from dialer.cli.common import JsonOpt, console, emit_json, now, session
from dialer.leads import schedule_callback
from dialer.models import Campaign, Lead
from dialer.policy import parse_time

app = typer.Typer(help="Single leads: scheduled callbacks.", no_args_is_help=True)


@app.command("callback")
def lead_callback(
    lead_id: Annotated[int, typer.Argument(metavar="LEAD")],
    at: Annotated[str, typer.Option(help="When to call back (campaign zone unless it carries an offset).")],
    as_json: JsonOpt = False,
) -> None:
    """Schedule a callback: dialled first when due, still inside the calling window."""
    with session() as s:
        lead = s.get(Lead, lead_id)
        campaign = s.get(Campaign, lead.campaign_id) if lead else None
        zone = campaign.timezone if campaign else "UTC"
        lead = schedule_callback(session=s, lead_id=lead_id, at=parse_time(at, zone, "--at"), now=now())
        data = {"lead_id": lead.id, "callback_at": lead.callback_at.isoformat() if lead.callback_at else None}
    if as_json:
        emit_json(data)
    else:
        console.print(f"lead {lead_id} will be called back at {data['callback_at']}")
