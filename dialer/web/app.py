"""FastAPI app: the webhook receiver, the REST API (`/api/`), the dashboard, `/metrics`, `/healthz`."""

from __future__ import annotations

# First: the metrics module sets the multiprocess directory before any metric object exists.
from dialer import metrics  # isort: skip

from fastapi import FastAPI
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from dialer.logs import configure_logging
from dialer.web import api, dashboard, webhooks


def create_app() -> FastAPI:
    """Build the dialer's web app."""
    configure_logging()
    app = FastAPI(title="dialer", version="0.1.0", description="Bulk outbound dialer for Acefone click-to-call")

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/metrics", include_in_schema=False)
    def metrics_view() -> Response:
        # Every process's counters on this host (multiprocess files) plus the scrape-time gauges.
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(webhooks.router)
    app.include_router(api.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC_DIR), name="static")
    return app
