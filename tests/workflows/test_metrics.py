"""/metrics after a comment-triggered deploy: webhook outcomes, GitHub headroom, deployments."""

from __future__ import annotations

import re

from tests.plugins.webhooks import post_webhook


def _sample(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_metrics_count_webhooks_rate_limit_headroom_and_deployments(workflow):
    await workflow.comment("/deploy staging")
    forged = await post_webhook(workflow.client, "issue_comment", workflow.comment_payload("/deploy staging"),
                                secret="not-the-secret")
    assert forged.status == 401

    response = await workflow.client.get("/metrics")
    text = await response.text()
    assert response.status == 200
    assert _sample(text, "flareship_webhook_deliveries_total", event="issue_comment", outcome="accepted") == 1
    assert _sample(text, "flareship_webhook_deliveries_total", event="issue_comment", outcome="processed") == 1
    assert _sample(text, "flareship_webhook_deliveries_total", event="unverified", outcome="rejected") == 1
    remaining = _sample(text, "flareship_rate_limit_remaining", service="github", scope="installation:4242")
    assert remaining is not None and 0 < remaining < workflow.sim.rate_limit
    assert _sample(text, "flareship_deployments_total", environment="staging", outcome="completed") == 1
