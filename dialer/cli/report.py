"""`dialer report`: a campaign's numbers as a table, JSON or the lead-level CSV."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from dialer import reports
from dialer.cli.common import JsonOpt, console, err, fail, session


def report(
    campaign_id: Annotated[int, typer.Argument(metavar="ID")],
    format: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a campaign's report (csv: one row per lead, for the CRM)."""
    fmt = "json" if as_json else format
    if fmt not in ("table", "json", "csv"):
        fail(f"--format {format!r} is not one of table, json, csv")
    with session() as s:
        text = reports.leads_csv(session=s, campaign_id=campaign_id) if fmt == "csv" else None
        data = reports.campaign_report(session=s, campaign_id=campaign_id) if fmt != "csv" else None
    if fmt == "json":
        text = json.dumps(data, indent=2) + "\n"
    if text is not None:
        if output:
            output.write_text(text)
            err.print(f"report written to {output}")
        else:
            sys.stdout.write(text)
        return
    from dialer.progress import report_table

    assert data is not None
    console.print(report_table(data))
