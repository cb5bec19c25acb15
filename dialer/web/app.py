"""FastAPI app: the webhook receiver, the REST API (`/api/`), `/metrics`, `/healthz`."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dialer.web import api, webhooks


def create_app() -> FastAPI:
    """Build the dialer's web app."""
    app = FastAPI(title="dialer", version="0.1.0", description="Bulk outbound dialer for Acefone click-to-call")

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(webhooks.router)
    app.include_router(api.router)
    return app
