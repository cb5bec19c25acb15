"""The Celery app: broker from the dialer's settings, beat schedule, per-process resources."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_process_init

from dialer.config import get_settings
from dialer.embedded import resolve_urls
from dialer.logs import configure_logging


def create_app() -> Celery:
    """Build the Celery app for this process."""
    settings = get_settings()
    configure_logging()
    app = Celery("dialer")
    app.config_from_object("celeryconfig")
    redis_url = resolve_urls().redis_url
    app.conf.broker_url = redis_url
    # One queue per deployment prefix: two dialers (or test runs) on one Redis never share work.
    app.conf.task_default_queue = settings.redis_prefix
    # The pacer tick runs in the beat process itself (workers/refill.py), not as a task.
    app.conf.beat_schedule = {
        "reconcile": {"task": "dialer.reconcile", "schedule": settings.reconcile_interval},
        # Deferred mode processes every stored event here; inline mode only what a crash left behind.
        "process-events": {
            "task": "dialer.process_events",
            "schedule": settings.pacer_interval if settings.webhook_processing == "deferred" else 10.0,
        },
    }
    app.conf.beat_schedule_filename = str(settings.var_dir / "celerybeat-schedule")
    app.conf.imports = ("workers.tasks",)
    return app


app = create_app()


def publish_dial(attempt_id: int, countdown: float | None = None) -> None:
    """Queue one dial task (after the commit that claimed its attempt).

    Messages go to the queue by name (Celery's anonymous exchange). Workers declare the queue when
    they start; declaring it again with every message, Celery's default, cost a third of the
    publishing.
    """
    app.send_task("dialer.place_call", args=[attempt_id], countdown=countdown, declare=[])


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    # Connections inherited from the parent must not be shared with it (SQLAlchemy's fork advice).
    from dialer.db import dispose_after_fork

    dispose_after_fork()


@beat_init.connect
def _start_pacer(sender: Any = None, **_: Any) -> None:
    # The beat process runs the pacer tick, and paces at once campaigns whose agents a hangup has
    # just freed (workers/refill.py).
    from dialer.refill import default_queue
    from workers.refill import start

    start(queue=default_queue(), publish=publish_dial)
