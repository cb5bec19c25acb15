"""The `dialer` command line (typer + rich). Every read command takes --json: one JSON document."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from dialer import campaigns as campaign_service
from dialer import dnc as dnc_service
from dialer import reports
from dialer.config import get_settings
from dialer.logs import configure_logging
from dialer.policy import PolicyError, merge_rules, parse_days, parse_duration, parse_window, retry_delay_policy
from dialer.states import IllegalTransition

app = typer.Typer(help="Bulk outbound dialer for Acefone click-to-call.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
campaign_app = typer.Typer(help="Create, load, run and watch campaigns.", no_args_is_help=True)
dnc_app = typer.Typer(help="The do-not-call list.", no_args_is_help=True)
services_app = typer.Typer(help="The embedded PostgreSQL and Redis under ./var/.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(campaign_app, name="campaign")
app.add_typer(dnc_app, name="dnc")
app.add_typer(services_app, name="services")

console = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else.")]


class CliError(Exception):
    """An error the user can act on: printed as one line, exit code 1."""


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit non-zero."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def session() -> Iterator[Any]:
    """Open a committed session; known domain errors become one-line CLI errors."""
    from dialer.campaigns import CampaignNotFound
    from dialer.db import session_scope

    try:
        with session_scope() as s:
            yield s
    except (CampaignNotFound, PolicyError, IllegalTransition, CliError, ValueError) as exc:
        fail(str(exc))


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(data, default=str, indent=2) + "\n")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- db -------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest revision (Alembic)."""
    upgrade_schema()
    console.print("schema is up to date")


def upgrade_schema() -> None:
    """Run the Alembic migrations up to head."""
    from alembic import command
    from alembic.config import Config

    root = Path(__file__).resolve().parent.parent
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "migrations"))
    command.upgrade(cfg, "head")


# --- campaigns ------------------------------------------------------------------------------


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


@campaign_app.command("create")
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
    start_at: Annotated[str | None, typer.Option(help="ISO time to start by itself.")] = None,
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
        start = None
        if start_at:
            try:
                start = dt.datetime.fromisoformat(start_at)
            except ValueError:
                raise CliError(f"--start-at {start_at!r} is not an ISO time such as 2026-12-01T09:00") from None
            if start.tzinfo is None:
                from zoneinfo import ZoneInfo

                start = start.replace(tzinfo=ZoneInfo(timezone))
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
            start_at=start,
        )
        campaign_id = campaign.id
    if as_json:
        emit_json({"id": campaign_id})
    else:
        print(campaign_id)


