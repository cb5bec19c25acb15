"""`dialer campaign`: create, load, run and watch campaigns."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dialer import campaigns as campaign_service
from dialer import reports
from dialer.cli.common import CliError, JsonOpt, console, emit_json, fail, now, session
from dialer.policy import merge_rules, parse_days, parse_duration, parse_time, parse_window, retry_delay_policy

app = typer.Typer(help="Create, load, run and watch campaigns.", no_args_is_help=True)


def _load_policy(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read policy file {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (ValueError, json.JSONDecodeError) as exc:
        raise CliError(f"policy file {path} is not valid {path.suffix[1:] or 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise CliError(f"policy file {path} must hold a table of outcomes")
    return data


@app.command("create")
def campaign_create(
    name: Annotated[str, typer.Option(help="Campaign name.")],
    caller_id: Annotated[str, typer.Option(help="The DID shown to the customer.")],
    agents: Annotated[str, typer.Option(help="Agent numbers, comma separated: 101,102.")],
    cps: Annotated[float | None, typer.Option(help="This campaign's calls per second (under DIALER_MAX_CPS).")] = None,
    max_attempts: Annotated[int, typer.Option(help="Charged attempts per lead.")] = 3,
    retry_delay: Annotated[str | None, typer.Option(help="Redial delay for every outcome: 30m, 2h.")] = None,
    policy: Annotated[Path | None, typer.Option(help="Per-outcome policy file (JSON or TOML).")] = None,
    window: Annotated[str, typer.Option(help="Calling window in the lead's local time.")] = "09:00-20:00",
    days: Annotated[str, typer.Option(help="Calling days: mon-fri, mon,wed,fri.")] = "mon-fri",
    timezone: Annotated[str, typer.Option(help="Zone for numbers with no zone of their own.")] = "Europe/London",
    region: Annotated[str, typer.Option(help="Default region for national numbers.")] = "GB",
    call_timeout: Annotated[int, typer.Option(help="Maximum call length in seconds.")] = 300,
    start_at: Annotated[str | None, typer.Option(help="Start by itself at this time (campaign zone).")] = None,
    end_at: Annotated[str | None, typer.Option(help="Stop by itself at this time (campaign zone).")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="Recurring batch, cron in the campaign zone: '0 8 * * *'.")
    ] = None,
    schedule_hours: Annotated[float | None, typer.Option(help="How long each recurring batch runs.")] = None,
    holidays: Annotated[str | None, typer.Option(help="No calls on this country's public holidays: GB.")] = None,
    daily_cap: Annotated[int | None, typer.Option(help="Calls per number per local day, across campaigns.")] = None,
    min_gap: Annotated[str | None, typer.Option(help="Least time between two calls to a number: 4h.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a campaign; prints its id."""
    with session() as s:
        overrides: dict[str, Any] = {}
        if retry_delay:
            overrides = retry_delay_policy(parse_duration(retry_delay))
        if policy:
            for outcome, rule in _load_policy(policy).items():
                overrides.setdefault(outcome, {}).update(rule if isinstance(rule, dict) else {})
            merge_rules(overrides)
        campaign = campaign_service.create_campaign(
            session=s,
            name=name,
            caller_id=caller_id,
            agents=agents.split(","),
            window=parse_window(window),
            days=parse_days(days),
            timezone=timezone,
            region=region,
            cps=cps,
            max_attempts=max_attempts,
            call_timeout=call_timeout,
            retry_policy=overrides,
            start_at=parse_time(start_at, timezone, "--start-at") if start_at else None,
            end_at=parse_time(end_at, timezone, "--end-at") if end_at else None,
            schedule_cron=schedule,
            schedule_hours=schedule_hours,
            holidays_country=holidays,
            daily_cap_per_number=daily_cap,
            min_gap_seconds=parse_duration(min_gap) if min_gap else 0,
        )
        campaign_id = campaign.id
    if as_json:
        emit_json({"id": campaign_id})
    else:
        print(campaign_id)


