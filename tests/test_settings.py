"""Settings are validated once, and `serve` refuses to start naming every problem."""

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.__main__ import main
from bot.settings import (
    Settings,
    SettingsError,
    load_serving_settings,
    load_settings,
    normalize_database_url,
)


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


# -- .env, <NAME>_FILE, one pass, --version ------------------------------------------------------

SERVE_VARS = ("GITHUB_WEBHOOK_SECRET", "GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_PRIVATE_KEY_PATH", "PORT",
              "GITHUB_PRIVATE_KEY_FILE", "GITHUB_WEBHOOK_SECRET_FILE", "CLOUDFLARE_API_TOKEN", "DATABASE_URL",
              "CLOUDFLARE_API_TOKEN_FILE", "CLOUDFLARE_API_TOKEN_PRODUCTION", "CLOUDFLARE_API_TOKEN_PRODUCTION_FILE",
              "METRICS_TOKEN", "METRICS_TOKEN_FILE", "DATABASE_URL_FILE", "PUBLIC_URL", "GITHUB_URL")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No Flareship variable in the environment, and an empty working directory for `.env`."""
    for name in SERVE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_dotenv_is_read_and_the_environment_wins(clean_env, monkeypatch):
    (clean_env / ".env").write_text('PUBLIC_URL=https://from-dotenv.example\nGITHUB_APP_ID=7\n'
                                    'CLOUDFLARE_API_TOKEN_STAGING="dotenv-staging"\n')
    monkeypatch.setenv("GITHUB_APP_ID", "8")
    settings = load_settings()
    assert settings.public_url == "https://from-dotenv.example"
    assert settings.github_app_id == "8"
    assert settings.cloudflare_credentials("staging").api_token.get_secret_value() == "dotenv-staging"
    assert Settings().public_url != "https://from-dotenv.example"  # only load_settings reads .env


def test_secret_settings_accept_files_with_the_trailing_newline_stripped(clean_env, monkeypatch):
    pem = _pem()
    for name, value in {"GITHUB_PRIVATE_KEY": pem, "GITHUB_WEBHOOK_SECRET": "hook-secret",
                        "CLOUDFLARE_API_TOKEN": "cf-token", "CLOUDFLARE_API_TOKEN_PRODUCTION": "cf-prod",
                        "METRICS_TOKEN": "metrics", "DATABASE_URL": "postgresql://u:pw@db/flareship"}.items():
        path = clean_env / name.lower()
        path.write_text(value + "\n")
        monkeypatch.setenv(f"{name}_FILE", str(path))
    monkeypatch.setenv("GITHUB_APP_ID", "42")
    settings = load_serving_settings()
    assert settings.private_key_pem() == pem.rstrip("\n")
    assert settings.github_webhook_secret.get_secret_value() == "hook-secret"
    assert settings.cloudflare_credentials("staging").api_token.get_secret_value() == "cf-token"
    assert settings.cloudflare_credentials("production").api_token.get_secret_value() == "cf-prod"
    assert "file" not in settings.environment_overrides  # CLOUDFLARE_API_TOKEN_FILE names no environment
    assert settings.metrics_token.get_secret_value() == "metrics"
    assert settings.async_database_url == "postgresql+asyncpg://u:pw@db/flareship"


def test_a_file_in_the_environment_beats_a_value_in_dotenv(clean_env, monkeypatch):
    (clean_env / ".env").write_text("GITHUB_WEBHOOK_SECRET=from-dotenv\n")
    (clean_env / "secret").write_text("from-file\n")
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET_FILE", str(clean_env / "secret"))
    assert load_settings().github_webhook_secret.get_secret_value() == "from-file"


def test_unreadable_secret_file_and_both_forms_are_clear_errors(clean_env, monkeypatch):
    monkeypatch.setenv("GITHUB_PRIVATE_KEY_FILE", str(clean_env / "missing.pem"))
    monkeypatch.setenv("METRICS_TOKEN", "inline")
    monkeypatch.setenv("METRICS_TOKEN_FILE", str(clean_env / "whatever"))
    with pytest.raises(SettingsError) as info:
        load_settings()
    problems = info.value.problems
    assert f"GITHUB_PRIVATE_KEY_FILE: cannot read {clean_env / 'missing.pem'}: No such file or directory" in problems
    assert "METRICS_TOKEN and METRICS_TOKEN_FILE are both set: set only one of them" in problems


def test_serve_reports_every_problem_in_one_pass(clean_env, monkeypatch, capsys):
    monkeypatch.setenv("PORT", "not-a-port")
    monkeypatch.setenv("GITHUB_APP_ID", "abc")
    monkeypatch.setenv("GITHUB_PRIVATE_KEY_FILE", str(clean_env / "missing.pem"))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "PORT:" in err
    assert "GITHUB_APP_ID must be the App's numeric id" in err
    assert "GITHUB_PRIVATE_KEY_FILE: cannot read" in err
    assert "GITHUB_WEBHOOK_SECRET is missing" in err
    assert "GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH is missing" not in err  # said once, by the _FILE line
    assert "Traceback" not in err


def test_secret_contents_never_appear_in_problems(clean_env, monkeypatch):
    (clean_env / "token").write_bytes(b"\xff\xfesecret-bytes")
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN_FILE", str(clean_env / "token"))
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "is not UTF-8 text" in str(info.value) and "secret-bytes" not in str(info.value)


def test_version_comes_from_the_package_metadata(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"flareship {version('flareship')}"
