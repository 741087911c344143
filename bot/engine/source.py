"""Where the Worker's modules come from: the repository at the deployed SHA, or generated.

One tarball download per deployment (`bot.github.contents.download_tree`); the main module and
the modules in its directory tree are uploaded, named relative to the main module's directory.
Also finds the classes the main module exports, for the Durable Object dependency check.
"""

from __future__ import annotations

import logging
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from bot.engine.appspec import AppSpec, generated_worker
from bot.engine.build import refuse_unbuilt
from bot.engine.config import CONFIG_PATH, RepoConfig, parse_repo_config
from bot.engine.wrangler import find_wrangler
from bot.errors import FlareshipError

log = logging.getLogger(__name__)

#: Extension -> the part content type Cloudflare expects (wrangler's module rules).
MODULE_TYPES: dict[str, str] = {
    ".js": "application/javascript+module",
    ".mjs": "application/javascript+module",
    ".cjs": "application/javascript",
    ".wasm": "application/wasm",
    ".txt": "text/plain",
    ".html": "text/plain",
    ".sql": "text/plain",
    ".bin": "application/octet-stream",
    ".map": "application/source-map",
}
MAX_MODULES = 500
#: Workers Paid allows 10 MB compressed; refuse obviously larger uploads before sending them.
MAX_TOTAL_BYTES = 30 * 1024 * 1024
#: Links followed through other links before a chain counts as a loop.
MAX_LINK_HOPS = 40
#: A linked folder is copied under the link; the tree stays within the tarball's file cap.
MAX_RESOLVED_FILES = 10_000


@dataclass
class Module:
    name: str
    content: bytes
    content_type: str


@dataclass
class RepoSource:
    """The files of the repository at one SHA (from one tarball)."""

    repository: str
    sha: str
    files: dict[str, bytes] = field(default_factory=dict)

    def config(self) -> RepoConfig:
        text = self.files.get(CONFIG_PATH)
        if text is None:
            alt = self.files.get(".github/flareship.yaml")
            text = alt if alt is not None else b""
        return parse_repo_config(text)

    def wrangler(self) -> dict[str, Any] | None:
        found = find_wrangler(self.files)
        return found[1] if found else None


def module_type(name: str) -> str | None:
    return MODULE_TYPES.get(posixpath.splitext(name)[1].lower())


def collect_modules(files: dict[str, bytes], main_path: str) -> list[Module]:
    """The main module first, then every module under its directory (named relative to it)."""
    main_path = main_path.replace("\\", "/")
    while main_path.startswith("./"):
        main_path = main_path[2:]
    if main_path not in files:
        raise FlareshipError("DEPLOY_001", f"app.main: {main_path} does not exist at the deployed commit",
                             details={"field": "app.main"})
    main_type = module_type(main_path)
    if main_type not in ("application/javascript+module",):
        raise FlareshipError("DEPLOY_001", f"app.main: {main_path} must be an ES module (.js or .mjs)",
                             details={"field": "app.main"})
    directory = posixpath.dirname(main_path)
    prefix = f"{directory}/" if directory else ""
    modules = [Module(posixpath.relpath(main_path, directory or "."), files[main_path], main_type)]
    total = len(files[main_path])
    for path in sorted(files):
        if path == main_path or not path.startswith(prefix):
            continue
        rel = path[len(prefix):]
        parts = rel.split("/")
        if any(p.startswith(".") or p == "node_modules" for p in parts[:-1]):
            continue
        ctype = module_type(path)
        if ctype is None:
            continue
        modules.append(Module(rel, files[path], ctype))
        total += len(files[path])
        if len(modules) > MAX_MODULES:
            where = directory or "the repository root"
            raise FlareshipError("DEPLOY_001", f"too many modules under {where} (over {MAX_MODULES})",
                                 details={"field": "app.main"})
    if total > MAX_TOTAL_BYTES:
        raise FlareshipError("DEPLOY_001", f"the Worker's modules total {total} bytes (limit {MAX_TOTAL_BYTES})",
                             details={"field": "app.main"})
    return modules


