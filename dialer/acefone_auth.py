"""Acefone tokens: a long-lived portal token, or login + refresh shared by every worker via Redis.

A token is a secret: never logged, never printed, never in an exception message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import httpx
import redis
from pydantic import SecretStr

LOGIN_PATH = "/v1/auth/login"
REFRESH_PATH = "/v1/auth/refresh"
# Refresh this long before the vendor's expiry, so no request carries a token about to die.
REFRESH_MARGIN = 60


class AuthFailed(Exception):
    """Acefone refused the credentials (the message never carries them)."""


class AuthUnavailable(Exception):
    """The auth endpoint could not be reached: nothing was dialled, try again later."""


class TokenProvider(Protocol):
    def token(self) -> str: ...
    def invalidate(self, token: str) -> None: ...


class StaticToken:
    """The long-lived token from the portal (API Connect -> API Tokens)."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def token(self) -> str:
        """Return the token."""
        return self._token.get_secret_value()

    def invalidate(self, token: str) -> None:
        """Nothing to renew: a refused static token stays refused."""


class LoginToken:
    """Short-lived tokens from /v1/auth/login, refreshed before expiry, cached in Redis for the fleet."""

    def __init__(
        self,
        *,
        post: Callable[..., httpx.Response],
        login_id: str,
        password: SecretStr,
        cache: redis.Redis,
        prefix: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._post = post
        self._login_id = login_id
        self._password = password
        self._cache = cache
        self._fresh_key = f"{prefix}:acefone-token"
        self._stale_key = f"{prefix}:acefone-token-stale"
        self._lock_key = f"{prefix}:acefone-token-lock"
        self._clock = clock

    def token(self) -> str:
        """Return a valid token, logging in or refreshing (one worker at a time) when needed."""
        cached = self._cache.get(self._fresh_key)
        if cached:
            return _text(cached)
        deadline = self._clock() + 15
        while not self._cache.set(self._lock_key, "1", nx=True, ex=15):
            # Another worker is renewing: wait for its token rather than log in twice.
            time.sleep(0.05)
            cached = self._cache.get(self._fresh_key)
            if cached:
                return _text(cached)
            if self._clock() > deadline:
                break
        try:
            stale = self._cache.get(self._stale_key)
            token, ttl = self._refresh(_text(stale)) if stale else (None, 0)
            if token is None:
                token, ttl = self._login()
            self._cache.set(self._fresh_key, token, ex=max(1, ttl - REFRESH_MARGIN))
            self._cache.set(self._stale_key, token, ex=max(1, ttl))
            return token
        finally:
            self._cache.delete(self._lock_key)

    def invalidate(self, token: str) -> None:
        """Forget a token Acefone refused, so the next call logs in again."""
        for key in (self._fresh_key, self._stale_key):
            if _text(self._cache.get(key) or b"") == token:
                self._cache.delete(key)

    def _refresh(self, old: str) -> tuple[str | None, int]:
        try:
            response = self._post(REFRESH_PATH, headers={"Authorization": f"Bearer {old}"}, json={})
        except httpx.TransportError:
            return None, 0
        return _issued(response) if response.status_code == 200 else (None, 0)

    def _login(self) -> tuple[str, int]:
        body = {"login_id": self._login_id, "password": self._password.get_secret_value()}
        try:
            response = self._post(LOGIN_PATH, json=body)
        except httpx.TransportError as exc:
            raise AuthUnavailable(f"Acefone login unreachable ({type(exc).__name__})") from None
        if response.status_code in (401, 403, 422) or (response.status_code == 200 and _issued(response)[0] is None):
            raise AuthFailed("Acefone refused the login: check DIALER_ACEFONE_LOGIN_ID / DIALER_ACEFONE_PASSWORD")
        if response.status_code != 200:
            raise AuthUnavailable(f"Acefone login answered HTTP {response.status_code}")
        token, ttl = _issued(response)
        assert token is not None
        return token, ttl


def _issued(response: httpx.Response) -> tuple[str | None, int]:
    try:
        data: Any = response.json()
    except ValueError:
        return None, 0
    if not isinstance(data, dict) or not data.get("access_token"):
        return None, 0
    try:
        ttl = int(data.get("expires_in") or 3600)
    except (TypeError, ValueError):
        ttl = 3600
    return str(data["access_token"]), ttl


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
