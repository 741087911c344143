"""`flareship setup`: register the GitHub App from `app.yml` through GitHub's manifest flow, write `.env`.

Like Probot's setup (https://probot.github.io/docs/development/#configuring-a-github-app), but the
page runs on loopback only, checks the `state` it issued, never overwrites `.env` unasked, and
never prints the private key or a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from pathlib import Path

from bot.settings import (
    DEFAULT_GITHUB_API_URL,
    DEFAULT_GITHUB_URL,
    ENV_FILE,
    load_settings,
)
from bot.setup.envfile import EnvFileExists, check_writable
from bot.setup.manifest import ManifestError, find_app_yml, load_app_yml
from bot.setup.server import SetupError, SetupFlow, run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org", default=None, help="register the App on this organisation (default: your account)")
    parser.add_argument("--force", action="store_true", help="replace an existing .env")
    parser.add_argument("--host", default="127.0.0.1", help="address of the local setup page (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port of the local setup page (default: any free one)")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="the App manifest (default: ./app.yml, else the one shipped with Flareship)")
    parser.add_argument("--env-file", type=Path, default=Path(ENV_FILE), help="where to write (default: ./.env)")
    parser.add_argument("--public-url", default=None,
                        help="the address GitHub sends webhooks to (default: $PUBLIC_URL)")


def run_setup(args: argparse.Namespace) -> int:
    """Run the flow to its end; messages on stdout, problems on stderr, no secret on either."""
    settings = load_settings(env_file=args.env_file)  # with --force, the old file still gives PUBLIC_URL
    public_url = (args.public_url or settings.public_url).rstrip("/")
    try:
        check_writable(args.env_file, args.force)
        app_yml = load_app_yml(find_app_yml(args.manifest))
    except (EnvFileExists, ManifestError, OSError) as exc:
        print(f"flareship setup: {exc}", file=sys.stderr)
        return 1
    if not 0 <= args.port <= 65535:
        print("flareship setup: --port must be between 0 and 65535", file=sys.stderr)
        return 2
    if public_url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        print(f"Note: PUBLIC_URL is {public_url}; GitHub cannot deliver webhooks there. Set PUBLIC_URL "
              "(or --public-url) to the address Flareship will be reachable at, or change the App's "
              "webhook URL later.", flush=True)
    flow = SetupFlow(app_yml=app_yml, state=secrets.token_urlsafe(32), env_path=args.env_file, force=args.force,
                     public_url=public_url, github_url=settings.github_url.rstrip("/"),
                     github_api_url=settings.github_api_url.rstrip("/"),
                     defaults=(DEFAULT_GITHUB_URL, DEFAULT_GITHUB_API_URL), org=args.org,
                     announce=lambda line: print(line, flush=True))

    def ready(url: str) -> None:
        print(f"Open {url} in your browser to register the GitHub App (Ctrl-C to give up).", flush=True)

    try:
        code = asyncio.run(run(flow, args.host, args.port, ready=ready))
    except SetupError as exc:
        print(f"flareship setup: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("flareship setup: stopped; nothing was written.", file=sys.stderr)
        return 130
    if flow.failure:
        print(f"flareship setup: {flow.failure}", file=sys.stderr)
    return code
