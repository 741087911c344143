"""Which of Cloudflare's public templates Flareship deploys, read by Flareship's own config code.

    .venv/bin/python scripts/templates_report.py PATH/TO/cloudflare-templates [COMMIT] > docs/templates.md

PATH is a checkout (or an export, then name its COMMIT) of github.com/cloudflare/templates. Each folder with a wrangler config at its
root is read exactly as a deployment would read it (bot.engine.wrangler, wrangler_app and
wrangler_keys through resolve_repository_app, then the "needs a build" check of the main module)
for the environment `staging`, with an empty `.github/flareship.yml` `app` section; when that
refuses only because the project needs a build, it is read again with the `app.build` section
docs/build-workflow.md describes. Nothing is deployed and no repository code runs.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bot.engine.appspec import AppSpec, resolve_repository_app
from bot.engine.build import refuse_unbuilt
from bot.engine.config import parse_repo_config
from bot.engine.wrangler import find_wrangler
from bot.engine.wrangler_keys import BUILT_IN_CI
from bot.errors import FlareshipError

CONFIG_NAMES = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")
SHA = "0" * 40
#: Binding kinds whose resource must exist on the account before the first deploy (step 3 checks).
ACCOUNT_RESOURCES = {"kv_namespace": "KV", "d1": "D1", "r2_bucket": "R2", "queue": "queue",
                     "hyperdrive": "Hyperdrive", "vectorize": "Vectorize"}


#: Why a refusal stands, for the refusals the templates meet (matched in the message).
WHY = {
    "database_id must be a non-empty string": "wrangler would create the database on the first deploy; Flareship "
                                              "creates no resources: create it and set its id",
    "unsafe": "`unsafe` bindings (a rate limiter here) are not supported",
}


@dataclass
class Verdict:
    template: str
    main: str
    outcome: str
    detail: str


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name in CONFIG_NAMES}


def _resolve(wrangler: dict, build: dict | None) -> AppSpec:
    app = "" if build is None else "app:\n  build: " + repr(build).replace("'", '"') + "\n"
    return resolve_repository_app(parse_repo_config(app), "staging", repository="cloudflare/templates", sha=SHA,
                                  wrangler=wrangler)


def _needs_build(exc: FlareshipError) -> bool:
    """Refused for what a CI build (app.build) provides: a build, bundling, or a built image."""
    details = exc.details or {}
    bundling = any(str(k).rsplit(".", 1)[-1] in BUILT_IN_CI for k in details.get("unsupported") or [])
    return bundling or "app.build" in str(details.get("field") or "") or "Dockerfile" in exc.message


def _notes(spec: AppSpec, folder: Path) -> list[str]:
    notes = []
    kinds = sorted({ACCOUNT_RESOURCES[b["type"]] for b in spec.resource_bindings if b.get("type") in ACCOUNT_RESOURCES})
    if kinds:
        notes.append(f"its {', '.join(kinds)} resource(s) must exist on the account (step 3)")
    if spec.assets:
        directory = str(spec.assets.get("directory") or "").removeprefix("./")
        committed = bool(directory) and (folder / directory).is_dir()
        notes.append(f"static assets ({directory or 'binding only'}"
                     + (", committed" if committed else ", from the build" if directory else "") + ")")
    if spec.containers:
        notes.append(f"{len(spec.containers)} container(s)")
    if spec.durable_objects:
        notes.append("Durable Objects" + (" with its own migrations" if spec.migrations else ""))
    return notes


def classify(folder: Path) -> Verdict | None:
    found = None
    try:
        found = find_wrangler(_files(folder))
    except FlareshipError as exc:
        return Verdict(folder.name, "?", "refused", exc.message)
    if found is None:
        return None
    _path, wrangler = found
    main = str(wrangler.get("main") or "")
    build: dict | None = None
    for attempt in range(2):
        try:
            spec = _resolve(wrangler, build)
            if build is None and spec.main_path:
                main_path = spec.main_path.removeprefix("./")
                path = folder / main_path
                if not path.is_file():  # written by the project's build (dist/, .open-next/, ...)
                    raise FlareshipError("DEPLOY_001", f"app.main {main_path} is not in the repository",
                                         details={"field": "app.build"})
                refuse_unbuilt(main_path, path.read_bytes())
        except FlareshipError as exc:
            if attempt == 0 and _needs_build(exc):
                images = [c for c in (wrangler.get("containers") or []) if isinstance(c, dict)]
                build = {"artifact": "worker", **({"image": "image.tar"} if images else {})}
                continue
            why = next((text for needle, text in WHY.items() if needle in exc.message), None)
            return Verdict(folder.name, main, "refused", exc.message + (f". Why: {why}" if why else ""))
        notes = _notes(spec, folder)
        if build is None:
            return Verdict(folder.name, main, "deploys", "; ".join(notes) or "plain JavaScript, no build needed")
        what = "app.build" + (" with build.image" if "image" in build else "")
        return Verdict(folder.name, main, "deploys with a CI build", "; ".join([what, *notes]))
    raise AssertionError("unreachable")


def render(verdicts: list[Verdict], source: str) -> str:
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.outcome] = counts.get(v.outcome, 0) + 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    lines = [
        "# Cloudflare's public templates on Flareship",
        "",
        f"Generated by `scripts/templates_report.py` from github.com/cloudflare/templates at {source}: "
        f"{len(verdicts)} templates with a wrangler config ({summary}). Each config is read by Flareship's own "
        "code for `staging` (precedence, `env` inheritance, the key classification, the \"needs a build\" check); "
        "\"deploys with a CI build\" means: add `app.build` and the workflow of [build-workflow.md](build-workflow.md). "
        "Nothing was deployed: resources the config binds (KV, D1, R2, queues, ...) must exist on your account, "
        "or step 3 names them.",
        "",
        "| template | main | outcome | detail |",
        "|---|---|---|---|",
    ]
    for v in verdicts:
        detail = v.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{v.template}` | `{v.main}` | {v.outcome} | {detail} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[1])
    verdicts = [v for folder in sorted(p for p in root.iterdir() if p.is_dir())
                if (v := classify(folder)) is not None]
    head = argv[2] if len(argv) == 3 else None
    if head is None:
        try:
            head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                  text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            head = None
    sys.stdout.write(render(verdicts, f"commit `{head[:12]}`" if head else "an unrecorded commit"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
