"""The dashboard: sign-in, security headers, local assets, and a headless-Chromium check of the numbers shown.

The browser tests need Debian's chromium (/usr/bin/chromium, or $DIALER_CHROMIUM) and the
`playwright` Python package (dev extra); `playwright install` is never used. Screenshots go to
the test's tmp dir and, when DIALER_SCREENSHOT_DIR is set, there too.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from test_reports import EXPECTED, EXPECTED_AGENTS, Seeded, seed_campaign

from dialer import reports
from dialer.config import get_settings
from dialer.db import session_scope
from dialer.models import CallAttempt
from dialer.outcomes import settle_attempt
from dialer.states import AttemptStatus
from dialer.web import dashboard

TOKEN = "dashboard-api-token-9"
CHROMIUM = os.environ.get("DIALER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _browser_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[dev]'; never `playwright install`)"
    if not Path(CHROMIUM).exists():
        return f"no chromium at {CHROMIUM} (Debian: apt-get install -y chromium)"
    return None


if _browser_missing() and os.environ.get("DIALER_REQUIRE_BROWSER"):
    # CI installs Chromium: there a missing browser is a failure, not a skip.
    raise RuntimeError(_browser_missing())
needs_browser = pytest.mark.skipif(_browser_missing() is not None, reason=_browser_missing() or "")


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DIALER_API_TOKEN", TOKEN)
    monkeypatch.setenv("DIALER_WEBHOOK_TOKEN", "dashboard-hook-token")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def seeded(clean_db: sa.Engine) -> Seeded:
    """The hand-worked campaign of test_reports, committed, at the real now."""
    with session_scope() as s:
        return seed_campaign(s, now=dt.datetime.now(dt.UTC))


@pytest.fixture
def client(seeded: Seeded, settings_env: None) -> Iterator[TestClient]:
    from dialer.web.app import create_app

    with TestClient(create_app(), follow_redirects=False) as c:
        yield c


# --- sign-in ---------------------------------------------------------------------------------------


def test_pages_send_anonymous_browsers_to_login(client: TestClient, seeded: Seeded) -> None:
    for path in ("/", f"/campaigns/{seeded.campaign_id}"):
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    assert client.get(f"/dashboard/campaigns/{seeded.campaign_id}.json").status_code == 401
    assert client.get("/dashboard/campaigns.json").status_code == 401
    assert client.get("/login").status_code == 200


def test_token_once_sets_a_signed_httponly_cookie(client: TestClient, seeded: Seeded) -> None:
    path = f"/campaigns/{seeded.campaign_id}"
    assert client.get(f"{path}?token=wrong").status_code == 401
    r = client.get(f"{path}?token={TOKEN}&x=1")
    assert r.status_code == 303
    assert r.headers["location"] == f"{path}?x=1"  # the token does not stay in the address bar
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and TOKEN not in cookie
    page = client.get(path)
    assert page.status_code == 200
    assert f'data-source="/dashboard/campaigns/{seeded.campaign_id}.json"' in page.text
    data = client.get(f"/dashboard/campaigns/{seeded.campaign_id}.json")
    assert data.status_code == 200 and data.json()["total_leads"] == 10
    assert client.get("/dashboard/campaigns/999999.json").status_code == 404
    client.get("/logout")
    assert client.get(path).status_code == 303


def test_login_form_and_bearer(client: TestClient, seeded: Seeded) -> None:
    assert client.post("/login", data={"token": "nope", "next": "/"}).status_code == 401
    r = client.post("/login", data={"token": TOKEN, "next": "//evil.example/x"})
    assert r.status_code == 303 and r.headers["location"] == "/"  # never an open redirect
    client.cookies.clear()
    r = client.post("/login", data={"token": TOKEN, "next": f"/campaigns/{seeded.campaign_id}"})
    assert r.headers["location"] == f"/campaigns/{seeded.campaign_id}"
    client.cookies.clear()
    bearer = client.get("/dashboard/campaigns.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200 and [c["id"] for c in bearer.json()] == [seeded.campaign_id]


def test_cookie_expires_and_dies_with_the_token(settings_env: None) -> None:
    settings = get_settings()
    fresh = dashboard.session_cookie(settings, now=1000.0)
    assert dashboard.cookie_ok(fresh, settings, now=1000.0 + dashboard.SESSION_SECONDS - 1)
    assert not dashboard.cookie_ok(fresh, settings, now=1000.0 + dashboard.SESSION_SECONDS + 1)
    assert not dashboard.cookie_ok(fresh.replace(".", ".0", 1), settings, now=1000.0)
    other = settings.model_copy(update={"api_token": type(settings.api_token)("rotated")})
    assert not dashboard.cookie_ok(fresh, other, now=1000.0)
    assert not dashboard.cookie_ok(None, settings)


def test_security_headers_and_local_assets(client: TestClient) -> None:
    page = client.get(f"/?token={TOKEN}", follow_redirects=True)
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        assert client.get(asset).status_code == 200
    # Nothing is fetched from another host: no CDN, no web font, no external script.
    for file in [*dashboard.STATIC_DIR.iterdir(), *dashboard.TEMPLATES_DIR.iterdir()]:
        text = file.read_text()
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text), file
        assert "@import" not in text and "url(http" not in text, file


# --- the browser -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(seeded: Seeded, settings_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Serve the app with uvicorn in a thread on a free localhost port."""
    import uvicorn

    from dialer.web.app import create_app

    monkeypatch.setattr(dashboard, "REFRESH_SECONDS", 1)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser_page(server: str, tmp_path: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        outside: list[str] = []

        def guard(route: Any) -> None:
            # The page may talk to this server and nothing else (no CDN, no telemetry).
            url = route.request.url
            if url.startswith((server, "data:")):
                route.continue_()
            else:
                outside.append(url)
                route.abort()

        page.route("**/*", guard)
        page.outside_requests = outside
        yield page
        context.close()
        browser.close()


def _shot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("DIALER_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / name)
    return path


def _shown(page: Any, metric: str) -> str:
    return str(page.locator(f'[data-metric="{metric}"]').first.text_content()).strip()


def _truth(seeded: Seeded) -> dict[str, str]:
    """What the campaign page must show, formatted as the page formats it."""
    e = EXPECTED
    truth = {
        "total_leads": str(e["total_leads"]),
        "finished_leads": str(e["finished_leads"]),
        "contacted": str(e["contacted"]),
        "contact_rate": "28.6%",
        "answer_rate": "20.0%",
        "penetration": "50.0%",
        "calls_placed": str(e["calls_placed"]),
        "calls_in_progress": str(e["calls_in_progress"]),
        "dialable_now": str(e["dialable_now"]),
        "avg_talk_seconds": "90.0 s",
        "state": "running",
        "blocked.outside_window": "1",
        "blocked.waiting_for_retry": "1",
        "hangup.NO_ANSWER": "3",
        "hangup.USER_BUSY": "2",
        "pass.1.calls": "7",
        "pass.1.contact_rate": "14.3%",
        "pass.2.contact_rate": "50.0%",
        f"import.{seeded.import_job_id}.rejected": "3",
    }
    truth.update({f"leads.{k}": str(v) for k, v in e["leads"].items()})
    truth.update({f"outcomes.{k}": str(v) for k, v in e["outcomes"].items() if v})
    for number, agent in zip(seeded.agent_numbers, EXPECTED_AGENTS, strict=True):
        truth[f"agent.{number}.calls"] = str(agent["calls"])
        truth[f"agent.{number}.contacts"] = str(agent["contacts"])
        truth[f"agent.{number}.state"] = agent["state"].replace("_", " ")
    return truth


@needs_browser
def test_campaign_page_shows_the_seeded_numbers(browser_page: Any, server: str, seeded: Seeded, tmp_path: Path) -> None:
    page = browser_page
    page.goto(f"{server}/campaigns/{seeded.campaign_id}?token={TOKEN}")
    page.wait_for_selector('[data-metric="total_leads"]', timeout=15000)
    assert page.url == f"{server}/campaigns/{seeded.campaign_id}"
    truth = _truth(seeded)
    shown = {metric: _shown(page, metric) for metric in truth}
    assert shown == truth
    # The charts are drawn: progress, outcome bars, calls over time.
    assert page.locator("svg.stack rect").count() == sum(1 for v in EXPECTED["leads"].values() if v)
    assert page.locator("svg.hbars rect").count() == sum(1 for v in EXPECTED["outcomes"].values() if v)
    assert page.locator("svg.columns .bar-calls").count() >= 10
    _shot(page, tmp_path, "campaign.png")

    # It refreshes by itself: the live call ends, the page catches up without a reload.
    with session_scope() as s:
        live = s.scalars(
            sa.select(CallAttempt).where(
                CallAttempt.lead_id == seeded.lead_ids["L9"], CallAttempt.status == AttemptStatus.ORIGINATED
            )
        ).one()
        live.billsec, live.duration = 30, 35
        settle_attempt(
            session=s, attempt=live, status=AttemptStatus.COMPLETED, now=dt.datetime.now(dt.UTC), wrapup_seconds=0
        )
    from playwright.sync_api import expect

    # expect() polls the DOM (the page's CSP forbids the eval that wait_for_function needs).
    expect(page.locator('[data-metric="contacted"]')).to_have_text("3", timeout=15000)
    expect(page.locator('[data-metric="calls_in_progress"]')).to_have_text("0")
    assert page.outside_requests == []


@needs_browser
def test_campaigns_page_lists_the_campaign(browser_page: Any, server: str, seeded: Seeded, tmp_path: Path) -> None:
    page = browser_page
    page.goto(f"{server}/?token={TOKEN}")
    key = f"campaign.{seeded.campaign_id}."
    page.wait_for_selector(f'[data-metric="{key}total_leads"]', timeout=15000)
    assert _shown(page, key + "total_leads") == "10"
    assert _shown(page, key + "progress") == "50.0%"
    assert _shown(page, key + "dialable_now") == "2"
    _shot(page, tmp_path, "campaigns.png")
    page.click(f'tr[data-campaign="{seeded.campaign_id}"] a')
    page.wait_for_selector('[data-metric="contact_rate"]', timeout=15000)
    assert page.outside_requests == []


@needs_browser
def test_html_report_file_is_self_contained(browser_page: Any, seeded: Seeded, tmp_path: Path) -> None:
    with session_scope() as s:
        html = dashboard.render_report_html(reports.campaign_report(session=s, campaign_id=seeded.campaign_id))
    file = tmp_path / "report.html"
    file.write_text(html, encoding="utf-8")
    page = browser_page
    page.unroute("**/*")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(file.as_uri())
    page.wait_for_selector('[data-metric="total_leads"]', timeout=15000)
    truth = _truth(seeded)
    assert {m: _shown(page, m) for m in truth} == truth
    assert page.locator("svg.hbars rect").count() > 0
    assert requests == [file.as_uri()]  # the file itself, nothing else
    _shot(page, tmp_path, "report.png")
