"""A Flareship engine in its own process, for the crash test (run with `python -m`).

It serves the shared SQLite database against the simulated Cloudflare of the parent test until
the given deployment is final, then exits 0. With `--hold STEP` it does that step's work and then
stops before the step's completion is persisted (sleeping until the parent SIGKILLs it), which is
the worst moment for a crash: side effects done, transition not recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.engine import rollback, steps
from bot.settings import Settings
from bot.store.db import Database
from tests.engine.engine_factory import ACCOUNT_ID, TOKEN, make_engine


def _hold(step_name: str) -> None:
    for table in (steps.PIPELINE, rollback.ROLLBACK_PIPELINE):
        original = table[step_name]

        async def held(ctx, _original=original):
            await _original(ctx)
            print(f"HOLDING {step_name}", flush=True)
            await asyncio.sleep(3600)
            return "completed"

        table[step_name] = held


async def main(args: argparse.Namespace) -> int:
    if args.hold:
        _hold(args.hold)
    settings = Settings(cloudflare_api_url=args.api, cloudflare_api_token=TOKEN, cloudflare_account_id=ACCOUNT_ID,
                        container_registry_url=args.registry, workers_url_template=args.template,
                        database_url=args.db, environment_overrides={})
    database = Database(args.db)
    engine, clients = make_engine(settings, database, lease_seconds=args.lease, heartbeat_seconds=args.lease / 4)
    await engine.start()
    print("STARTED", flush=True)
    try:
        while True:
            d = await engine.get(args.deployment)
            if d.is_final:
                break
            await asyncio.sleep(0.05)
        await engine.stop()
    finally:
        await clients.aclose()
        await database.close()
    print(f"FINAL {d.status}", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--api", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--template", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--hold", default=None)
    parser.add_argument("--lease", type=float, default=1.0)
    sys.exit(asyncio.run(main(parser.parse_args())))
