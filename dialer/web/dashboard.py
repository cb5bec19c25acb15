"""The browser dashboard: a campaigns page, a page per campaign, and the self-contained HTML report.

Pages are static shells served at once; `static/dashboard.js` fetches the numbers (the same
`dialer.reports` dictionaries as the API) and draws them, refreshing every few seconds, so a
page never waits on a report. Nothing is loaded from outside this server.

Access: the API token, given once. `GET /?token=$DIALER_API_TOKEN` (any dashboard page) or the
form at `/login` sets an HttpOnly, SameSite=Lax cookie holding an expiring HMAC signed with the
token (never the token itself) and redirects to the same page without the token in its URL.
`Authorization: Bearer $DIALER_API_TOKEN` works too. Rotating the token logs every browser out.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import pathlib
import time
from string import Template
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from dialer import campaigns as campaign_service
from dialer import reports
from dialer.config import Settings, get_settings
from dialer.web.deps import DbSession, token_ok

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"
TEMPLATES_DIR = pathlib.Path(__file__).resolve().parent / "templates"
COOKIE = "dialer_dashboard"
SESSION_SECONDS = 12 * 3600
REFRESH_SECONDS = 5
# Pages and their assets come from this server only; the token never leaves in a Referer.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)


class NotSignedIn(Exception):
    """The browser has no valid dashboard cookie and no bearer token."""


def _sign(secret: str, expires: int) -> str:
    mac = hmac.new(secret.encode(), f"dashboard:{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{mac}"


def session_cookie(settings: Settings, now: float | None = None) -> str:
    """Return a fresh dashboard cookie value: expiry and its HMAC under the API token."""
    return _sign(settings.api_token.get_secret_value(), int((now or time.time()) + SESSION_SECONDS))


def cookie_ok(value: str | None, settings: Settings, now: float | None = None) -> bool:
    """Tell whether a dashboard cookie was signed with the current API token and has not expired."""
    secret = settings.api_token.get_secret_value()
    if not secret or not value or "." not in value:
        return False
    expires, _, _ = value.partition(".")
    if not expires.isdigit() or int(expires) < (now or time.time()):
        return False
    return hmac.compare_digest(value.encode(), _sign(secret, int(expires)).encode())


def signed_in(request: Request, settings: Settings) -> bool:
    """Accept the dashboard cookie or `Authorization: Bearer $DIALER_API_TOKEN`."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer ") and token_ok(header[7:], settings.api_token.get_secret_value()):
        return True
    return cookie_ok(request.cookies.get(COOKIE), settings)


def require_viewer(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> None:
    """JSON endpoints: 401 unless signed in."""
    if not signed_in(request, settings):
        raise HTTPException(status_code=401, detail="sign in at /login or send the API bearer token")


def _set_cookie(response: Response, request: Request, settings: Settings) -> None:
    response.set_cookie(
        COOKIE,
        session_cookie(settings),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https" or settings.public_url.startswith("https://"),
        path="/",
    )


def _page_or_login(request: Request, settings: Settings) -> Response | None:
    """Sign in from `?token=` (then drop it from the URL), or send an anonymous browser to /login."""
    given = request.query_params.get("token")
    if given is not None:
        if not token_ok(given, settings.api_token.get_secret_value()):
            return _login_page(request, error="That token is not the API token.", status_code=401)
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
        _set_cookie(response, request, settings)
        return response
    if signed_in(request, settings):
        return None
    return RedirectResponse(f"/login?{urlencode({'next': request.url.path})}", status_code=303)


def _template(name: str) -> Template:
    return Template((TEMPLATES_DIR / name).read_text(encoding="utf-8"))


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)


def _shell(*, title: str, page: str, source: str, campaign_id: int | None = None) -> HTMLResponse:
    return _html(
        _template("page.html").substitute(
            title=html.escape(title),
            page=page,
            source=html.escape(source),
            campaign_id="" if campaign_id is None else str(campaign_id),
            refresh=str(REFRESH_SECONDS),
        )
    )


def _safe_next(value: str | None) -> str:
    # Only a local path: never an open redirect to another site.
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _login_page(request: Request, *, error: str = "", status_code: int = 200) -> HTMLResponse:
    target = _safe_next(request.query_params.get("next") or request.url.path)
    return _html(
        _template("login.html").substitute(
            next=html.escape(target if target != "/login" else "/"),
            error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
        ),
        status_code=status_code,
    )


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return _login_page(request)


@router.post("/login")
def login(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    token: Annotated[str, Form()],
    next_path: Annotated[str, Form(alias="next")] = "/",
) -> Response:
    if not token_ok(token, settings.api_token.get_secret_value()):
        return _login_page(request, error="That token is not the API token.", status_code=401)
    response = RedirectResponse(_safe_next(next_path), status_code=303, headers=SECURITY_HEADERS)
    _set_cookie(response, request, settings)
    return response


@router.get("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/", response_class=HTMLResponse)
def campaigns_page(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> Response:
    return _page_or_login(request, settings) or _shell(
        title="Campaigns", page="campaigns", source="/dashboard/campaigns.json"
    )


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_page(campaign_id: int, request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> Response:
    return _page_or_login(request, settings) or _shell(
        title=f"Campaign {campaign_id}",
        page="campaign",
        source=f"/dashboard/campaigns/{campaign_id}.json",
        campaign_id=campaign_id,
    )


@router.get("/dashboard/campaigns.json", dependencies=[Depends(require_viewer)])
def campaigns_data(db: DbSession) -> JSONResponse:
    rows = [reports.campaign_status(session=db, campaign_id=c.id) for c in campaign_service.list_campaigns(session=db)]
    return JSONResponse(rows, headers={"Cache-Control": "no-store"})


@router.get("/dashboard/campaigns/{campaign_id}.json", dependencies=[Depends(require_viewer)])
def campaign_data(campaign_id: Annotated[int, Path(ge=1, le=2**31 - 1)], db: DbSession) -> JSONResponse:
    # Bounded like the API's ids: beyond campaigns.id's int4 range the lookup is a database error.
    try:
        data = reports.campaign_report(session=db, campaign_id=campaign_id)
    except campaign_service.CampaignNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


# --- the self-contained HTML report (`dialer report --format html`, /api/.../report.html) --------


def _json_for_script(data: Any) -> str:
    # Inside <script>: no "</script>", no HTML comment openers, whatever the campaign is called.
    text = json.dumps(data, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _summary_rows(report: dict[str, Any]) -> str:
    rows = [
        ("Leads", report["total_leads"]),
        ("Finished", report["finished_leads"]),
        ("Contacted", report["contacted"]),
        ("Calls placed", report["attempts"]),
        ("Contact rate", f"{report['contact_rate']:.1%}"),
        ("Answer rate", f"{report['answer_rate']:.1%}"),
        ("Penetration", f"{report['penetration']:.1%}"),
        ("Average talk (s)", report["avg_talk_seconds"]),
    ]
    return "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)


def render_report_html(report: dict[str, Any]) -> str:
    """Return the report as one HTML file with its styles, script, data and charts inline (no network)."""
    campaign = report["campaign"]
    return _template("report.html").substitute(
        title=html.escape(f"Report · campaign {campaign['id']} · {campaign['name']}"),
        css=(STATIC_DIR / "dashboard.css").read_text(encoding="utf-8"),
        js=(STATIC_DIR / "dashboard.js").read_text(encoding="utf-8"),
        data=_json_for_script(report),
        summary=_summary_rows(report),
    )
