"""Run the simulated GitHub on its own: `python -m bot.sim.github [--port 9100] [--prefix /api/v3]`.

It writes the simulated App's private key to a file and prints the settings that point
Flareship at it, so Flareship can be tried without registering a GitHub App.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from bot.sim.github.server import GitHubSimServer, start_github_sim

DEMO_INSTALLATION = 1
DEMO_REPOSITORY = "acme/widgets"


def seed_demo(server: GitHubSimServer) -> None:
    """One installation with one repository, so a first webhook has something to act on."""
    sim = server.sim
    sim.add_installation(DEMO_INSTALLATION, account=DEMO_REPOSITORY.split("/")[0], repositories=[])
    sim.add_repo(DEMO_REPOSITORY, installation_id=DEMO_INSTALLATION)


def settings_lines(server: GitHubSimServer, key_path: Path) -> list[str]:
    return [
        f"GITHUB_API_URL={server.url}",
        f"GITHUB_APP_ID={server.app_id}",
        f"GITHUB_PRIVATE_KEY_PATH={key_path}",
    ]


async def serve(host: str, port: int, prefix: str, key_path: Path, *, stop: asyncio.Event | None = None,
                out=sys.stdout) -> None:
    server = await start_github_sim(host, port, prefix)
    try:
        seed_demo(server)
        key_path.write_text(server.app_private_key)  # noqa: ASYNC240  (once, at start-up)
        os.chmod(key_path, 0o600)
        print(f"Simulated GitHub listening on {server.url}", file=out)
        print("Point Flareship at it with:", file=out)
        for line in settings_lines(server, key_path):
            print(f"  export {line}", file=out)
        out.flush()
        await (stop or asyncio.Event()).wait()
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.sim.github", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--prefix", default="", help="serve under a path prefix, like GHES's /api/v3")
    parser.add_argument("--key-file", type=Path, default=Path("flareship-sim-app.pem"),
                        help="where to write the simulated App's private key")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.host, args.port, args.prefix, args.key_file))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
