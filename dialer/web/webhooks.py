"""`/webhooks/acefone`: authenticate, then store and process in one transaction (dialer.webhooks.receive_event)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from dialer.config import Settings, get_settings
from dialer.db import new_session, session_scope
from dialer.metrics import WEBHOOKS
from dialer.web.deps import token_ok
from dialer.webhooks import (
    RawEvent,
    WebhookParseError,
    apply_field_map,
    parse_body,
    receive_event,
    store_unparseable,
)

log = structlog.get_logger("dialer.web")


router = APIRouter()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@router.api_route("/webhooks/acefone", methods=["GET", "POST"], include_in_schema=False)
async def acefone_webhook(request: Request) -> Response:
    settings = get_settings()
    given = request.headers.get("x-webhook-token") or request.query_params.get("token")
    if not token_ok(given, settings.webhook_token.get_secret_value()):
        WEBHOOKS.labels("unauthorized").inc()
        log.warning("webhook_refused", reason="bad or missing token", client=request.client and request.client.host)
        return JSONResponse({"ok": False, "error": "missing or wrong webhook token"}, status_code=401)
    body = await request.body()
    try:
        fields = apply_field_map(
            parse_body(
                method=request.method,
                content_type=request.headers.get("content-type"),
                body=body,
                query=dict(request.query_params),
            ),
            settings.webhook_field_map,
        )
    except WebhookParseError as exc:
        WEBHOOKS.labels("unparseable").inc()
        log.warning("webhook_unparseable", error=str(exc), body_bytes=len(body))
        await run_in_threadpool(_keep_unparseable, request, body, str(exc))
        return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
    # Database work is blocking: keep it off the event loop.
    return await run_in_threadpool(handle_webhook, request, body, fields, settings)


def _keep_unparseable(request: Request, body: bytes, error: str) -> None:
    with session_scope() as session:
        store_unparseable(
            session=session,
            method=request.method,
            content_type=request.headers.get("content-type"),
            headers=dict(request.headers),
            body=body,
            error=error,
        )


def handle_webhook(request: Request, body: bytes, fields: dict[str, Any], settings: Settings) -> Response:
    """Store the event and (inline) process it in one transaction: `receive_event`.

    The first try is the fast way: progress events in one statement, the others processed without
    a savepoint. If it fails (in the database or in processing), its transaction is rolled back
    and the event is tried once more the long way, in a new transaction: store, then process in
    a savepoint, so even an event whose processing fails again is kept (pending).
    """
    inline = settings.webhook_processing == "inline"
    if inline:
        try:
            return _handle(request, body, fields, settings, fast=True)
        except Exception:
            log.exception("webhook_fast_path_failed")
    return _handle(request, body, fields, settings, fast=False)


def _handle(request: Request, body: bytes, fields: dict[str, Any], settings: Settings, *, fast: bool) -> Response:
    session = new_session()
    try:
        with session.begin():
            stored, status = receive_event(
                session=session,
                event=RawEvent(
                    request.method, request.headers.get("content-type"), dict(request.headers), body, fields
                ),
                process=settings.webhook_processing == "inline",
                fast=fast,
                now=_utcnow(),
                wrapup_seconds=settings.agent_wrapup_seconds,
                account_tz=settings.account_timezone,
            )
    finally:
        session.close()
    WEBHOOKS.labels(status).inc()
    if status == "duplicate":
        return JSONResponse({"ok": True, "event_id": stored.id, "duplicate": True})
    return JSONResponse({"ok": True, "event_id": stored.id, "status": status})
