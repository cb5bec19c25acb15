"""Prometheus metrics that the web, worker and beat processes count, summed across processes by /metrics.

prometheus_client's multiprocess mode: every process writes its samples to files under
PROMETHEUS_MULTIPROC_DIR, and `/metrics` (whichever web process answers) adds them all up, so
the numbers are right however many workers, prefork children or uvicorn processes run on the
host. The directory has to be known before the first metric object exists, so importing this
module chooses it: $PROMETHEUS_MULTIPROC_DIR, else `<DIALER_VAR_DIR>/prometheus` (exported so
child processes agree). Empty it when the host's dialer processes (re)start, not while they run.
One host, one directory: workers on another machine need their own `dialer web` (or any process
serving `render()`) for Prometheus to scrape.

Counters are incremented where things happen (dialing, outcomes, webhooks); queue depth and
calls in progress are read when Prometheus scrapes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from dialer.states import ATTEMPT_FINAL, ATTEMPT_LIVE, AttemptStatus

log = structlog.get_logger("dialer.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Under the settings' var_dir when PROMETHEUS_MULTIPROC_DIR is not set.
DEFAULT_SUBDIR = "prometheus"
# Celery's Redis transport keeps one list per priority step: name, then name\x06\x16<step>.
CELERY_PRIORITY_STEPS = (0, 3, 6, 9)


def _enable_multiprocess() -> Path:
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        from dialer.config import get_settings

        path = str((get_settings().var_dir / DEFAULT_SUBDIR).resolve())
        os.environ[MULTIPROC_ENV] = path
    Path(path).mkdir(parents=True, exist_ok=True)
    if not getattr(values.ValueClass, "_multiprocess", False):
        # prometheus_client was imported before the directory was set (it decides at import):
        # metrics created from here on write to the shared files.
        values.ValueClass = values.MultiProcessValue()
    return Path(path)


MULTIPROC_DIR = _enable_multiprocess()

# registry=None: in multiprocess mode the files are the registry; /metrics builds its own.
CALLS_PLACED = Counter(
    "dialer_calls_placed",
    "Click-to-call requests sent to Acefone (after the committed queued->dialing claim)",
    registry=None,
)
API_ERRORS = Counter(
    "dialer_api_errors",
    "Click-to-call requests that did not originate a call, by result kind and failure reason",
    ["kind", "reason"],
    registry=None,
)
CALL_OUTCOMES = Counter(
    "dialer_call_outcomes",
    "Call attempts settled, by final attempt status",
    ["outcome"],
    registry=None,
)
LIMITER_WAIT = Histogram(
    "dialer_limiter_wait_seconds",
    "Time a dial waited for a token from the global rate limiter",
    ["result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30),
    registry=None,
)
WEBHOOKS = Counter(
    "dialer_webhooks",
    "Webhooks received, by what became of them",
    ["result"],
    registry=None,
)
WEBHOOK_LAG = Histogram(
    "dialer_webhook_lag_seconds",
    "Seconds from a call's end (end_stamp) to its hangup webhook being processed",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
    registry=None,
)

# Known label values start at 0, so rate() and absent() work before the first event.
for _outcome in sorted(s.value for s in ATTEMPT_FINAL):
    CALL_OUTCOMES.labels(outcome=_outcome)
for _kind, _reason in (
    ("retry", "rate_limited"),
    ("retry", "connect_error"),
    ("ambiguous", "none"),
    ("failed", "unauthorized"),
    ("failed", "invalid_caller_id"),
    ("failed", "agent_offline"),
    ("failed", "invalid_number"),
    ("failed", "other"),
):
    API_ERRORS.labels(kind=_kind, reason=_reason)
for _result in ("processed", "orphan", "duplicate", "pending", "unauthorized", "unparseable"):
    WEBHOOKS.labels(result=_result)
for _result in ("acquired", "timeout"):
    LIMITER_WAIT.labels(result=_result)


def count_dial_result(*, kind: str, reason: str | None) -> None:
    """Count one click-to-call answer that did not originate a call (no-op for `originated`)."""
    if kind != "originated":
        API_ERRORS.labels(kind=kind, reason=reason or "none").inc()


def queue_name() -> str:
    """Return the Celery queue the dialer's tasks go to (one per deployment prefix)."""
    from dialer.config import get_settings

    return get_settings().redis_prefix


@cache
def _redis() -> Any:
    import redis

    from dialer.embedded import resolve_urls

    return redis.Redis.from_url(resolve_urls().redis_url, socket_timeout=1, socket_connect_timeout=1)


def queue_depth(client: Any, queue: str) -> int:
    """Return the messages waiting in a Celery queue on Redis (every priority list)."""
    keys = [queue if step == 0 else f"{queue}\x06\x16{step}" for step in CELERY_PRIORITY_STEPS]
    pipe = client.pipeline()
    for key in keys:
        pipe.llen(key)
    return int(sum(int(n) for n in pipe.execute()))


class ScrapeTimeCollector(Collector):
    """Gauges read when Prometheus scrapes: Celery queue depth (Redis), calls in progress (Postgres)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue = queue_name()
        up = GaugeMetricFamily("dialer_redis_up", "1 when Redis answered this scrape")
        try:
            depth = queue_depth(_redis(), queue)
        except Exception as exc:  # a scrape must never fail because Redis is away
            log.warning("metrics_redis_unavailable", error=type(exc).__name__)
            up.add_metric([], 0)
        else:
            up.add_metric([], 1)
            gauge = GaugeMetricFamily("dialer_queue_depth", "Dial tasks waiting in the Celery queue", labels=["queue"])
            gauge.add_metric([queue], depth)
            yield gauge
        yield up
        try:
            in_progress = _calls_in_progress()
        except Exception as exc:
            log.warning("metrics_database_unavailable", error=type(exc).__name__)
        else:
            calls = GaugeMetricFamily(
                "dialer_calls_in_progress", "Attempts queued or on the line, running and paused campaigns"
            )
            calls.add_metric([], in_progress)
            yield calls


def _calls_in_progress() -> int:
    from sqlalchemy import text

    from dialer.db import session_scope

    live = ", ".join(f"'{s.value}'" for s in sorted({AttemptStatus.QUEUED, *ATTEMPT_LIVE}, key=lambda s: s.value))
    with session_scope() as session:
        session.execute(text("SET LOCAL statement_timeout = '2s'"))
        # Per campaign through ix_call_attempts_campaign_status: no scan of finished attempts.
        return int(
            session.scalar(
                text(
                    "SELECT count(*) FROM campaigns AS c JOIN call_attempts AS a ON a.campaign_id = c.id"
                    f" WHERE c.state IN ('running', 'paused') AND a.status IN ({live})"
                )
            )
            or 0
        )


def render() -> bytes:
    """Return every process's metrics on this host, plus the scrape-time gauges, in Prometheus text format."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(MULTIPROC_DIR))
    registry.register(ScrapeTimeCollector())
    return generate_latest(registry)


def clear_multiprocess_dir(path: Path | None = None) -> int:
    """Delete the per-process sample files (call before a host's dialer processes start); return how many."""
    removed = 0
    for file in (path or MULTIPROC_DIR).glob("*.db"):
        file.unlink(missing_ok=True)
        removed += 1
    return removed
