"""`flareship token create|list|revoke` against a real SQLite file."""

from __future__ import annotations

import sqlite3

from bot.api_auth import hash_token


def test_cli_create_list_revoke(tmp_path, monkeypatch, capsys):
    from bot.__main__ import main

    db = tmp_path / "cli.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    assert main(["token", "create", "--scope", "read", "--scope", "deploy:staging", "--name", "ci", "--expires-in", "30"]) == 0
    out, err = capsys.readouterr()
    plaintext = out.strip()
    assert plaintext.startswith("fls_") and "shown only once" in err
    token_id = err.split()[1]
    assert main(["token", "list"]) == 0
    out, _ = capsys.readouterr()
    assert token_id in out and "read,deploy:staging" in out and plaintext not in out
    assert main(["token", "revoke", token_id]) == 0
    assert main(["token", "revoke", token_id]) == 1
    assert main(["token", "create", "--scope", "root", "--name", "x"]) == 2
    capsys.readouterr()
    conn = sqlite3.connect(db)
    rows = conn.execute("select token_hash, revoked_at from api_tokens").fetchall()
    assert rows[0][0] == hash_token(plaintext) and rows[0][1] is not None
