"""`flareship migrate` brings the configured database to the newest schema (and says which)."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from bot.__main__ import main
from bot.store.db import alembic_config


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """The command installs its log handler on the root logger; take it away afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_migrate_command_creates_the_schema(tmp_path, monkeypatch, capsys):
    from alembic.script import ScriptDirectory

    path = tmp_path / "cli.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    assert main(["migrate"]) == 0
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert f"revision {head}" in capsys.readouterr().out
    with sqlite3.connect(path) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"webhook_deliveries", "installations", "installation_repositories", "alembic_version"} <= tables
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == head
    assert main(["migrate"]) == 0  # running it again is harmless


def test_migrate_command_rejects_a_bad_database_url(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")
    assert main(["migrate"]) != 0
    assert "DATABASE_URL" in capsys.readouterr().err
