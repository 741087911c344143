"""Durable Object migrations: the repository's own (wrangler `migrations`) or generated ones.

`pending_migrations` is wrangler's `getMigrationsToUpload` (https://github.com/cloudflare/workers-sdk,
packages/deploy-helpers/src/deploy/helpers/durable.ts): only the steps after the script's current
tag are sent, with that tag as `old_tag` and the last tag as `new_tag`. Pure.
"""

from __future__ import annotations

from typing import Any

from bot.errors import FlareshipError

#: The fields of one wrangler migration besides its tag.
STEP_FIELDS = ("new_classes", "new_sqlite_classes", "renamed_classes", "deleted_classes", "transferred_classes")


def parse_migrations(value: Any, source: str) -> list[dict[str, Any]] | None:
    """wrangler's `migrations` list checked (each needs a unique `tag`); None when the key is absent."""
    if value is None:
        return None
    problems: list[str] = []
    if not isinstance(value, list):
        raise FlareshipError("DEPLOY_001", f"{source}: migrations must be a list", details={"field": source})
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"migrations[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where} must be a table")
            continue
        tag = item.get("tag")
        if not isinstance(tag, str) or not tag:
            problems.append(f"{where}.tag is required")
        elif tag in seen:
            problems.append(f"{where}.tag {tag!r} is used twice")
        else:
            seen.add(tag)
        unknown = sorted(set(item) - {"tag", *STEP_FIELDS})
        problems.extend(f"{where}.{key} is not a migration field" for key in unknown)
        out.append({k: item[k] for k in ("tag", *STEP_FIELDS) if k in item})
    if problems:
        raise FlareshipError("DEPLOY_001", f"{source}: {'; '.join(problems)}",
                             details={"field": source, "problems": problems})
    return out


def pending_migrations(migrations: list[dict[str, Any]], current_tag: str | None) -> dict[str, Any] | None:
    """The `migrations` metadata wrangler sends for a script at `current_tag` (None: nothing to send)."""
    if not migrations:
        return None
    last = migrations[-1]["tag"]
    steps = [{k: v for k, v in m.items() if k != "tag"} for m in migrations]
    if not current_tag:
        return {"new_tag": last, "steps": steps}
    index = next((i for i, m in enumerate(migrations) if m["tag"] == current_tag), None)
    if index is None:
        # wrangler warns and applies every migration; Cloudflare refuses what was applied already.
        return {"old_tag": current_tag, "new_tag": last, "steps": steps}
    if index == len(migrations) - 1:
        return None
    return {"old_tag": current_tag, "new_tag": last, "steps": steps[index + 1:]}


def classes_after(migrations: list[dict[str, Any]]) -> set[str]:
    """The classes the script implements once every migration is applied (for the export check)."""
    classes: set[str] = set()
    for m in migrations:
        classes.update(m.get("new_classes") or [])
        classes.update(m.get("new_sqlite_classes") or [])
        for r in m.get("renamed_classes") or []:
            if isinstance(r, dict):
                classes.discard(str(r.get("from")))
                classes.add(str(r.get("to")))
        for t in m.get("transferred_classes") or []:
            if isinstance(t, dict) and t.get("to"):
                classes.add(str(t["to"]))
        classes.difference_update(m.get("deleted_classes") or [])
    return classes
