"""Child processes of a run (simulator, web, workers, beat), started and stopped together.

Used by `dialer demo`, the integration tests, the chaos run and the benches: one place that knows
how to start a `dialer` process, wait for it, kill it, and stop them all.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx


@dataclass
class Fleet:
    """The child processes of a run, stopped together."""

    log_dir: Path
    env: dict[str, str]
    procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=list)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start `dialer ARGS...` in its own process group, logging to log_dir/name.log."""
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "dialer", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((name, proc, log))
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL one child and its process group (chaos), and forget it."""
        for entry in list(self.procs):
            if entry[1] is proc:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
                entry[2].close()
                self.procs.remove(entry)

    def check(self) -> None:
        """Raise if a child died."""
        for name, proc, _ in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir / (name + '.log')}")

    def stop(self) -> None:
        """SIGTERM every child (and its children), then SIGKILL what is left."""
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc, log in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
        for _, proc, _ in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # stray grandchildren (celery pool)
            except ProcessLookupError:
                pass


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, fleet: Fleet, timeout: float = 30) -> None:
    """Wait until `url` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fleet.check()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def fleet_env(*, database_url: str, redis_url: str, sim_port: int, web_port: int, var_dir: Path) -> dict[str, str]:
    """Return the environment for a demo fleet: fresh secrets, the simulator as Acefone."""
    env = dict(os.environ)
    env.update(
        DIALER_DATABASE_URL=database_url,
        DIALER_REDIS_URL=redis_url,
        DIALER_ACEFONE_BASE_URL=f"http://127.0.0.1:{sim_port}",
        DIALER_ACEFONE_TOKEN=secrets.token_urlsafe(24),
        DIALER_WEBHOOK_TOKEN=secrets.token_urlsafe(24),
        DIALER_API_TOKEN=secrets.token_urlsafe(24),
        DIALER_PUBLIC_URL=f"http://127.0.0.1:{web_port}",
        DIALER_MAX_CPS=env.get("DIALER_MAX_CPS", "10"),
        DIALER_AGENT_WRAPUP_SECONDS="1",
        DIALER_RECONCILE_INTERVAL="5",
        DIALER_RECONCILE_GRACE="15",
        DIALER_REDIS_PREFIX=f"demo-{secrets.token_hex(4)}",
        DIALER_VAR_DIR=str(var_dir),
    )
    return env