@app.command("import")
def campaign_import(
    campaign_id: Annotated[int, typer.Argument(metavar="ID")],
    file: Annotated[Path, typer.Argument(metavar="FILE")],
    phone_column: Annotated[str | None, typer.Option(help="The column holding the number.")] = None,
    rejects: Annotated[Path | None, typer.Option(help="Write every rejected row here (CSV).")] = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding of a CSV (default: detected).")] = None,
    sheet: Annotated[str | None, typer.Option(help="XLSX sheet to read (default: the first).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load leads from a CSV or XLSX file into a campaign (all or nothing)."""
    from dialer.importer import ImportFailed, import_leads
    from dialer.importing.display import import_progress, source_line, summary_table

    if not file.exists():
        fail(f"{file}: no such file")
    with session() as s:
        campaign = campaign_service.get_campaign(session=s, campaign_id=campaign_id)
        # A bar only for a person watching: never in --json output or when stdout is a pipe or file.
        show = console.is_terminal and not as_json
        with import_progress(console, f"importing {file.name}", show=show) as progress:
            try:
                report = import_leads(
                    session=s,
                    campaign=campaign,
                    path=file,
                    phone_column=phone_column,
                    rejects_path=rejects,
                    encoding=encoding,
                    sheet=sheet,
                    progress=progress,
                )
            except ImportFailed as exc:
                raise CliError(str(exc)) from None
        data = report.to_dict()
    if as_json:
        emit_json(data)
        return
    console.print(summary_table(f"Import into campaign {campaign_id}: {data['filename']}", data))
    console.print(source_line(data), highlight=False)
    if rejects and data["rejected"]:
        console.print(f"rejected rows written to {rejects}", highlight=False)


def _control(action: Callable[..., Any], campaign_id: int, **kwargs: Any) -> None:
    with session() as s:
        campaign = action(session=s, campaign_id=campaign_id, **kwargs)
        console.print(f"campaign {campaign.id} is {campaign.state.value}")


@app.command("start")
def campaign_start(campaign_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Start dialling (or schedule, when --start-at is ahead)."""
    _control(campaign_service.start_campaign, campaign_id, now=now())


@app.command("pause")
def campaign_pause(campaign_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Stop new dials at once; calls in progress go on."""
    _control(campaign_service.pause_campaign, campaign_id, reason="paused by operator")


@app.command("resume")
def campaign_resume(campaign_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Let a paused campaign dial again."""
    _control(campaign_service.resume_campaign, campaign_id)


@app.command("cancel")
def campaign_cancel(campaign_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """End a campaign for good; waiting leads are cancelled."""
    _control(campaign_service.cancel_campaign, campaign_id)


@app.command("status")
def campaign_status(
    campaign_id: Annotated[int, typer.Argument(metavar="ID")],
    watch: Annotated[bool, typer.Option(help="Refresh until the campaign ends (Ctrl-C stops watching).")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes with --watch.")] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Show a campaign's progress: bars, leads by status, dialable and blocked leads, calls, agents, ETA."""
    from dialer.progress import status_view, watch_campaign

    if watch and not as_json:
        try:
            watch_campaign(
                campaign_id=campaign_id, load=lambda: _status(campaign_id), console=console, interval=max(0.2, interval)
            )
        except KeyboardInterrupt:
            pass
        return
    data = _status(campaign_id)
    if as_json:
        emit_json(data)
    else:
        console.print(status_view(data))


def _status(campaign_id: int) -> dict[str, Any]:
    with session() as s:
        return reports.campaign_status(session=s, campaign_id=campaign_id)


@app.command("list")
def campaign_list(as_json: JsonOpt = False) -> None:
    """List campaigns with their state and progress."""
    from dialer.progress import duration, pct

    with session() as s:
        rows = [
            reports.campaign_status(session=s, campaign_id=c.id) for c in campaign_service.list_campaigns(session=s)
        ]
    if as_json:
        emit_json(rows)
        return
    table = Table(title="Campaigns")
    for col in ("id", "name", "state", "leads", "finished", "done", "contacted", "in call", "dialable now", "ETA"):
        table.add_column(col, justify="right" if col not in ("name", "state") else "left")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["name"],
            r["state"],
            f"{r['total_leads']:,}",
            f"{r['finished_leads']:,}",
            pct(r["finished_leads"] / r["total_leads"] if r["total_leads"] else 0),
            f"{r['contacted']:,}",
            f"{r['leads']['in_call']:,}",
            f"{r['dialable_now']:,}",
            duration(r["eta_seconds"]) if r["eta_seconds"] is not None else "-",
        )
    console.print(table)
