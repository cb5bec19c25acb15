"""`dialer report`: a campaign's numbers as a table, JSON, the self-contained HTML page, or the lead-level CSV."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Annotated

import typer

from dialer import reports
from dialer.cli.common import JsonOpt, console, err, fail, session

FORMATS = ("table", "json", "csv", "html")


def report(
    campaign_id: Annotated[int, typer.Argument(metavar="ID")],
    format: Annotated[
        str, typer.Option("--format", help="table, json, csv (one row per lead, for the CRM) or html (charts).")
    ] = "table",
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a campaign's report (csv: one row per lead, for the CRM; html: one page with charts)."""
    fmt = "json" if as_json else format
    if fmt not in FORMATS:
        fail(f"--format {format!r} is not one of {', '.join(FORMATS)}")
    if fmt == "csv":
        with session() as s, _Sink(output) as out:
            # Streamed: a million leads never sit in memory at once.
            for chunk in reports.iter_leads_csv(session=s, campaign_id=campaign_id):
                out.write(chunk)
        if output:
            err.print(f"lead-level CSV written to {output}")
        return
    with session() as s:
        data = reports.campaign_report(session=s, campaign_id=campaign_id)
    if fmt == "table":
        from dialer.progress import report_table

        if output:
            with output.open("w", encoding="utf-8") as fh:
                from rich.console import Console

                Console(file=fh, width=120).print(report_table(data))
            err.print(f"report written to {output}")
        else:
            console.print(report_table(data))
        return
    if fmt == "json":
        text = json.dumps(data, indent=2, default=str) + "\n"
    else:
        from dialer.web.dashboard import render_report_html

        text = render_report_html(data)
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"report written to {output}")
    else:
        sys.stdout.write(text)


class _Sink:
    """Write to a file (created only once the campaign is known to exist) or to stdout."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.fh: IO[str] | None = None

    def __enter__(self) -> _Sink:
        return self

    def write(self, text: str) -> None:
        if self.path is None:
            sys.stdout.write(text)
            return
        if self.fh is None:
            self.fh = self.path.open("w", encoding="utf-8", newline="")
        self.fh.write(text)

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.close()
