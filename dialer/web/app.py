"""FastAPI app: the webhook receiver, the REST API (`/api/`), the dashboard, `/metrics`, `/healthz`."""

from __future__ import annotations

# First: the metrics module sets the multiprocess directory before any metric object exists.
from dialer import metrics  # isort: skip

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

from dialer.config import get_settings
from dialer.logs import configure_logging
from dialer.web import api, dashboard, webhooks


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Blocking work (webhooks, API) runs in worker threads, each holding one database connection:
    # no more threads than the pool keeps. Beyond it every request in a burst would open a
    # connection (a new server process) and close it after.
    anyio.to_thread.current_default_thread_limiter().total_tokens = get_settings().db_pool_size
    yield


def create_app() -> FastAPI:
    """Build the dialer's web app."""
    configure_logging()
    app = FastAPI(
        title="dialer",
        version="0.1.0",
        description="Bulk outbound dialer for Acefone click-to-call",
        lifespan=_lifespan,
    )

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
