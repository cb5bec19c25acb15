"""FastAPI app: `POST /webhooks/acefone`, `/api/...` (bearer token), `/metrics`, `/healthz`."""

from __future__ import annotations

import datetime as dt
import hmac
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dialer import campaigns as campaign_service
from dialer import dnc as dnc_service
from dialer import reports
from dialer.config import Settings, get_settings
from dialer.db import new_session, session_scope
from dialer.phones import normalise
from dialer.policy import PolicyError, parse_days, parse_window
from dialer.states import IllegalTransition
from dialer.webhooks import WebhookParseError, parse_body, process_event, store_event

log = structlog.get_logger("dialer.web")

WEBHOOKS = Counter("dialer_webhooks_total", "Webhooks received", ["result"])
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _token_ok(given: str | None, expected: str) -> bool:
    # Constant-time comparison; an unset expected token accepts nothing.
    return bool(expected) and given is not None and hmac.compare_digest(given.encode(), expected.encode())


def get_db() -> Iterator[Session]:
    """One session per request; committed on success."""
    with session_scope() as session:
        yield session


def require_api_token(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> None:
    """Refuse API calls without `Authorization: Bearer $DIALER_API_TOKEN`."""
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else None
    if not _token_ok(token, settings.api_token.get_secret_value()):
        raise HTTPException(status_code=401, detail="missing or wrong bearer token")


class CampaignIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    caller_id: str = Field(min_length=1, max_length=32)
    agents: list[str] = Field(min_length=1)
    cps: float | None = Field(default=None, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=100)
    window: str = "09:00-20:00"
    days: str = "mon-fri"
    timezone: str = "Europe/London"
    region: str = Field(default="GB", min_length=2, max_length=2)
    call_timeout: int = Field(default=300, ge=10, le=7200)


def create_app() -> FastAPI:
    """Build the dialer's web app."""
    app = FastAPI(title="dialer", version="0.1.0", description="Bulk outbound dialer for Acefone click-to-call")
    api = [Depends(require_api_token)]

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.api_route("/webhooks/acefone", methods=["GET", "POST"], include_in_schema=False)
    async def acefone_webhook(request: Request) -> Response:
        settings = get_settings()
        given = request.headers.get("x-webhook-token") or request.query_params.get("token")
        if not _token_ok(given, settings.webhook_token.get_secret_value()):
            WEBHOOKS.labels("unauthorized").inc()
            log.warning("webhook_refused", reason="bad or missing token", client=request.client and request.client.host)
            return JSONResponse({"ok": False, "error": "missing or wrong webhook token"}, status_code=401)
        body = await request.body()
        try:
            fields = parse_body(
                method=request.method,
                content_type=request.headers.get("content-type"),
                body=body,
                query=dict(request.query_params),
            )
        except WebhookParseError as exc:
            WEBHOOKS.labels("unparseable").inc()
            log.warning("webhook_unparseable", error=str(exc), body_bytes=len(body))
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        # Database work is blocking: keep it off the event loop.
        return await run_in_threadpool(handle_webhook, request, body, fields, settings)

    @app.get("/api/campaigns", dependencies=api)
    def list_campaigns(db: Annotated[Session, Depends(get_db)]) -> list[dict[str, Any]]:
        return [
            reports.campaign_status(session=db, campaign_id=c.id) for c in campaign_service.list_campaigns(session=db)
        ]

    @app.post("/api/campaigns", dependencies=api, status_code=201)
    def create_campaign(body: CampaignIn, db: Annotated[Session, Depends(get_db)]) -> dict[str, Any]:
        try:
            campaign = campaign_service.create_campaign(
                session=db,
                name=body.name,
                caller_id=body.caller_id,
                agents=body.agents,
                window=parse_window(body.window),
                days=parse_days(body.days),
                timezone=body.timezone,
                region=body.region,
                cps=body.cps,
                max_attempts=body.max_attempts,
                call_timeout=body.call_timeout,
            )
        except (ValueError, PolicyError) as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return {"id": campaign.id}

    @app.get("/api/campaigns/{campaign_id}", dependencies=api)
    def get_status(campaign_id: int, db: Annotated[Session, Depends(get_db)]) -> dict[str, Any]:
        return _or_404(lambda: reports.campaign_status(session=db, campaign_id=campaign_id))

    @app.get("/api/campaigns/{campaign_id}/report", dependencies=api)
    def get_report(campaign_id: int, db: Annotated[Session, Depends(get_db)]) -> dict[str, Any]:
        return _or_404(lambda: reports.campaign_report(session=db, campaign_id=campaign_id))

    @app.get("/api/campaigns/{campaign_id}/report.csv", dependencies=api)
    def get_report_csv(campaign_id: int, db: Annotated[Session, Depends(get_db)]) -> PlainTextResponse:
        text = _or_404(lambda: reports.leads_csv(session=db, campaign_id=campaign_id))
        return PlainTextResponse(text, media_type="text/csv")

    @app.post("/api/campaigns/{campaign_id}/leads", dependencies=api)
    def upload_leads(campaign_id: int, file: UploadFile, db: Annotated[Session, Depends(get_db)]) -> dict[str, Any]:
        from dialer.importer import ImportFailed, import_leads

        campaign = _or_404(lambda: campaign_service.get_campaign(session=db, campaign_id=campaign_id))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(file.filename or "upload.csv").name
            size = 0
            with path.open("wb") as out:
                while chunk := file.file.read(1 << 20):
                    size += len(chunk)
                    if size > MAX_UPLOAD_BYTES:
                        raise HTTPException(status_code=413, detail=f"upload is over {MAX_UPLOAD_BYTES} bytes")
                    out.write(chunk)
            try:
                report = import_leads(session=db, campaign=campaign, path=path)
            except ImportFailed as exc:
                raise HTTPException(status_code=422, detail=str(exc)) from None
        return report.to_dict()

    @app.get("/api/dnc", dependencies=api)
    def list_dnc(db: Annotated[Session, Depends(get_db)]) -> list[dict[str, Any]]:
        return [
            {"phone": n.phone_e164, "reason": n.reason, "added_at": n.added_at.isoformat()}
            for n in dnc_service.list_numbers(session=db)
        ]

    @app.post("/api/dnc", dependencies=api)
    def add_dnc(numbers: list[str], db: Annotated[Session, Depends(get_db)]) -> dict[str, Any]:
        parsed = [normalise(n, "GB") for n in numbers]
        bad = [n for n, p in zip(numbers, parsed, strict=True) if p.e164 is None]
        if bad:
            raise HTTPException(status_code=422, detail=f"not phone numbers: {', '.join(bad[:10])}")
        added = dnc_service.add_numbers(session=db, numbers=[p.e164 for p in parsed if p.e164])
        return {"added": added}

    # Registered last: the catch-all {action} must not shadow /leads.
    @app.post("/api/campaigns/{campaign_id}/{action}", dependencies=api)
    def control(campaign_id: int, action: str, db: Annotated[Session, Depends(get_db)]) -> dict[str, Any]:
        actions = {
            "start": lambda: campaign_service.start_campaign(session=db, campaign_id=campaign_id, now=_utcnow()),
            "pause": lambda: campaign_service.pause_campaign(session=db, campaign_id=campaign_id),
            "resume": lambda: campaign_service.resume_campaign(session=db, campaign_id=campaign_id),
            "cancel": lambda: campaign_service.cancel_campaign(session=db, campaign_id=campaign_id),
        }
        if action not in actions:
            raise HTTPException(status_code=404, detail=f"unknown action {action!r}: use {', '.join(actions)}")
        campaign = _or_404(actions[action])
        return {"id": campaign.id, "state": campaign.state.value}

    return app


def _or_404(fn: Any) -> Any:
    try:
        return fn()
    except campaign_service.CampaignNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except IllegalTransition as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None


def handle_webhook(request: Request, body: bytes, fields: dict[str, Any], settings: Settings) -> Response:
    """Store the event (committed), then process it in its own transaction."""
    with session_scope() as session:
        stored = store_event(
            session=session,
            method=request.method,
            content_type=request.headers.get("content-type"),
            headers=dict(request.headers),
            body=body,
            fields=fields,
        )
    if not stored.is_new:
        WEBHOOKS.labels("duplicate").inc()
        return JSONResponse({"ok": True, "event_id": stored.id, "duplicate": True})
    session = new_session()
    try:
        with session.begin():
            status = process_event(
                session=session,
                event_id=stored.id,
                now=_utcnow(),
                wrapup_seconds=settings.agent_wrapup_seconds,
                account_tz=settings.account_timezone,
            )
    except Exception:
        # Stored already: the reconciler processes it again. Acefone still gets its 2xx.
        log.exception("webhook_processing_failed", event_id=stored.id)
        status = "pending"
    finally:
        session.close()
    WEBHOOKS.labels(status).inc()
    return JSONResponse({"ok": True, "event_id": stored.id, "status": status})