def modules_for(spec: AppSpec, source: RepoSource | None) -> list[Module]:
    """The modules to upload for `spec` (generated, inline, or from the repository source)."""
    if spec.source == "generated":
        return [Module(spec.main_module, generated_worker(spec).encode(), "application/javascript+module")]
    if spec.source == "inline":
        mods = spec.inline_modules or {}
        if spec.main_module not in mods:
            raise FlareshipError("DEPLOY_001", f"main module {spec.main_module} is missing",
                                 details={"field": "app.main"})
        ordered = [spec.main_module, *sorted(n for n in mods if n != spec.main_module)]
        return [Module(n, mods[n].encode(), module_type(n) or "application/javascript+module") for n in ordered]
    if spec.build is not None:
        return []  # the modules come from the CI artifact, in step 1 (bot/engine/artifacts.py)
    if source is None or spec.main_path is None:
        raise FlareshipError("DEPLOY_001", "the app's source is not available", details={"field": "app.main"})
    main = spec.main_path.replace("\\", "/").removeprefix("./")
    refuse_unbuilt(main, source.files.get(main))
    return collect_modules(source.files, spec.main_path)


_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_LINE_COMMENT = re.compile(r"(^|[^:\\\"'`])//[^\n]*")
_EXPORT_CLASS = re.compile(r"\bexport\s+(?:default\s+)?(?:abstract\s+)?class\s+([A-Za-z_$][\w$]*)")
_EXPORT_CONST_CLASS = re.compile(r"\bexport\s+(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=\s*class\b")
_EXPORT_LIST = re.compile(r"\bexport\s*\{([^}]*)\}")
_CLASS_DECL = re.compile(r"\bclass\s+([A-Za-z_$][\w$]*)")


def exported_classes(source: str) -> set[str]:
    """Names the module exports that may be classes (Durable Object classes must be named exports).

    `export class X`, `export const X = class`, `export { X, Y as Z }`, `export { X } from "..."`.
    `export default class X` is a default export and does not count.
    """
    text = _LINE_COMMENT.sub(r"\1", _BLOCK_COMMENT.sub(" ", source))
    names: set[str] = set()
    for m in _EXPORT_CLASS.finditer(text):
        if "default" not in m.group(0):
            names.add(m.group(1))
    names.update(_EXPORT_CONST_CLASS.findall(text))
    for m in _EXPORT_LIST.finditer(text):
        for item in m.group(1).split(","):
            item = item.strip()
            if not item:
                continue
            parts = item.split()
            if len(parts) == 3 and parts[1] == "as":
                names.add(parts[2])
            elif len(parts) == 1:
                names.add(parts[0])
    names.discard("default")
    return names


def main_module_exports(modules: list[Module]) -> set[str]:
    if not modules:
        return set()
    try:
        return exported_classes(modules[0].content.decode("utf-8", errors="replace"))
    except Exception:  # a binary main module exports nothing we can see
        return set()


def _follow(path: str, links: dict[str, str]) -> str | None:
    """The tree path `path` stands for once every link on the way is followed; None outside the tree or in a loop."""
    for _ in range(MAX_LINK_HOPS):
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            target = links.get(prefix)
            if target is None:
                continue
            if target.startswith("/"):
                return None
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(prefix), target, *parts[i:]))
            if joined == ".." or joined.startswith("../"):
                return None
            path = "" if joined == "." else joined
            break
        else:
            return path
    return None


def resolve_links(files: dict[str, bytes], links: dict[str, str]) -> tuple[dict[str, bytes], list[str]]:
    """The tree with each link inside it replaced by what it points at (a file, or a folder's files).

    Answers (files, skipped): links that point outside the tree (an absolute target, too many
    `..`), at nothing, or round in a loop are left out, and named in `skipped`.
    """
    resolved = dict(files)
    skipped: list[str] = []
    for link in sorted(links):
        target = _follow(link, links)
        if target is None:
            skipped.append(link)
            continue
        if target in files:
            resolved[link] = files[target]
            continue
        prefix = f"{target}/" if target else ""
        inside = {path: content for path, content in files.items() if path.startswith(prefix)}
        if not inside or not target or link.startswith(prefix) or len(resolved) + len(inside) > MAX_RESOLVED_FILES:
            skipped.append(link)  # dangling, a folder holding the link itself, or too many files
            continue
        for path, content in inside.items():
            resolved.setdefault(f"{link}/{path[len(prefix):]}", content)
    return resolved, skipped


async def load_repository(gh: Any, repository: str, sha: str) -> RepoSource:
    """Download the repository at `sha` once (tarball) and keep its files in memory, links resolved."""
    from bot.github.contents import download_tree

    links: dict[str, str] = {}
    files = await download_tree(gh, repository, sha, links=links)
    if links:
        files, skipped = resolve_links(files, links)
        if skipped:
            log.info("%s@%s: %d link(s) left out (outside the tree, dangling or looping): %s",
                     repository, sha[:7], len(skipped), ", ".join(skipped[:10]))
    return RepoSource(repository=repository, sha=sha, files=files)
