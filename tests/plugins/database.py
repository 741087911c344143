"""Database fixtures: every store test runs on SQLite and on a real PostgreSQL server.

- `database_backend`: "sqlite" or "postgresql" (parametrized; PostgreSQL tests carry the
  `postgres` mark).
- `database_url`: a migrated database holding no rows for this test. SQLite: a copy of a file
  migrated once per session. PostgreSQL: one database migrated once per session and emptied
  (TRUNCATE ... RESTART IDENTITY) before each test, which costs milliseconds where CREATE DATABASE
  costs a second; tests must not change its schema (use `empty_database_url` for that).
- `empty_database_url`: a fresh database with no schema at all (migration tests).
- `database`: a `bot.store.db.Database` on `database_url`, closed after the test.

PostgreSQL is a throw-away server started once per session (initdb + pg_ctl in a temp dir, on a
free loopback port, fsync off). As root it runs as the `postgres` user (created if missing).
When no server can be started the PostgreSQL half is skipped with the reason, unless
FLARESHIP_REQUIRE_POSTGRES=1 (CI), where it fails instead.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.store.db import Database

SHARED_DB = "flareship_test"
_counter = itertools.count()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return candidates[-1] if candidates else None


@dataclass
class PostgresServer:
    host: str
    port: int
    root: str
    data: str
    pg_ctl: str
    run_as: list[str]
    shared_ready: bool = False

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@{self.host}:{self.port}/{database}"

    def stop(self) -> None:
        subprocess.run([*self.run_as, self.pg_ctl, "-D", self.data, "-m", "immediate", "-w", "stop"], capture_output=True, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


def _start_postgres() -> PostgresServer:
    """Start a private server or raise RuntimeError saying why it could not."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin")
    root = tempfile.mkdtemp(prefix="flareship-pg-")
    os.chmod(root, 0o755)
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"], check=True, capture_output=True)
            user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(root, "data")
    try:
        subprocess.run(
            [*run_as, initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"],
            check=True, capture_output=True, timeout=120,
        )
        port = _free_port()
        options = f"-h 127.0.0.1 -p {port} -k {root} -F -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        subprocess.run(
            [*run_as, pg_ctl, "-D", data, "-l", os.path.join(root, "server.log"), "-w", "-t", "60", "-o", options, "start"],
            check=True, capture_output=True, timeout=90,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        log_file = Path(root, "server.log")
        if log_file.exists():
            detail += log_file.read_bytes()[-2000:]
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc}: {detail.decode(errors='replace').strip()}") from None
    return PostgresServer("127.0.0.1", port, root, data, pg_ctl, run_as)


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server, or a skip (a failure when FLARESHIP_REQUIRE_POSTGRES=1)."""
    try:
        server = _start_postgres()
    except RuntimeError as exc:
        server = None
        reason = str(exc)
    if server is None:
        if os.environ.get("FLARESHIP_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"FLARESHIP_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)

        def skip():
            pytest.skip(f"PostgreSQL tests skipped: {reason}")

        yield skip
        return
    try:
        yield server
    finally:
        server.stop()


async def pg_admin(server: PostgresServer, statement: str, database: str = "postgres") -> None:
    import asyncpg

    conn = await asyncpg.connect(host=server.host, port=server.port, user="postgres", database=database)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


_TRUNCATE_ALL = """
SET lock_timeout = '10s';
DO $$
DECLARE tables text;
BEGIN
  SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') INTO tables
    FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version';
  IF tables IS NOT NULL THEN
    EXECUTE 'TRUNCATE ' || tables || ' RESTART IDENTITY CASCADE';
  END IF;
END $$;
"""


async def _migrate(url: str) -> None:
    database = Database(url)
    try:
        await database.migrate()
    finally:
        await database.close()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory):
    return {"path": tmp_path_factory.mktemp("sqlite-template") / "template.db", "ready": False}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_backend(request) -> str:
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        if callable(server):
            server()  # skips (or failed above)
    return request.param


@pytest.fixture
async def empty_database_url(database_backend, tmp_path, request) -> str:
    """A brand-new database with no tables."""
    if database_backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    server = request.getfixturevalue("postgres_server")
    name = f"empty_{os.getpid()}_{next(_counter)}"
    await pg_admin(server, f'CREATE DATABASE "{name}" TEMPLATE template0')
    return server.url(name)


@pytest.fixture
async def database_url(database_backend, tmp_path, request) -> str:
    """A fresh database for this test with every migration applied."""
    if database_backend == "sqlite":
        template = request.getfixturevalue("_sqlite_template")
        if not template["ready"]:
            await _migrate(f"sqlite+aiosqlite:///{template['path']}")
            template["ready"] = True
        path = tmp_path / "flareship.db"
        shutil.copyfile(template["path"], path)
        return f"sqlite+aiosqlite:///{path}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    if not server.shared_ready:
        await pg_admin(server, f'CREATE DATABASE "{SHARED_DB}" TEMPLATE template0')
        await _migrate(server.url(SHARED_DB))
        server.shared_ready = True
    else:
        await pg_admin(server, _TRUNCATE_ALL, database=SHARED_DB)
    return server.url(SHARED_DB)


@pytest.fixture
async def database(database_url):
    """A migrated `Database` on a fresh database (both backends), closed after the test."""
    db = Database(database_url)
    try:
        yield db
    finally:
        await db.close()

