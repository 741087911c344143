"""The `flareship` command line: serve, setup, demo, token, migrate (and `--version`)."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from bot.settings import SettingsError, load_serving_settings, load_settings


def package_version() -> str:
    """The installed distribution's version (pyproject.toml), as `flareship --version` prints it."""
    try:
        return version("flareship")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _serve(args: argparse.Namespace) -> int:
    from bot.app import init_app
    from bot.logs import configure_logging, register_secret

    settings = load_serving_settings()  # every problem at once (bot/settings.py)
    assert settings.github_webhook_secret is not None  # a missing one is among those problems
    register_secret(settings.github_webhook_secret.get_secret_value(), pinned=True)
    register_secret(settings.private_key_pem(), pinned=True)
    if settings.cloudflare_api_token:
        register_secret(settings.cloudflare_api_token.get_secret_value(), pinned=True)
    configure_logging(settings.log_level, settings.log_format)
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    from bot.runtime import freeze_startup_objects
    from bot.server import run

    app = init_app(settings)
    app.on_startup.append(freeze_startup_objects)  # last: after every part has started
    run(app, settings, host=host, port=port)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return run_demo()


def _migrate(args: argparse.Namespace) -> int:
    import asyncio

    from bot.logs import configure_logging
    from bot.store.db import Database

    settings = load_settings()
    try:
        _ = settings.async_database_url  # an unusable DATABASE_URL raises here
    except ValueError as exc:
        raise SettingsError([str(exc)]) from None
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> str | None:
        database = Database.from_settings(settings)
        try:
            await database.migrate(args.revision)
            return await database.current_revision()
        finally:
            await database.close()

    try:
        revision = asyncio.run(run())
    except Exception as exc:  # a clear line, not a traceback: unreachable server, bad credentials, ...
        print(f"flareship migrate failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"database schema at revision {revision}")
    return 0


def _setup(args: argparse.Namespace) -> int:
    from bot.setup import run_setup

    return run_setup(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flareship", description="Ship pull requests to Cloudflare.")
    parser.add_argument("--version", action="version", version=f"flareship {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the webhook and REST server")
    serve.add_argument("--host", default=None, help="bind address (default: $HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, default=None, help="port (default: $PORT or 8000)")
    serve.set_defaults(func=_serve)

    from bot.setup import add_arguments as add_setup_arguments

    setup = commands.add_parser("setup", help="register the GitHub App from app.yml in the browser and write .env")
    add_setup_arguments(setup)
    setup.set_defaults(func=_setup)

    demo = commands.add_parser("demo", help="run Flareship end to end against the simulated GitHub and Cloudflare")
    demo.set_defaults(func=_demo)

    migrate = commands.add_parser("migrate", help="apply the database schema migrations (also done on start-up)")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.set_defaults(func=_migrate)

    from bot.token_cli import add_parser as add_token_parser

    add_token_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
