"""REST API under /api/ (bearer token): campaigns, upload, control, status, reports, DNC."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, UploadFile
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from dialer import campaigns as campaign_service
from dialer import dnc as dnc_service
from dialer import reports
from dialer.phones import normalise
from dialer.policy import PolicyError, parse_days, parse_window
from dialer.states import IllegalTransition
from dialer.web.deps import DbSession, require_api_token

MAX_UPLOAD_BYTES = 50 * 1024 * 1024

router = APIRouter(prefix="", dependencies=[Depends(require_api_token)], tags=["api"])


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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


@router.get("/api/campaigns")
def list_campaigns(db: DbSession) -> list[dict[str, Any]]:
    return [reports.campaign_status(session=db, campaign_id=c.id) for c in campaign_service.list_campaigns(session=db)]


@router.post("/api/campaigns", status_code=201)
def create_campaign(body: CampaignIn, db: DbSession) -> dict[str, Any]:
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


@router.get("/api/campaigns/{campaign_id}")
def get_status(campaign_id: int, db: DbSession) -> dict[str, Any]:
    return _or_404(lambda: reports.campaign_status(session=db, campaign_id=campaign_id))


@router.get("/api/campaigns/{campaign_id}/report")
def get_report(campaign_id: int, db: DbSession) -> dict[str, Any]:
    return _or_404(lambda: reports.campaign_report(session=db, campaign_id=campaign_id))


@router.get("/api/campaigns/{campaign_id}/report.csv")
def get_report_csv(campaign_id: int, db: DbSession) -> PlainTextResponse:
    text = _or_404(lambda: reports.leads_csv(session=db, campaign_id=campaign_id))
    return PlainTextResponse(text, media_type="text/csv")


@router.post("/api/campaigns/{campaign_id}/leads")
def upload_leads(campaign_id: int, file: UploadFile, db: DbSession) -> dict[str, Any]:
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


@router.get("/api/dnc")
def list_dnc(db: DbSession) -> list[dict[str, Any]]:
    return [
        {"phone": n.phone_e164, "reason": n.reason, "added_at": n.added_at.isoformat()}
        for n in dnc_service.list_numbers(session=db)
    ]


@router.post("/api/dnc")
def add_dnc(numbers: list[str], db: DbSession) -> dict[str, Any]:
    parsed = [normalise(n, "GB") for n in numbers]
    bad = [n for n, p in zip(numbers, parsed, strict=True) if p.e164 is None]
    if bad:
        raise HTTPException(status_code=422, detail=f"not phone numbers: {', '.join(bad[:10])}")
    added = dnc_service.add_numbers(session=db, numbers=[p.e164 for p in parsed if p.e164])
    return {"added": added}


# Registered last: the catch-all {action} must not shadow /leads.
@router.post("/api/campaigns/{campaign_id}/{action}")
def control(campaign_id: int, action: str, db: DbSession) -> dict[str, Any]:
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


def _or_404(fn: Any) -> Any:
    try:
        return fn()
    except campaign_service.CampaignNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except IllegalTransition as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None


@router.get("/api/events")
def get_events(db: DbSession, orphans: bool = False, limit: int = 100) -> list[dict[str, Any]]:
    """Stored webhook events, newest first; `orphans=true` for those no call matched."""
    from dialer.webhooks import list_events

    return list_events(session=db, status="orphan" if orphans else None, limit=max(1, min(limit, 1000)))


@router.post("/api/leads/{lead_id}/callback")
def post_callback(lead_id: int, at: str, db: DbSession) -> dict[str, Any]:
    """Schedule a callback for a pending lead (`at`: ISO time; naive = the campaign's zone)."""
    from dialer.leads import LeadNotFound, schedule_callback
    from dialer.models import Campaign, Lead
    from dialer.policy import parse_time

    lead = db.get(Lead, lead_id)
    if lead is None:
        raise HTTPException(status_code=404, detail=f"lead {lead_id} does not exist")
    campaign = db.get(Campaign, lead.campaign_id)
    try:
        when = parse_time(at, campaign.timezone if campaign else "UTC", "at")
        lead = schedule_callback(session=db, lead_id=lead_id, at=when, now=_utcnow())
    except LeadNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except (ValueError, PolicyError) as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return {"lead_id": lead.id, "callback_at": lead.callback_at.isoformat() if lead.callback_at else None}
