"""Shared test fixtures live in tests/plugins/, one module per area, so each area owns its own."""

pytest_plugins = [
    "tests.plugins.database",
    "tests.plugins.github_sim",
    "tests.plugins.cloudflare_sim",
    "tests.plugins.webhooks",
]