@campaign_app.command("import")
def campaign_import(
    campaign_id: Annotated[int, typer.Argument(metavar="ID")],
    file: Annotated[Path, typer.Argument(metavar="FILE")],
    phone_column: Annotated[str | None, typer.Option(help="The column holding the number.")] = None,
    rejects: Annotated[Path | None, typer.Option(help="Write every rejected row here (CSV).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load leads from a CSV file into a campaign (all or nothing)."""
    from dialer.importer import ImportFailed, import_leads

    if not file.exists():
        fail(f"{file}: no such file")
    with session() as s:
        campaign = campaign_service.get_campaign(session=s, campaign_id=campaign_id)
        try:
            report = import_leads(
                session=s, campaign=campaign, path=file, phone_column=phone_column, rejects_path=rejects
            )
        except ImportFailed as exc:
            raise CliError(str(exc)) from None
        data = report.to_dict()
    if as_json:
        emit_json(data)
        return
    table = Table(title=f"Import into campaign {campaign_id}: {file.name}")
    table.add_column("rows")
    table.add_column("count", justify="right")
    table.add_row("total", str(data["total_rows"]))
    table.add_row("accepted", str(data["accepted"]))
    table.add_row("rejected", str(data["rejected"]))
    for reason, n in sorted(data["rejects_by_reason"].items()):
        table.add_row(f"  {reason}", str(n))
    console.print(table)
    if rejects and data["rejected"]:
        console.print(f"rejected rows written to {rejects}")


def _control(action: Callable[..., Any], campaign_id: int, **kwargs: Any) -> None:
    with session() as s:
        campaign = action(session=s, campaign_id=campaign_id, **kwargs)
        console.print(f"campaign {campaign.id} is {campaign.state.value}")


@campaign_app.command("start")
def campaign_start(campaign_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Start dialling (or schedule, when --start-at is ahead)."""
    _control(campaign_service.start_campaign, campaign_id, now=_now())


@campaign_app.command("pause")
def campaign_pause(campaign_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Stop new dials at once; calls in progress go on."""
    _control(campaign_service.pause_campaign, campaign_id, reason="paused by operator")


@campaign_app.command("resume")
def campaign_resume(campaign_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Let a paused campaign dial again."""
    _control(campaign_service.resume_campaign, campaign_id)


@campaign_app.command("cancel")
def campaign_cancel(campaign_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """End a campaign for good; waiting leads are cancelled."""
    _control(campaign_service.cancel_campaign, campaign_id)


@campaign_app.command("status")
def campaign_status(
    campaign_id: Annotated[int, typer.Argument(metavar="ID")],
    watch: Annotated[bool, typer.Option(help="Refresh until the campaign ends (Ctrl-C stops watching).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a campaign's state and its leads by status."""
    from dialer.progress import watch_campaign

    if watch and not as_json:
        watch_campaign(campaign_id=campaign_id, load=lambda: _status(campaign_id), console=console)
        return
    data = _status(campaign_id)
    if as_json:
        emit_json(data)
    else:
        from dialer.progress import status_table

        console.print(status_table(data))


def _status(campaign_id: int) -> dict[str, Any]:
    with session() as s:
        return reports.campaign_status(session=s, campaign_id=campaign_id)


@campaign_app.command("list")
def campaign_list(as_json: JsonOpt = False) -> None:
    """List campaigns with their state and progress."""
    with session() as s:
        rows = [
            reports.campaign_status(session=s, campaign_id=c.id) for c in campaign_service.list_campaigns(session=s)
        ]
    if as_json:
        emit_json(rows)
        return
    table = Table(title="Campaigns")
    for col in ("id", "name", "state", "leads", "finished", "in call"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["name"],
            r["state"],
            str(r["total_leads"]),
            str(r["finished_leads"]),
            str(r["leads"]["in_call"]),
        )
    console.print(table)


# --- reports --------------------------------------------------------------------------------


@app.command("report")
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


# --- DNC ------------------------------------------------------------------------------------


def _normalise_all(numbers: list[str], region: str) -> list[str]:
    from dialer.phones import normalise

    out = []
    for raw in numbers:
        n = normalise(raw, region)
        if n.e164 is None:
            raise CliError(f"{raw!r} is not a phone number we can list ({n.reason}: {n.message})")
        out.append(n.e164)
    return out


@dnc_app.command("add")
def dnc_add(
    numbers: Annotated[list[str], typer.Argument(metavar="NUMBER...")],
    reason: Annotated[str | None, typer.Option(help="Why (kept with the number).")] = None,
    region: Annotated[str, typer.Option(help="Region for national numbers.")] = "GB",
) -> None:
    """Add numbers to the do-not-call list."""
    with session() as s:
        added = dnc_service.add_numbers(session=s, numbers=_normalise_all(numbers, region), reason=reason)
    console.print(f"{added} number(s) added, {len(numbers) - added} already listed")


@dnc_app.command("remove")
def dnc_remove(
    numbers: Annotated[list[str], typer.Argument(metavar="NUMBER...")],
    region: Annotated[str, typer.Option(help="Region for national numbers.")] = "GB",
) -> None:
    """Remove numbers from the do-not-call list."""
    with session() as s:
        removed = dnc_service.remove_numbers(session=s, numbers=_normalise_all(numbers, region))
    console.print(f"{removed} number(s) removed")


@dnc_app.command("import")
def dnc_import(
    file: Annotated[Path, typer.Argument(metavar="FILE")],
    phone_column: Annotated[str | None, typer.Option(help="The column holding the number.")] = None,
    region: Annotated[str, typer.Option(help="Region for national numbers.")] = "GB",
    as_json: JsonOpt = False,
) -> None:
    """Add every number of a CSV file to the do-not-call list."""
    from dialer.importer import ImportFailed, read_numbers

    try:
        rows = read_numbers(path=file, phone_column=phone_column, region=region)
    except ImportFailed as exc:
        fail(str(exc))
    with session() as s:
        added = dnc_service.add_numbers(session=s, numbers=[e for e in rows.valid], reason=f"imported from {file.name}")
    data = {"total_rows": rows.total, "valid": len(rows.valid), "added": added, "rejected": rows.rejected}
    if as_json:
        emit_json(data)
    else:
        console.print(
            f"{data['total_rows']} rows: {added} added, {len(rows.valid) - added} already listed, "
            f"{rows.rejected} not phone numbers"
        )


@dnc_app.command("list")
def dnc_list(as_json: JsonOpt = False) -> None:
    """Show the do-not-call list."""
    with session() as s:
        rows = [
            {"phone": n.phone_e164, "reason": n.reason, "added_at": n.added_at.isoformat()}
            for n in dnc_service.list_numbers(session=s)
        ]
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"Do not call ({len(rows)})")
    for col in ("phone", "reason", "added"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["phone"]), str(r["reason"] or ""), str(r["added_at"])[:19])
    console.print(table)


# --- processes ------------------------------------------------------------------------------


def _export_urls() -> None:
    """Resolve the servers once and hand them to child processes through the environment."""
    from dialer.embedded import resolve_urls

    urls = resolve_urls()
    os.environ["DIALER_DATABASE_URL"] = urls.database_url
    os.environ["DIALER_REDIS_URL"] = urls.redis_url


@app.command("worker")
def worker(
    concurrency: Annotated[int, typer.Option(help="Dial processes in this worker.")] = 4,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker that places calls (run as many as you like, on any machine)."""
    _export_urls()
    import socket
    import uuid

    name = f"dialer-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "worker",
            "-Q",
            get_settings().redis_prefix,
            "-n",
            name,
            "-c",
            str(concurrency),
            "--loglevel",
            loglevel,
            "--without-gossip",
            "--without-mingle",
        ],
    )


@app.command("beat")
def beat(loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO") -> None:
    """Run the scheduler: pacer tick (1 s) and reconciler. One is enough; a second is harmless."""
    _export_urls()
    schedule = get_settings().var_dir / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    os.execv(
        sys.executable,
        [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "--loglevel", loglevel, "-s", str(schedule)],
    )


@app.command("web")
def web(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the webhook receiver, the REST API and /metrics."""
    import uvicorn

    from dialer.web.app import create_app

    settings = get_settings()
    missing = [
        name
        for name, value in (("DIALER_WEBHOOK_TOKEN", settings.webhook_token), ("DIALER_API_TOKEN", settings.api_token))
        if not value.get_secret_value()
    ]
    if missing:
        fail(f"set {' and '.join(missing)}: the receiver and the API refuse every request without a token")
    _export_urls()
    configure_logging()
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")


@app.command("simulate")
def simulate(
    host: Annotated[str, typer.Option(help="Address to listen on (localhost by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8090,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same outcomes.")] = 1,
    speed: Annotated[float, typer.Option(help="Time scale: 0.05 plays a 60 s call in 3 s.")] = 1.0,
    answer_rate: Annotated[float, typer.Option(help="Share of customers who answer.")] = 0.5,
    busy_rate: Annotated[float, typer.Option(help="Share of busy customers.")] = 0.15,
    no_answer_rate: Annotated[float, typer.Option(help="Share of customers who do not answer.")] = 0.2,
    agent_miss_rate: Annotated[float, typer.Option(help="Share of calls the agent misses.")] = 0.05,
    form_rate: Annotated[float, typer.Option(help="Share of webhooks sent as forms, not JSON.")] = 0.0,
    caller_ids: Annotated[str | None, typer.Option(help="Valid caller ids, comma separated (else any).")] = None,
    offline_agents: Annotated[str | None, typer.Option(help="Agents Acefone reports offline.")] = None,
    record: Annotated[Path | None, typer.Option(help="Write the ground truth (JSON lines) here.")] = None,
) -> None:
    """Serve a simulated Acefone: click_to_call, played calls, webhooks to DIALER_PUBLIC_URL."""
    from dialer.simulator import SimulatorConfig, serve

    settings = get_settings()
    token = settings.acefone_token.get_secret_value()
    if not token:
        fail("set DIALER_ACEFONE_TOKEN: the simulator accepts requests carrying that token only")
    serve(
        SimulatorConfig(
            host=host,
            port=port,
            token=token,
            webhook_url=settings.public_url.rstrip("/") + "/webhooks/acefone",
            webhook_token=settings.webhook_token.get_secret_value(),
            caller_ids=caller_ids.split(",") if caller_ids else None,
            offline_agents=offline_agents.split(",") if offline_agents else [],
            seed=seed,
            speed=speed,
            answer_rate=answer_rate,
            busy_rate=busy_rate,
            no_answer_rate=no_answer_rate,
            agent_miss_rate=agent_miss_rate,
            form_rate=form_rate,
            record_path=str(record) if record else None,
            account_timezone=settings.account_timezone,
        )
    )


@app.command("demo")
def demo(
    leads: Annotated[Path, typer.Option(help="Lead list to dial.")] = Path("campaigns/sample_leads.csv"),
    agents: Annotated[int, typer.Option(help="Simulated agents.")] = 20,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600,
    keep_services: Annotated[bool, typer.Option(help="Leave the embedded servers running afterwards.")] = False,
) -> None:
    """Run a whole campaign against the simulator: every process started here, stopped at the end."""
    from dialer.demo import run_demo

    code = run_demo(
        leads=leads, agents=agents, workers=workers, timeout=timeout, keep_services=keep_services, console=console
    )
    raise typer.Exit(code)


@services_app.command("stop")
def services_stop() -> None:
    """Stop this checkout's embedded PostgreSQL and Redis."""
    from dialer.embedded import stop_services

    stopped = stop_services(get_settings().var_dir)
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@services_app.command("status")
def services_status(as_json: JsonOpt = False) -> None:
    """Show which servers this checkout uses (starting the embedded ones if needed)."""
    from dialer.embedded import resolve_urls

    urls = resolve_urls()
    data = {"database_url": _hide_password(urls.database_url), "redis_url": _hide_password(urls.redis_url)}
    if as_json:
        emit_json(data)
    else:
        for k, v in data.items():
            console.print(f"{k}: {v}")


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def main() -> None:
    """Entry point of the `dialer` console script."""
    app()
