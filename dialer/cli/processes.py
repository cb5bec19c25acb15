"""The long-running processes: worker, beat, web, simulator, demo, and the embedded servers."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from dialer.cli.common import JsonOpt, console, emit_json, fail
from dialer.config import get_settings

services_app = typer.Typer(help="The embedded PostgreSQL and Redis under ./var/.", no_args_is_help=True)


def _export_urls() -> None:
    """Resolve the servers once and hand them to child processes through the environment."""
    from dialer.embedded import resolve_urls

    urls = resolve_urls()
    os.environ["DIALER_DATABASE_URL"] = urls.database_url
    os.environ["DIALER_REDIS_URL"] = urls.redis_url


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


def beat(loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO") -> None:
    """Run the scheduler: pacer tick (1 s) and reconciler. One is enough; a second is harmless."""
    _export_urls()
    schedule = get_settings().var_dir / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    os.execv(
        sys.executable,
        [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "--loglevel", loglevel, "-s", str(schedule)],
    )


def web(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    processes: Annotated[int, typer.Option("--workers", help="Web processes sharing the port.")] = 1,
) -> None:
    """Serve the webhook receiver, the REST API and /metrics."""
    import uvicorn

    settings = get_settings()
    missing = [
        name
        for name, value in (("DIALER_WEBHOOK_TOKEN", settings.webhook_token), ("DIALER_API_TOKEN", settings.api_token))
        if not value.get_secret_value()
    ]
    if missing:
        fail(f"set {' and '.join(missing)}: the receiver and the API refuse every request without a token")
    _export_urls()
    uvicorn.run("dialer.web.app:create_app", factory=True, host=host, port=port, workers=processes, log_level="warning")


def simulate(
    ctx: typer.Context,
    scenario: Annotated[
        Path | None, typer.Option(help="JSON or TOML file of simulator settings; flags given here win over it.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (localhost by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8090,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same outcomes and quirks.")] = 1,
    speed: Annotated[float, typer.Option(help="Time scale: 0.05 plays a 60 s call in 3 s.")] = 1.0,
    answer_rate: Annotated[float, typer.Option(help="Share of customers who answer.")] = 0.5,
    busy_rate: Annotated[float, typer.Option(help="Share of busy customers.")] = 0.15,
    no_answer_rate: Annotated[float, typer.Option(help="Share of customers who do not answer.")] = 0.2,
    agent_miss_rate: Annotated[float, typer.Option(help="Share of calls the agent misses.")] = 0.05,
    talk_seconds: Annotated[str, typer.Option(help="Talk time range in seconds, LOW-HIGH.")] = "20-180",
    ring_seconds: Annotated[str, typer.Option(help="Ring time range in seconds, LOW-HIGH.")] = "3-20",
    caller_ids: Annotated[str | None, typer.Option(help="Valid caller ids, comma separated (else any).")] = None,
    offline_agents: Annotated[str | None, typer.Option(help="Agents Acefone reports offline.")] = None,
    get_rate: Annotated[float, typer.Option(help="Share of webhooks sent as GET with the fields in the URL.")] = 0.0,
    form_rate: Annotated[float, typer.Option(help="Share of webhooks sent as forms, not JSON.")] = 0.0,
    drop_rate: Annotated[float, typer.Option(help="Share of webhooks never sent.")] = 0.0,
    duplicate_rate: Annotated[float, typer.Option(help="Share of webhooks sent more than once.")] = 0.0,
    max_copies: Annotated[
        int, typer.Option(help="Most copies of a duplicated webhook (2 to 11), identical byte for byte.")
    ] = 3,
    reorder_rate: Annotated[
        float, typer.Option(help="Share of calls whose webhooks all arrive at hangup, shuffled.")
    ] = 0.0,
    unauthorized_rate: Annotated[float, typer.Option(help="Share of call requests refused with 401.")] = 0.0,
    bad_request_rate: Annotated[float, typer.Option(help="Share of call requests refused with 400.")] = 0.0,
    bad_request_message: Annotated[
        list[str] | None, typer.Option(help="Message of those 400s; repeat the flag for a random pick.")
    ] = None,
    rate_limit_rate: Annotated[float, typer.Option(help="Share of call requests refused with 429.")] = 0.0,
    retry_after_share: Annotated[float, typer.Option(help="Share of 429 answers that carry Retry-After.")] = 0.5,
    retry_after_seconds: Annotated[int, typer.Option(help="Retry-After of the random 429s, in seconds.")] = 1,
    server_error_after_place_rate: Annotated[
        float, typer.Option(help="Share of call requests answered 500 although the call was placed.")
    ] = 0.0,
    slow_rate: Annotated[
        float, typer.Option(help="Share of call requests answered only after --slow-seconds (call placed).")
    ] = 0.0,
    slow_seconds: Annotated[float, typer.Option(help="Delay of a slow answer; longer than the client waits.")] = 15.0,
    max_requests_per_second: Annotated[
        int, typer.Option(help="Call requests allowed in any one second, 429 beyond (0: no limit).")
    ] = 0,
    records_per_second: Annotated[
        int, typer.Option(help="Call-record queries allowed in any one second, 429 beyond (0: no limit).")
    ] = 2,
    login_id: Annotated[
        str | None, typer.Option(help="Login for /v1/auth/login (default DIALER_ACEFONE_LOGIN_ID; none: off).")
    ] = None,
    password: Annotated[
        str | None, typer.Option(help="Password for that login (default DIALER_ACEFONE_PASSWORD).")
    ] = None,
    token_ttl: Annotated[int, typer.Option(help="Lifetime of a login token, in seconds.")] = 3600,
    record: Annotated[Path | None, typer.Option(help="Write the ground truth (JSON lines) here.")] = None,
) -> None:
    """Serve a simulated Acefone: API, played calls, webhooks to DIALER_PUBLIC_URL, ground truth under /sim/."""
    from pydantic import SecretStr

    from dialer.simulator import ConfigError, build_config, load_scenario, parse_range, serve

    settings = get_settings()

    def secret(name: str) -> str:
        # Read only if the settings declare it, so the simulator does not depend on the client's settings.
        value = getattr(settings, name, None) or ""
        return str(value.get_secret_value() if isinstance(value, SecretStr) else value)

    environment = {
        "token": settings.acefone_token.get_secret_value(),
        "webhook_url": settings.public_url.rstrip("/") + "/webhooks/acefone",
        "webhook_token": settings.webhook_token.get_secret_value(),
        "account_timezone": settings.account_timezone,
        "login_id": secret("acefone_login_id"),
        "password": secret("acefone_password"),
    }
    # Only flags the user typed override the scenario; the rest keep the file's (or default) values.
    # By name: typer vendors its own click, whose ParameterSource is not click's.
    typed = {
        name: value
        for name, value in ctx.params.items()
        if name != "scenario" and getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
    }
    renames = {"record": "record_path", "bad_request_message": "bad_request_messages"}
    flags: dict[str, object] = {}
    try:
        for name, value in typed.items():
            if name == "caller_ids":
                value = [v.strip() for v in value.split(",") if v.strip()] if value else None
            elif name == "offline_agents":
                value = [v.strip() for v in (value or "").split(",") if v.strip()]
            elif name in ("talk_seconds", "ring_seconds"):
                value = parse_range(value, name=name)
            elif name == "record":
                value = str(value) if value else None
            flags[renames.get(name, name)] = value
        file_values = load_scenario(scenario) if scenario else {}
        config = build_config(environment, file_values, flags)
    except ConfigError as exc:
        fail(exc.flag_message())
    if not config.token:
        fail("set DIALER_ACEFONE_TOKEN: the simulator accepts requests carrying that token only")
    serve(config)


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
