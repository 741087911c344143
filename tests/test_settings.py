"""Settings are validated once, and `serve` refuses to start naming every problem."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.__main__ import main
from bot.settings import Settings, SettingsError, load_settings, normalize_database_url


def _pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_serve_refuses_and_names_every_missing_setting(monkeypatch, capsys):
    for name in ("GITHUB_WEBHOOK_SECRET", "GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "GITHUB_WEBHOOK_SECRET" in err and "GITHUB_APP_ID" in err and "GITHUB_PRIVATE_KEY" in err


def test_unparseable_private_key_is_reported_without_echoing_it(monkeypatch):
    settings = Settings(github_webhook_secret="s3cret", github_app_id="42", github_private_key="not-a-key-material")
    problems = settings.problems_for_serving()
    assert problems == ["the GitHub private key does not parse as an unencrypted PEM RSA key"]
    assert "not-a-key-material" not in " ".join(problems)


def test_complete_settings_have_no_problems():
    pem = _pem().replace("\n", "\\n")  # as pasted into a single env var
    settings = Settings(github_webhook_secret="s3cret", github_app_id="42", github_private_key=pem)
    assert settings.problems_for_serving() == []


def test_invalid_values_raise_one_error_naming_each_field():
    with pytest.raises(SettingsError) as info:
        load_settings(port="not-a-port", log_format="xml")
    text = str(info.value)
    assert "PORT" in text and "LOG_FORMAT" in text


def test_per_environment_cloudflare_overrides(monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "base-token")
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "a" * 32)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN_PRODUCTION", "prod-token")
    settings = Settings()
    prod = settings.cloudflare_credentials("production")
    staging = settings.cloudflare_credentials("staging")
    assert prod.api_token.get_secret_value() == "prod-token" and prod.account_id == "a" * 32
    assert staging.api_token.get_secret_value() == "base-token"
    assert "prod-token" not in repr(prod)


@pytest.mark.parametrize(
    "url, expected",
    [
        ("sqlite:///flareship.db", "sqlite+aiosqlite:///flareship.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_database_url_forms(url, expected):
    assert normalize_database_url(url) == expected


def test_bad_database_url_is_a_clear_error():
    with pytest.raises(ValueError, match="DATABASE_URL"):
        normalize_database_url("mysql://x")
