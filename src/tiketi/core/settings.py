"""Settings from the environment (names fixed by the API contract, documented in .env.example)."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me"  # noqa: S105 - a marked placeholder
MIN_JWT_SECRET_LENGTH = 32
DEV_SIMULATOR_URL = "http://127.0.0.1:8001"
DEV_API_URL = "http://127.0.0.1:8000"
DEV_CALLBACK_TOKEN = "dev-callback-token"  # noqa: S105 - development only, refused in production
_PLACEHOLDER_WORDS = ("change", "secret", "example", "placeholder", "dev-only", "xxx", "todo")


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class MpesaEnvironment(StrEnum):
    simulator = "simulator"
    sandbox = "sandbox"
    production = "production"


class ConfigurationError(RuntimeError):
    """The settings cannot run safely; the message says what to set."""


def normalize_database_url(url: str) -> str:
    """Accept the `postgres://` / `postgresql://` URLs hosting providers hand out.

    SQLAlchemy needs the asyncpg driver named in the scheme, and asyncpg spells libpq's
    `sslmode` as `ssl`.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme
    if scheme in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        scheme = "postgresql+asyncpg"
    elif scheme != "postgresql+asyncpg":
        raise ValueError(
            f"DATABASE_URL must be a PostgreSQL URL (postgresql://user:pass@host:5432/db), "
            f"got scheme {parts.scheme!r}"
        )
    query = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "sslmode":
            key = "ssl"
        query.append((key, value))
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    tiketi_env: Environment = Environment.development
    database_url: str | None = None
    data_dir: str = Field(default=".tiketi", validation_alias="TIKETI_DATA_DIR")

    jwt_secret: str = DEV_JWT_SECRET
    jwt_algorithm: str = "HS256"
    jwt_issuer: str = "tiketi"
    jwt_audience: str = "tiketi-api"
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=30 * 86_400, ge=3600)

    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=30, ge=1)
    login_throttle_window_seconds: int = Field(default=900, ge=10)

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = True

    # Connections are kept, not overflowed: an overflow connection is closed whenever it comes
    # back while a few others are idle, so a bursty load kept opening new ones (a new server
    # process each, cold caches, every statement prepared again): with 5 + 5, search cost
    # PostgreSQL ~45% more CPU per request (docs/operations.md, "Sizing the database pool").
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=0, ge=0, le=200)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    db_statement_timeout_ms: int = Field(default=15_000, ge=100)
    db_lock_timeout_ms: int = Field(default=5_000, ge=10)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0)

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    log_level: str = "INFO"
    log_json: bool = True
    # FastAPI's own OpenTelemetry (spans, request metrics and exception logs sent to the global
    # OpenTelemetry providers, once an SDK configures them). Off by default: tiketi exports
    # Prometheus metrics and JSON logs itself, and while off FastAPI does not look for
    # providers on every request (~2% of a search's CPU).
    opentelemetry: bool = False

    hold_ttl_seconds: int = Field(default=600, ge=30, le=86_400)
    public_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    max_pending_orders_per_user: int = Field(default=3, ge=1)
    max_tickets_per_event_per_user: int = Field(default=10, ge=1)
    jobs_interval_seconds: float = Field(default=5.0, gt=0)
    jobs_enabled: bool = True

    mpesa_env: MpesaEnvironment = MpesaEnvironment.simulator
    mpesa_base_url: str | None = None
    mpesa_consumer_key: str | None = None
    mpesa_consumer_secret: str | None = None
    mpesa_shortcode: str | None = None
    mpesa_passkey: str | None = None
    mpesa_callback_base_url: str | None = None
    mpesa_callback_token: str | None = None
    # paybill (CustomerPayBillOnline) or till (CustomerBuyGoodsOnline, MPESA_TILL_NUMBER).
    mpesa_transaction_type: str = Field(default="paybill", pattern="^(paybill|till)$")
    mpesa_till_number: str | None = None
    # Optional allowlist of callback source addresses/networks (Safaricom publishes its own).
    mpesa_callback_allowed_ips: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # How long after the simulator accepts a push it sends the callback (development).
    mpesa_simulator_callback_delay_seconds: float = Field(default=3.0, ge=0)
    # Daraja timeouts: a read timeout after sending leaves the payment pending (never resent).
    mpesa_read_timeout_seconds: float = Field(default=30.0, gt=0)
    mpesa_total_timeout_seconds: float = Field(default=45.0, gt=0)
    payment_prompt_seconds: int = Field(default=120, ge=30)
    payment_reconcile_after_seconds: int = Field(default=90, ge=1)
    payment_review_after_seconds: int = Field(default=900, ge=60)

    @field_validator("cors_origins", "mpesa_callback_allowed_ips", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _normalize_url(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip():
            return normalize_database_url(value)
        return value

    @model_validator(mode="after")
    def _development_defaults(self) -> Settings:
        """Outside production, M-Pesa works out of the box against the local simulator."""
        if self.tiketi_env is Environment.production:
            return self
        if self.mpesa_env is MpesaEnvironment.simulator and not self.mpesa_base_url:
            self.mpesa_base_url = DEV_SIMULATOR_URL
        if not self.mpesa_callback_base_url:
            self.mpesa_callback_base_url = DEV_API_URL
        if not self.mpesa_callback_token:
            self.mpesa_callback_token = DEV_CALLBACK_TOKEN
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.tiketi_env is not Environment.production:
            return self
        problems = []
        secret = self.jwt_secret
        lowered = secret.lower()
        if (
            secret == DEV_JWT_SECRET
            or len(secret) < MIN_JWT_SECRET_LENGTH
            or any(word in lowered for word in _PLACEHOLDER_WORDS)
        ):
            problems.append(
                f"JWT_SECRET must be a random value of at least {MIN_JWT_SECRET_LENGTH} "
                "characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        if "*" in self.cors_origins and self.cors_allow_credentials:
            problems.append(
                "CORS_ORIGINS='*' cannot be combined with credentials: list the frontend "
                "origins explicitly (CORS_ORIGINS=https://app.example.com)"
            )
        if not self.database_url:
            problems.append("DATABASE_URL must be set in production (no embedded database)")
        if self.mpesa_env is MpesaEnvironment.simulator:
            problems.append(
                "MPESA_ENV must be `sandbox` or `production` (the simulator is for development)"
            )
        else:
            missing = [
                name.upper()
                for name in (
                    "mpesa_consumer_key",
                    "mpesa_consumer_secret",
                    "mpesa_shortcode",
                    "mpesa_passkey",
                    "mpesa_callback_base_url",
                    "mpesa_callback_token",
                )
                if not getattr(self, name)
            ]
            if missing:
                problems.append("M-Pesa credentials missing: set " + ", ".join(missing))
            elif len(self.mpesa_callback_token or "") < MIN_JWT_SECRET_LENGTH:
                problems.append(
                    f"MPESA_CALLBACK_TOKEN must be at least {MIN_JWT_SECRET_LENGTH} random "
                    "characters (it is what authenticates Safaricom's callbacks)"
                )
        if problems:
            raise ConfigurationError(
                "Refusing to start with TIKETI_ENV=production: " + "; ".join(problems)
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.tiketi_env is Environment.production


@lru_cache
def get_settings() -> Settings:
    return Settings()
