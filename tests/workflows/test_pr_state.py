"""PR workflow state: claims are first-wins, ids are recorded once, migrations match the tables."""

from __future__ import annotations

import pytest

from bot.store.db import Database
from bot.store.pr_state import PullRequestState


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_backend(request) -> str:
    """Both backends here (the workflow scenarios around it run on SQLite only)."""
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        if callable(server):
            server()  # skips when no PostgreSQL is available
    return request.param


@pytest.fixture
async def state(database):
    return PullRequestState(database)


async def test_command_claim_is_first_wins(state):
    row, created = await state.claim_command("comment:1", repository="o/r", pull_request=2, comment_id=1)
    assert created and row.outcome == "claimed"
    await state.finish_command("comment:1", outcome="started", deployment_id="dep_1", environment="staging")
    row, created = await state.claim_command("comment:1", repository="o/r", pull_request=2, comment_id=1)
    assert not created and row.deployment_id == "dep_1" and row.outcome == "started"
    assert (await state.command_for_deployment("dep_1")).comment_id == 1


async def test_check_run_slot_per_repository_sha_environment(state):
    assert await state.check_run("o/r", "abc", "staging") == (False, None)
    assert await state.claim_check_run("o/r", "abc", "staging", "dep_1")
    assert not await state.claim_check_run("o/r", "abc", "staging", "dep_2")
    assert await state.check_run("o/r", "abc", "staging") == (True, None)
    await state.set_check_run("o/r", "abc", "staging", check_run_id=77, deployment_id="dep_2")
    assert await state.check_run("o/r", "abc", "staging") == (True, 77)
    assert await state.check_run_deployment("o/r", "abc", "staging") == "dep_2"
    assert await state.claim_check_run("o/r", "abc", "production", "dep_3")


async def test_comment_upsert_keeps_the_id(state):
    await state.save_comment("o/r", 2, state={"environments": {}})
    assert await state.comment("o/r", 2) == (True, None, {"environments": {}})
    await state.save_comment("o/r", 2, state={"a": 1}, comment_id=9)
    await state.save_comment("o/r", 2, state={"a": 2})
    assert await state.comment("o/r", 2) == (True, 9, {"a": 2})


async def test_github_deployments_history(state):
    assert await state.claim_github_deployment("dep_1", "o/r", "production")
    assert not await state.claim_github_deployment("dep_1", "o/r", "production")
    await state.set_github_deployment("dep_1", github_deployment_id=101, last_state="success")
    await state.claim_github_deployment("dep_2", "o/r", "production")
    await state.set_github_deployment("dep_2", github_deployment_id=102, last_state="in_progress")
    assert await state.previous_successful_github_deployment("o/r", "production", excluding="dep_2") == ("dep_1", 101)
    assert await state.previous_successful_github_deployment("o/r", "production", excluding="dep_1") is None
    assert await state.github_deployment("dep_2") == (True, 102, "in_progress")


async def test_migration_matches_metadata(tmp_path):
    import sqlalchemy as sa

    from bot.store.pr_state import pr_check_runs, pr_commands, pr_comments, pr_github_deployments

    database = Database(f"sqlite:///{tmp_path / 'm.db'}")
    await database.migrate()
    async with database.connect() as conn:
        def columns(sync_conn):
            inspector = sa.inspect(sync_conn)
            return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}
        found = await conn.run_sync(columns)
    for table in (pr_commands, pr_check_runs, pr_comments, pr_github_deployments):
        assert found[table.name] == {c.name for c in table.columns}
    from alembic.script import ScriptDirectory

    from bot.store.db import alembic_config

    assert await database.current_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
    await database.close()
