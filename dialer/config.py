"""Settings: every environment variable the dialer reads, in one place."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """The `DIALER_*` environment, typed; secrets stay `SecretStr` and are never printed."""

    model_config = SettingsConfigDict(env_prefix="DIALER_", extra="ignore")

    # Infrastructure. Unset URLs mean "use the embedded servers under var_dir".
    database_url: str | None = None
    redis_url: str | None = None
    var_dir: Path = Path("var")
    # PostgreSQL connections each process keeps open between uses. The web's webhook threads share
    # them; a burst opens up to 10 more, closed after use (each a new server process, so costly).
    db_pool_size: int = Field(default=20, ge=1)

    # Acefone.
    acefone_base_url: str = "https://api-account-uk.acefone.com"
    acefone_token: SecretStr = SecretStr("")
    # Optional login flow (short-lived tokens, refreshed before expiry, shared through Redis).
    acefone_login_id: str | None = None
    acefone_password: SecretStr = SecretStr("")
    acefone_connect_timeout: float = 3.0
    acefone_read_timeout: float = 10.0

    # Our own HTTP surface.
    webhook_token: SecretStr = SecretStr("")
    # The customer templates webhook bodies: {"our_name": "their_key"}, e.g. {"custom_identifier": "cid"}.
    webhook_field_map: dict[str, str] = Field(default_factory=dict)
    # inline: the web request stores and processes (lowest agent-release latency);
    # deferred: it only stores, and the beat's event tick processes (fastest answer under storms).
    webhook_processing: Literal["inline", "deferred"] = "inline"
    api_token: SecretStr = SecretStr("")
    public_url: str = "http://127.0.0.1:8000"
    # The largest lead file accepted, by the CLI and by the REST upload.
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, gt=0)

    # Dispatch.
    max_cps: float = Field(default=5.0, gt=0)
    # Fleet-wide pause after a 429 that carries no Retry-After.
    rate_limit_pause: float = Field(default=5.0, gt=0)
    pacer_interval: float = Field(default=1.0, gt=0)
    reconcile_interval: float = Field(default=30.0, gt=0)
    reconcile_grace: int = Field(default=120, ge=0)
    # A queued dial not claimed after this long lost its message (broker restart): publish it again.
    requeue_after: int = Field(default=90, ge=5)
    agent_wrapup_seconds: int = Field(default=5, ge=0)
    redis_prefix: str = "dialer"

    # Webhook time stamps arrive in the account's zone (IST unless changed in the portal).
    account_timezone: str = "Asia/Kolkata"


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
