import pytest

from tiketi.core.settings import (
    DEV_JWT_SECRET,
    ConfigurationError,
    Environment,
    MpesaEnvironment,
    Settings,
    normalize_database_url,
)

STRONG = "q8Vh3kzP0x7LwN2rT5yB9mC4dF6gJ1sA-long-random"
MPESA = {
    "mpesa_env": MpesaEnvironment.sandbox,
    "mpesa_consumer_key": "k",
    "mpesa_consumer_secret": "s",
    "mpesa_shortcode": "174379",
    "mpesa_passkey": "p",
    "mpesa_callback_base_url": "https://api.example.com",
    "mpesa_callback_token": "t" * 32,
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgresql://u:p@db/app", "postgresql+asyncpg://u:p@db/app"),
        ("postgresql://u@db/app?sslmode=require", "postgresql+asyncpg://u@db/app?ssl=require"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
    ],
)
def test_database_url_accepts_provider_forms(raw: str, expected: str) -> None:
    assert normalize_database_url(raw) == expected


def test_database_url_rejects_other_databases() -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        normalize_database_url("mysql://u@db/app")


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/d")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("HOLD_TTL_SECONDS", "300")
    settings = Settings()
    assert settings.database_url == "postgresql+asyncpg://u@h/d"
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.hold_ttl_seconds == 300


def _production(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "tiketi_env": Environment.production,
        "database_url": "postgresql://u@db/app",
        "jwt_secret": STRONG,
        **MPESA,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def test_production_accepts_a_complete_safe_configuration() -> None:
    assert _production().is_production


@pytest.mark.parametrize(
    "secret", [DEV_JWT_SECRET, "short", "change-me-please-change-me-please-123", ""]
)
def test_production_refuses_weak_jwt_secret(secret: str) -> None:
    with pytest.raises(ConfigurationError, match="JWT_SECRET"):
        _production(jwt_secret=secret)


def test_production_refuses_wildcard_cors_with_credentials() -> None:
    with pytest.raises(ConfigurationError, match="CORS_ORIGINS"):
        _production(cors_origins=["*"])


def test_production_refuses_simulator_and_missing_credentials() -> None:
    with pytest.raises(ConfigurationError, match="MPESA_ENV"):
        _production(mpesa_env=MpesaEnvironment.simulator)
    with pytest.raises(ConfigurationError, match="MPESA_PASSKEY"):
        _production(mpesa_passkey=None)


def test_development_allows_the_dev_secret() -> None:
    assert Settings.model_validate({"tiketi_env": "development"}).jwt_secret == DEV_JWT_SECRET
