"""Benchmark webhook ingest: `dialer web` against a bare FastAPI endpoint that only INSERTs the body.

    .venv/bin/python bench/webhook_bench.py [--seconds 8] [--rate 200]

Both servers run as single uvicorn processes on this machine against the same PostgreSQL (a
throwaway database on the server named by DIALER_DATABASE_URL, else the embedded one). Measured
in the same run:
  (a) throughput with 16 concurrent senders for --seconds, for each server; the ratio must be >= 0.5;
  (b) per-request latency for `dialer web` at a steady --rate webhooks/s; the p99 must be <= 50 ms.
The events are well-formed hangups for calls we do not know (stored, answered 200 as orphans),
which is the full path: authenticate, parse, store, correlate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dialer.fleet import free_port  # noqa: E402

TOKEN = "bench-webhook-token"  # noqa: S105 - a throwaway token for a local benchmark

BARE_APP = """
import os

import sqlalchemy as sa
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

engine = sa.create_engine(os.environ["BENCH_DB_URL"], pool_size=5, max_overflow=10)
app = FastAPI()


def insert(body: bytes) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO bench_raw (body) VALUES (:b)"), {"b": body.decode()})


@app.post("/webhooks/acefone")
async def ingest(request: Request) -> dict:
    await run_in_threadpool(insert, await request.body())
    return {"ok": True}


@app.get("/healthz")
def healthz() -> dict:
    return {"ok": True}
"""


def hangup(i: int) -> bytes:
    return json.dumps(
        {
            "uuid": uuid.uuid4().hex[:13],
            "call_id": f"1775719461.{i:06d}",
            "custom_identifier": f"c999999-l{i + 1}-a1",
            "call_status": "answered",
            "billsec": "11",
            "duration": "15",
            "hangup_cause_key": "NORMAL_CLEARING",
            "end_stamp": "2026-04-09 12:55:00",
            "campaign_name": "$campaign_name",
        }
    ).encode()


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode})")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def throughput(url: str, seconds: float, senders: int = 16) -> float:
    done = [0] * senders
    stop = time.monotonic() + seconds

    def send(k: int) -> None:
        with httpx.Client(timeout=10, headers={"X-Webhook-Token": TOKEN, "content-type": "application/json"}) as c:
            i = k * 10_000_000
            while time.monotonic() < stop:
                r = c.post(url, content=hangup(i))
                r.raise_for_status()
                done[k] += 1
                i += 1

    threads = [threading.Thread(target=send, args=(k,)) for k in range(senders)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - start)


def latency(url: str, rate: float, seconds: float) -> list[float]:
    """Send at a steady rate (open loop, one thread per in-flight request); return latencies in ms."""
    out: list[float] = []
    lock = threading.Lock()
    client = httpx.Client(
        timeout=10,
        headers={"X-Webhook-Token": TOKEN, "content-type": "application/json"},
        limits=httpx.Limits(max_connections=64),
    )

    def one(i: int) -> None:
        t0 = time.perf_counter()
        client.post(url, content=hangup(50_000_000 + i)).raise_for_status()
        with lock:
            out.append((time.perf_counter() - t0) * 1000)

    threads: list[threading.Thread] = []
    start = time.monotonic()
    for i in range(int(rate * seconds)):
        target = start + i / rate
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=one, args=(i,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    client.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rate", type=float, default=200)
    args = parser.parse_args()

    from dialer.db import database_url

    base = make_url(database_url())
    name = f"dialer_bench_{os.getpid()}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    db_url = base.set(database=name).render_as_string(hide_password=False)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = {**os.environ, "DIALER_DATABASE_URL": db_url, "DIALER_WEBHOOK_TOKEN": TOKEN, "DIALER_API_TOKEN": TOKEN}
        subprocess.run([sys.executable, "-m", "dialer", "db", "upgrade"], env=env, check=True, capture_output=True)
        bench_engine = sa.create_engine(db_url)
        with bench_engine.begin() as c:
            c.execute(sa.text("CREATE TABLE bench_raw (id bigserial primary key, body text not null)"))
        bench_engine.dispose()
        web_port, deferred_port, bare_port = free_port(), free_port(), free_port()
        log = open(os.devnull, "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "dialer", "web", "--port", str(web_port)], env=env, stdout=log, stderr=log
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "dialer", "web", "--port", str(deferred_port)],
                env={**env, "DIALER_WEBHOOK_PROCESSING": "deferred"},
                stdout=log,
                stderr=log,
            )
        )
        bare_file = Path(tempfile.mkdtemp()) / "bench_bare.py"
        bare_file.write_text(BARE_APP)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    str(bare_file.parent),
                    f"{bare_file.stem}:app",
                    "--port",
                    str(bare_port),
                    "--log-level",
                    "warning",
                ],
                env={**env, "BENCH_DB_URL": db_url},
                stdout=log,
                stderr=log,
            )
        )
        wait_up(f"http://127.0.0.1:{web_port}/healthz", procs[0])
        wait_up(f"http://127.0.0.1:{deferred_port}/healthz", procs[1])
        wait_up(f"http://127.0.0.1:{bare_port}/healthz", procs[2])
        bare = throughput(f"http://127.0.0.1:{bare_port}/webhooks/acefone", args.seconds)
        ours = throughput(f"http://127.0.0.1:{web_port}/webhooks/acefone", args.seconds)
        deferred = throughput(f"http://127.0.0.1:{deferred_port}/webhooks/acefone", args.seconds)
        lat = sorted(latency(f"http://127.0.0.1:{web_port}/webhooks/acefone", args.rate, args.seconds))
        lat_d = sorted(latency(f"http://127.0.0.1:{deferred_port}/webhooks/acefone", args.rate, args.seconds))
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        admin_c = admin.connect()
        admin_c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_c.close()
        admin.dispose()

    table = Table(title="Webhook ingest (one uvicorn process each, same machine, same run)")
    for col in ("measure", "value", "target", "ok"):
        table.add_column(col)
    table.add_row("bare INSERT endpoint", f"{bare:,.0f} req/s", "", "")
    for mode, rate, lats in (("inline", ours, lat), ("deferred", deferred, lat_d)):
        ratio = rate / bare
        p50 = statistics.median(lats)
        p99 = lats[max(0, int(len(lats) * 0.99) - 1)]
        table.add_row(f"dialer web ({mode})", f"{rate:,.0f} req/s", "", "")
        table.add_row(f"  ratio to bare ({mode})", f"{ratio:.2f}", ">= 0.50", "yes" if ratio >= 0.5 else "NO")
        table.add_row(f"  p50 at {args.rate:.0f}/s ({mode})", f"{p50:.1f} ms", "", "")
        table.add_row(f"  p99 at {args.rate:.0f}/s ({mode})", f"{p99:.1f} ms", "<= 50 ms", "yes" if p99 <= 50 else "NO")
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
