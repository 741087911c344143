"""Real project shapes deployed through webhooks: the PR-workflow harness of tests/workflows."""

from tests.workflows.conftest import database_backend, workflow, workflow_settings  # noqa: F401  (fixtures)
