"""Shared request dependencies: database session and token checks."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from dialer.config import Settings, get_settings
from dialer.db import session_scope


def token_ok(given: str | None, expected: str) -> bool:
    """Compare tokens in constant time; an unset expected token accepts nothing."""
    return bool(expected) and given is not None and hmac.compare_digest(given.encode(), expected.encode())


def get_db() -> Iterator[Session]:
    """One session per request; committed on success."""
    with session_scope() as session:
        yield session


def require_api_token(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> None:
    """Refuse API calls without `Authorization: Bearer $DIALER_API_TOKEN`."""
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else None
    if not token_ok(token, settings.api_token.get_secret_value()):
        raise HTTPException(status_code=401, detail="missing or wrong bearer token")


DbSession = Annotated[Session, Depends(get_db)]
