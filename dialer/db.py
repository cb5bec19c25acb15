"""Engine and sessions: one engine per process, created lazily (after fork in workers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.util import identity_key

from dialer.config import get_settings
from dialer.refill import publish_after_commit

_engine: Engine | None = None
_factory: sessionmaker[Session] | None = None


def database_url() -> str:
    """Return the SQLAlchemy URL of the database this process uses."""
    from dialer.embedded import resolve_urls

    url = resolve_urls().database_url
    if url.startswith("postgresql://"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    return url


def get_engine() -> Engine:
    """Return this process's engine, creating it on first use."""
    global _engine, _factory
    if _engine is None:
        pool_size = get_settings().db_pool_size
        _engine = create_engine(database_url(), pool_pre_ping=True, pool_size=pool_size, max_overflow=10)
        _factory = sessionmaker(_engine, expire_on_commit=False)
        # Agents freed by a commit get their campaign paced at once (dialer/refill.py).
        publish_after_commit(_factory)
    return _engine


def new_session() -> Session:
    """Open a session on this process's engine; the caller commits."""
    get_engine()
    assert _factory is not None
    return _factory()


def expire_cached(session: Session, model: type[Any], key: Any) -> None:
    """Expire the session's copy of one row (if it holds one) after a Core UPDATE changed it.

    The hot paths update rows with prebuilt Core statements, which do not touch the ORM's
    identity map; this keeps a later read in the same session from seeing the old values.
    """
    obj = session.identity_map.get(identity_key(model, key))
    if obj is not None:
        session.expire(obj)


@contextmanager
def pinned_sessions() -> Iterator[Callable[[], Session]]:
    """Yield a session factory whose sessions all use one pooled connection, checked out (and
    pinged) once for the whole block: a dial's three short transactions pay for one checkout."""
    with get_engine().connect() as connection:
        assert _factory is not None
        factory = _factory
        yield lambda: factory(bind=connection)


@contextmanager
def session_scope() -> Iterator[Session]:
    """Open a session, commit on success, roll back on error."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_after_fork() -> None:
    """Drop connections inherited from a parent process without closing the parent's sockets."""
    if _engine is not None:
        _engine.dispose(close=False)


def reset_engine() -> None:
    """Forget this process's engine (tests point the process at another database)."""
    global _engine, _factory
    if _engine is not None:
        _engine.dispose()
    _engine = None
    _factory = None
