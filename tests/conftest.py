"""Test fixtures: real PostgreSQL and Redis, schema built by the migrations once per session.

DIALER_TEST_DATABASE_URL / DIALER_TEST_REDIS_URL name the servers; without them the embedded
servers under ./var/ are started. A fresh database `dialer_test_<pid>` is created per run.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent

# No test reaches beyond this machine.
_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> object:
    if isinstance(address, tuple) and self.family in (socket.AF_INET, socket.AF_INET6):
        host = str(address[0])
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            raise RuntimeError(f"test tried to reach {host}: tests stay on localhost")
    return _real_connect(self, address)  # type: ignore[arg-type]


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]


def _server_urls() -> tuple[str, str]:
    db = os.environ.get("DIALER_TEST_DATABASE_URL")
    rd = os.environ.get("DIALER_TEST_REDIS_URL")
    if db and rd:
        return db, rd
    from dialer.embedded import ensure_services

    urls = ensure_services(ROOT / "var")
    return db or urls.database_url, rd or urls.redis_url


@pytest.fixture(scope="session")
def service_urls() -> Iterator[tuple[str, str]]:
    """Create a fresh database, migrate it, and point the dialer's settings at it."""
    base_db, redis_url = _server_urls()
    base = make_url(base_db).set(drivername="postgresql+psycopg")
    name = f"dialer_test_{os.getpid()}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    db_url = base.set(database=name).render_as_string(hide_password=False)
    # Each run gets its own Redis key prefix, so parallel runs and the demo never collide.
    os.environ["DIALER_DATABASE_URL"] = db_url
    os.environ["DIALER_REDIS_URL"] = redis_url
    os.environ["DIALER_REDIS_PREFIX"] = f"dialer-test-{uuid.uuid4().hex[:8]}"
    _reset_process_caches()

    from alembic import command
    from alembic.config import Config

    command.upgrade(Config(str(ROOT / "alembic.ini")), "head")
    yield db_url, redis_url
    _reset_process_caches()
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _reset_process_caches() -> None:
    import dialer.embedded
    from dialer.config import get_settings
    from dialer.db import reset_engine

    get_settings.cache_clear()
    dialer.embedded._resolved = None
    reset_engine()


@pytest.fixture(scope="session")
def engine(service_urls: tuple[str, str]) -> Iterator[sa.Engine]:
    from dialer.db import get_engine

    yield get_engine()


@pytest.fixture
def session(engine: sa.Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back at the end of the test."""
    connection = engine.connect()
    outer = connection.begin()
    s = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield s
    finally:
        s.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def clean_db(engine: sa.Engine) -> Iterator[sa.Engine]:
    """For tests whose other processes must see committed rows: empty every table afterwards."""
    yield engine
    from dialer.models import Base

    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as c:
        c.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
