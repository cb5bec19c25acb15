"""REST API under /api/ (bearer token): campaigns, upload, control, status, reports, DNC."""

from __future__ import annotations

import datetime as dt
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, UploadFile
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field

from dialer import campaigns as campaign_service
from dialer import dnc as dnc_service
from dialer import reports
from dialer.config import get_settings
from dialer.db import session_scope
from dialer.models import Campaign
from dialer.phones import normalise
from dialer.policy import PolicyError, parse_days, parse_window
from dialer.states import IllegalTransition
from dialer.web.deps import DbSession, require_api_token

# Largest lead file accepted by upload_leads (the importer's own limit for files); to become a setting.


class ErrorOut(BaseModel):
    """The body of every refusal this API raises itself: `{"detail": "why"}`."""

    detail: str


class InvalidOut(BaseModel):
    """A 422: FastAPI's list of field errors for a malformed request, or our own one-line reason."""

    detail: str | list[dict[str, Any]]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    # Declared per route so the OpenAPI document lists every status code the route really returns.
    # Spelled out as JSON: with a `model`, FastAPI would file them under an HTML route's text/html.
    return {
        code: {
            "description": "Refused",
            "content": {"application/json": {"schema": (InvalidOut if code == 422 else ErrorOut).model_json_schema()}},
        }
        for code in codes
    }


# Beyond the id columns' range (campaigns.id is int4, leads.id int8) a lookup is a database error, not a 404.
CampaignId = Annotated[int, Path(ge=1, le=2**31 - 1)]
LeadId = Annotated[int, Path(ge=1, le=2**63 - 1)]


router = APIRouter(prefix="", dependencies=[Depends(require_api_token)], tags=["api"], responses=_errors(401))


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


class CreatedOut(BaseModel):
    id: int


class ControlOut(BaseModel):
    id: int
    state: str


class DncOut(BaseModel):
    phone: str
    reason: str | None
    added_at: str


class DncAddedOut(BaseModel):
    added: int


class CallbackOut(BaseModel):
    lead_id: int
    callback_at: str | None


# --- response models of the status and report endpoints (the dictionaries of dialer.reports) -----


class AgentsSummaryOut(BaseModel):
    total: int
    free: int
    on_call: int
    paused: int


class PaceOut(BaseModel):
    since: str
    leads_per_minute: float
    calls_per_minute: float


class _LiveNumbers(BaseModel):
    total_leads: int
    leads: dict[str, int]
    finished_leads: int
    open_leads: int
    contacted: int
    calls_in_progress: int
    due_leads: int
    dialable_now: int
    blocked_by_reason: dict[str, int]
    pending_by_reason: dict[str, int]
    penetration: float
    pace: PaceOut
    eta_seconds: int | None
    eta_at: str | None
    agents_summary: AgentsSummaryOut
    generated_at: str


class CampaignStatusOut(_LiveNumbers):
    id: int
    name: str
    state: str
    state_reason: str | None


class CampaignSettingsOut(BaseModel):
    caller_id: str
    agents: list[str]
    window: str
    days: list[int]
    timezone: str
    region: str
    cps: float | None
    max_attempts: int
    call_timeout: int
    retry_policy: dict[str, Any]
    start_at: str | None


class CampaignOut(CampaignStatusOut):
    settings: CampaignSettingsOut


class CampaignRefOut(BaseModel):
    id: int
    name: str
    state: str
    state_reason: str | None
    timezone: str
    created_at: str | None
    finished_at: str | None


class TimelinePointOut(BaseModel):
    t: str
    calls: int
    contacts: int


class PassOut(BaseModel):
    attempt: int
    calls: int
    contacts: int
    contact_rate: float


class AgentOut(BaseModel):
    agent: str
    name: str | None
    calls: int
    contacts: int
    talk_seconds: int
    busy_seconds: int
    idle_seconds: int
    state: str


class ImportJobOut(BaseModel):
    id: int
    filename: str
    total_rows: int
    accepted: int
    rejected: int
    rejects_by_reason: dict[str, int]
    created_at: str | None


class CampaignReportOut(_LiveNumbers):
    campaign: CampaignRefOut
    leads_attempted: int
    attempts: int
    calls_placed: int
    outcomes: dict[str, int]
    hangup_causes: dict[str, int]
    contact_rate: float
    answer_rate: float
    talk_seconds: int
    avg_talk_seconds: float
    calls_per_minute: list[TimelinePointOut]
    calls_per_hour: list[TimelinePointOut]
    passes: list[PassOut]
    agents: list[AgentOut]
    import_jobs: list[ImportJobOut]


@router.get("/api/campaigns", response_model=list[CampaignStatusOut])
def list_campaigns(db: DbSession) -> list[dict[str, Any]]:
    """Every campaign, newest first, with its live numbers."""
    return [reports.campaign_status(session=db, campaign_id=c.id) for c in campaign_service.list_campaigns(session=db)]


@router.post("/api/campaigns", status_code=201, response_model=CreatedOut, responses=_errors(400, 422))
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


@router.get("/api/campaigns/{campaign_id}", response_model=CampaignOut, responses=_errors(404, 422))
def get_campaign(campaign_id: CampaignId, db: DbSession) -> dict[str, Any]:
    """One campaign: its live numbers and its settings."""
    campaign = _or_404(lambda: campaign_service.get_campaign(session=db, campaign_id=campaign_id))
    return {**reports.campaign_status(session=db, campaign_id=campaign_id), "settings": _settings_of(campaign)}


