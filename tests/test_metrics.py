"""/metrics: counters from several processes add up, scrape-time gauges read Redis and Postgres."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from dialer import metrics
from dialer.config import get_settings
from dialer.db import session_scope

ROOT = Path(__file__).resolve().parent.parent


def sample(text: str, name: str, **labels: str) -> float | None:
    """Return one sample's value from Prometheus text output (None when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        got = ",".join(sorted(p for p in (match.group(2) or "").split(",") if p))
        if got == want:
            return float(match.group(3))
    return None


def test_metric_names_and_labels_are_exported(service_urls: tuple[str, str]) -> None:
    text = metrics.render().decode()
    for name in (
        "dialer_calls_placed_total",
        "dialer_api_errors_total",
        "dialer_call_outcomes_total",
        "dialer_limiter_wait_seconds",
        "dialer_webhooks_total",
        "dialer_webhook_lag_seconds",
        "dialer_queue_depth",
        "dialer_redis_up",
        "dialer_calls_in_progress",
    ):
        assert f"# HELP {name}" in text or f"# HELP {name.removesuffix('_total')}" in text, name
    # Known label values exist at zero before the first event.
    assert sample(text, "dialer_call_outcomes_total", outcome="lost") is not None
    assert sample(text, "dialer_webhooks_total", result="duplicate") is not None
    assert sample(text, "dialer_api_errors_total", kind="retry", reason="rate_limited") is not None


def test_count_dial_result(service_urls: tuple[str, str]) -> None:
    def value() -> float:
        return sample(metrics.render().decode(), "dialer_api_errors_total", kind="failed", reason="agent_offline") or 0

    before = value()
    metrics.count_dial_result(kind="failed", reason="agent_offline")
    metrics.count_dial_result(kind="originated", reason=None)
    assert value() == before + 1
    metrics.count_dial_result(kind="ambiguous", reason=None)
    assert sample(metrics.render().decode(), "dialer_api_errors_total", kind="ambiguous", reason="none")


CHILDREN = textwrap.dedent(
    """
    import multiprocessing, os, sys
    import prometheus_client  # imported first: dialer.metrics must still switch to multiprocess mode
    from dialer import metrics

    def work(n):
        for _ in range(n):
            metrics.CALLS_PLACED.inc()
        metrics.CALL_OUTCOMES.labels(outcome="busy").inc(n)
        metrics.WEBHOOK_LAG.observe(n)
        metrics.LIMITER_WAIT.labels(result="acquired").observe(0.01 * n)

    if __name__ == "__main__":
        ctx = multiprocessing.get_context(sys.argv[1])
        procs = [ctx.Process(target=work, args=(n,)) for n in (3, 4, 5)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            assert p.exitcode == 0
        print(metrics.MULTIPROC_DIR)
        sys.stdout.write(metrics.render().decode())
    """
)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_counters_add_up_across_processes(service_urls: tuple[str, str], tmp_path: Path, start_method: str) -> None:
    script = tmp_path / "children.py"
    script.write_text(CHILDREN)
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    env["DIALER_VAR_DIR"] = str(tmp_path / "var")
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, str(script), start_method], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    first, _, text = out.stdout.partition("\n")
    # No PROMETHEUS_MULTIPROC_DIR: the default under the settings' var_dir, shared by the children.
    assert Path(first) == (tmp_path / "var" / "prometheus").resolve()
    assert sample(text, "dialer_calls_placed_total") == 12
    assert sample(text, "dialer_call_outcomes_total", outcome="busy") == 12
    assert sample(text, "dialer_webhook_lag_seconds_count") == 3
    assert sample(text, "dialer_webhook_lag_seconds_sum") == 12
    assert sample(text, "dialer_limiter_wait_seconds_count", result="acquired") == 3
    assert len(list((tmp_path / "var" / "prometheus").glob("counter_*.db"))) >= 3
    assert metrics.clear_multiprocess_dir(tmp_path / "var" / "prometheus") >= 3


@pytest.fixture
def queue(service_urls: tuple[str, str]) -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(service_urls[1])
    name = get_settings().redis_prefix
    keys = [name, f"{name}\x06\x163"]
    client.delete(*keys)
    yield client, name
    client.delete(*keys)


def test_queue_depth_is_read_from_redis_at_scrape_time(queue: tuple[redis.Redis, str]) -> None:
    client, name = queue
    assert sample(metrics.render().decode(), "dialer_queue_depth", queue=name) == 0
    client.rpush(name, "a", "b")
    client.rpush(f"{name}\x06\x163", "c")
    text = metrics.render().decode()
    assert sample(text, "dialer_queue_depth", queue=name) == 3
    assert sample(text, "dialer_redis_up") == 1


def test_redis_down_does_not_break_the_scrape(service_urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_redis", lambda: redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))
    text = metrics.render().decode()
    assert sample(text, "dialer_redis_up") == 0
    assert sample(text, "dialer_queue_depth", queue=get_settings().redis_prefix) is None


def test_calls_in_progress_and_the_endpoint(clean_db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from factories import add_leads, agents_of, make_attempt, make_campaign

    from dialer.states import AttemptStatus

    with session_scope() as s:
        campaign = make_campaign(s, agents=2)
        leads = add_leads(s, campaign, 2)
        a, b = agents_of(campaign)
        make_attempt(s, campaign=campaign, lead=leads[0], agent=a, status=AttemptStatus.ORIGINATED)
        make_attempt(s, campaign=campaign, lead=leads[1], agent=b, status=AttemptStatus.COMPLETED)
    monkeypatch.setenv("DIALER_API_TOKEN", "metrics-api-token")
    get_settings.cache_clear()
    from dialer.web.app import create_app

    with TestClient(create_app()) as client:
        response = client.get("/metrics")
    get_settings.cache_clear()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert sample(response.text, "dialer_calls_in_progress") == 1
