"""No secret reaches a log line: webhook secret, App private key, installation token, end to end."""

from __future__ import annotations

import io
import json
import logging
import secrets

from bot.logs import configure_logging
from bot.services import SERVICES
from tests.plugins.github_sim import INSTALLATION_ID, seed_repo
from tests.plugins.webhooks import load_fixture
from tests.plugins.webhooks import wait_processed as processed


async def test_secrets_never_reach_the_logs(github_sim, make_flareship_client, database):
    stream = io.StringIO()
    handler = configure_logging("DEBUG", "json", stream)
    try:
        seed_repo(github_sim)
        webhook_secret = "whsec-" + secrets.token_hex(16)
        private_key = github_sim.app_private_key
        client = await make_flareship_client(
            github_webhook_secret=webhook_secret,
            github_api_url=github_sim.url,
            github_app_id=str(github_sim.app_id),
            github_private_key=private_key,
        )
        url = str(client.make_url("/webhooks/github"))
        services = client.app[SERVICES]

        # A signed webhook through intake, store and dispatcher; a forged one; a ping.
        payload = load_fixture("installation.created")
        payload["installation"]["id"] = INSTALLATION_ID
        ok = await github_sim.deliver("installation", payload, url, webhook_secret, delivery_id="log-1")
        assert ok.status == 202
        forged = await github_sim.deliver("installation", payload, url, "not-" + webhook_secret, delivery_id="log-2")
        assert forged.status == 401
        assert (await github_sim.deliver("ping", load_fixture("ping"), url, webhook_secret)).status == 200
        assert (await processed(database, "log-1")).status == "done"

        # An installation token minted for real (App JWT -> simulated GitHub), then carelessly logged.
        token = await services.github.installation_token(INSTALLATION_ID)
        careless = logging.getLogger("flareship.careless")
        careless.info("minted %s for %s with settings %r", token.token, INSTALLATION_ID, services.settings)
        careless.warning("secret=%s key=%s", webhook_secret, private_key)
        try:
            raise RuntimeError(f"GitHub refused token {token.token} signed with {private_key}")
        except RuntimeError:
            careless.exception("request failed")
    finally:
        logging.getLogger().removeHandler(handler)

    output = stream.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert len(lines) >= 5, output
    assert all(entry["correlation_id"] for entry in lines)
    assert any(entry["correlation_id"] == "log-1" for entry in lines), "dispatcher lines carry the delivery id"
    leaks = [webhook_secret, token.token] + [line for line in private_key.splitlines() if len(line) >= 12 and "-----" not in line]
    for leak in leaks:
        assert leak not in output, f"a secret reached the logs: {leak[:8]}..."