@router.get("/api/campaigns/{campaign_id}/status", response_model=CampaignStatusOut, responses=_errors(404, 422))
def get_status(campaign_id: CampaignId, db: DbSession) -> dict[str, Any]:
    """The live view: leads by status, dialable and blocked leads, calls in progress, agents, ETA."""
    return _or_404(lambda: reports.campaign_status(session=db, campaign_id=campaign_id))


@router.get("/api/campaigns/{campaign_id}/report", response_model=CampaignReportOut, responses=_errors(404, 422))
def get_report(campaign_id: CampaignId, db: DbSession) -> dict[str, Any]:
    """The campaign report: every number of the status plus calls, outcomes, rates, timelines, agents."""
    return _or_404(lambda: reports.campaign_report(session=db, campaign_id=campaign_id))


@router.get(
    "/api/campaigns/{campaign_id}/report.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "One row per lead."}, **_errors(404, 422)},
)
def get_report_csv(campaign_id: CampaignId, db: DbSession) -> StreamingResponse:
    """The lead-level export for the CRM (one row per lead, formula-safe), streamed."""
    _or_404(lambda: campaign_service.get_campaign(session=db, campaign_id=campaign_id))

    def chunks() -> Iterator[str]:
        # Its own session: the request's closes before a long body finishes streaming.
        with session_scope() as session:
            yield from reports.iter_leads_csv(session=session, campaign_id=campaign_id)

    return StreamingResponse(
        chunks(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}-leads.csv"'},
    )


@router.get("/api/campaigns/{campaign_id}/report.html", response_class=HTMLResponse, responses=_errors(404, 422))
def get_report_html(campaign_id: CampaignId, db: DbSession) -> HTMLResponse:
    """The report as one self-contained HTML page with its charts (no external assets)."""
    from dialer.web.dashboard import render_report_html

    data = _or_404(lambda: reports.campaign_report(session=db, campaign_id=campaign_id))
    return HTMLResponse(render_report_html(data))


def _settings_of(campaign: Campaign) -> dict[str, Any]:
    return {
        "caller_id": campaign.caller_id,
        "agents": sorted(a.number for a in campaign.agents),
        "window": f"{campaign.window_start:%H:%M}-{campaign.window_end:%H:%M}",
        "days": list(campaign.days),
        "timezone": campaign.timezone,
        "region": campaign.region,
        "cps": campaign.cps,
        "max_attempts": campaign.max_attempts,
        "call_timeout": campaign.call_timeout,
        "retry_policy": campaign.retry_policy or {},
        "start_at": campaign.start_at.isoformat() if campaign.start_at else None,
    }


@router.post("/api/campaigns/{campaign_id}/leads", responses=_errors(400, 404, 413, 422))
def upload_leads(
    campaign_id: CampaignId,
    file: UploadFile,
    db: DbSession,
    phone_column: Annotated[str | None, Form()] = None,
    encoding: Annotated[str | None, Form()] = None,
    sheet: Annotated[str | None, Form()] = None,
) -> dict[str, Any]:
    """Import a CSV or XLSX upload (multipart field `file`) into a campaign; return the import report."""
    from dialer.importer import ImportFailed, import_leads

    campaign = _or_404(lambda: campaign_service.get_campaign(session=db, campaign_id=campaign_id))
    name = pathlib.Path(file.filename or "upload.csv").name or "upload.csv"
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "upload"
        size = 0
        limit = get_settings().max_upload_bytes
        with path.open("wb") as out:
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise HTTPException(
                        status_code=413, detail=f"{name}: the upload is over the limit of {limit:,} bytes"
                    )
                out.write(chunk)
        try:
            report = import_leads(
                session=db,
                campaign=campaign,
                path=path,
                filename=name,
                phone_column=phone_column,
                encoding=encoding,
                sheet=sheet,
                max_bytes=limit,
            )
        except ImportFailed as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
    return report.to_dict()


@router.get("/api/dnc", response_model=list[DncOut])
def list_dnc(db: DbSession) -> list[dict[str, Any]]:
    return [
        {"phone": n.phone_e164, "reason": n.reason, "added_at": n.added_at.isoformat()}
        for n in dnc_service.list_numbers(session=db)
    ]


@router.post("/api/dnc", response_model=DncAddedOut, responses=_errors(400, 422))
def add_dnc(numbers: list[str], db: DbSession) -> dict[str, Any]:
    parsed = [normalise(n, "GB") for n in numbers]
    bad = [n for n, p in zip(numbers, parsed, strict=True) if p.e164 is None]
    if bad:
        raise HTTPException(status_code=422, detail=f"not phone numbers: {', '.join(bad[:10])}")
    added = dnc_service.add_numbers(session=db, numbers=[p.e164 for p in parsed if p.e164])
    return {"added": added}


# Registered last: the catch-all {action} must not shadow /leads.
@router.post("/api/campaigns/{campaign_id}/{action}", response_model=ControlOut, responses=_errors(404, 409, 422))
def control(campaign_id: CampaignId, action: str, db: DbSession) -> dict[str, Any]:
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


@router.post("/api/leads/{lead_id}/callback", response_model=CallbackOut, responses=_errors(404, 422))
def post_callback(lead_id: LeadId, at: str, db: DbSession) -> dict[str, Any]:
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
