"""The `dialer` command line (typer + rich). Every read command takes --json: one JSON document."""

from __future__ import annotations

import typer

from dialer.cli import campaign, db, dnc, events, lead, processes, report

app = typer.Typer(help="Bulk outbound dialer for Acefone click-to-call.", no_args_is_help=True)
app.add_typer(db.app, name="db")
app.add_typer(campaign.app, name="campaign")
app.add_typer(dnc.app, name="dnc")
app.add_typer(lead.app, name="lead")
app.add_typer(processes.services_app, name="services")
app.command("report")(report.report)
app.command("events")(events.events)
for _command in (processes.worker, processes.beat, processes.web, processes.simulate, processes.demo):
    app.command(_command.__name__)(_command)


def main() -> None:
    """Entry point of the `dialer` console script."""
    app()
