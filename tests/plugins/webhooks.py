"""Webhook fixtures: real GitHub payloads, signed like GitHub signs them, into the real app.

Helpers (import them: `from tests.plugins.webhooks import load_fixture, sign, webhook_headers`):
- `load_fixture(name) -> dict` / `fixture_body(name) -> bytes` for tests/fixtures/github-webhooks/
- `sign(body, secret) -> "sha256=..."`, `webhook_headers(event, delivery_id, body, secret)`
- `post_webhook(client, event, payload, *, delivery_id=None, secret=TEST_WEBHOOK_SECRET)`
- `await wait_processed(database, delivery_id)`: until the app's dispatcher marked it done/failed

Fixtures:
- `flareship_settings_overrides`: a dict other areas override (or extend) to point the app at the
  simulated GitHub / Cloudflare (`github_api_url`, `github_app_id`, `github_private_key`, ...).
- `flareship_settings`: the `Settings` built from test defaults + those overrides + `database_url`.
- `make_flareship_client(**overrides)`: the real `init_app(settings)` behind a pytest-aiohttp client.
- `flareship_client`: the same with the defaults.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from bot.store.deliveries import DeliveryStore

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "github-webhooks"
TEST_WEBHOOK_SECRET = "test-webhook-secret-4f1c9d2e"
#: Settings that make a deployment's background loops quick enough for tests (the reporter's
#: coalescing and retries, the scheduler's passes, step 8's health probes).
FAST = {"github_report_interval": 0.05, "github_report_retry_delay": 0.05, "deployment_poll_seconds": 0.05,
        "health_check_interval": 0.05}
#: A loopback port nothing listens on: a handler that calls GitHub without a simulator fails fast.
UNREACHABLE_URL = "http://127.0.0.1:9"


def fixture_body(name: str) -> bytes:
    """The exact bytes of a recorded payload (`issue_comment.created.pull_request` or with `.json`)."""
    filename = name if name.endswith(".json") else f"{name}.json"
    return (FIXTURES_DIR / filename).read_bytes()


def load_fixture(name: str) -> dict:
    return json.loads(fixture_body(name))


def sign(body: bytes, secret: str = TEST_WEBHOOK_SECRET) -> str:
    """The `X-Hub-Signature-256` value GitHub would send for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_headers(
    event: str,
    delivery_id: str | None,
    body: bytes,
    secret: str | None = TEST_WEBHOOK_SECRET,
    *,
    content_type: str = "application/json",
) -> dict[str, str]:
    """GitHub's delivery headers; `secret=None` leaves the signature out."""
    headers = {
        "Content-Type": content_type,
        "User-Agent": "GitHub-Hookshot/test",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "1",
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(body, secret)
    return headers


def as_body(payload: dict | bytes | str) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return fixture_body(payload)
    return json.dumps(payload).encode()


async def post_webhook(client, event: str, payload: dict | bytes | str, *, delivery_id: str | None = None, secret: str | None = TEST_WEBHOOK_SECRET):
    """POST a signed webhook (`payload` a dict, raw bytes or a fixture name) to /webhooks/github."""
    body = as_body(payload)
    return await client.post("/webhooks/github", data=body, headers=webhook_headers(event, delivery_id, body, secret))


async def wait_processed(database, delivery_id: str, timeout: float = 10.0):
    """Poll the store until the dispatcher has finished `delivery_id`; returns the StoredDelivery."""
    import asyncio

    from bot.store import deliveries

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        stored = await DeliveryStore(database).get(delivery_id)
        if stored is not None and stored.status in (deliveries.DONE, deliveries.FAILED):
            return stored
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"delivery {delivery_id} not processed within {timeout}s: {stored}")
        await asyncio.sleep(0.02)


@pytest.fixture(scope="session")
def test_private_key_pem() -> str:
    """An RSA key for the App (PEM), made once per session."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def flareship_settings_overrides() -> dict[str, Any]:
    """Override this fixture (or update the dict it returns) to point the app at simulators."""
    return {}


@pytest.fixture
def flareship_settings_values(database_url, test_private_key_pem, flareship_settings_overrides) -> dict[str, Any]:
    """The test defaults (loopback only, a test secret, this test's database) plus the overrides."""
    values: dict[str, Any] = {
        "github_app_id": "1",
        "github_private_key": test_private_key_pem,
        "github_webhook_secret": TEST_WEBHOOK_SECRET,
        "github_api_url": UNREACHABLE_URL,
        "cloudflare_api_url": UNREACHABLE_URL + "/client/v4",
        "container_registry_url": UNREACHABLE_URL,
        "database_url": database_url,
        "public_url": "http://127.0.0.1:8000",
        "log_level": "INFO",
    }
    values.update(flareship_settings_overrides)
    return values


@pytest.fixture
def flareship_settings(flareship_settings_values):
    from bot.settings import Settings

    return Settings(**flareship_settings_values)


@pytest.fixture
def make_flareship_client(aiohttp_client, flareship_settings_values):
    """`await make_flareship_client(**settings_overrides)` -> a test client on the real app."""
    from bot.app import init_app
    from bot.settings import Settings

    async def make(**overrides):
        return await aiohttp_client(init_app(Settings(**{**flareship_settings_values, **overrides})))

    return make


@pytest.fixture
async def flareship_client(make_flareship_client):
    return await make_flareship_client()
