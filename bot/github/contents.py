"""Reading a repository at a SHA: one file (ETag-cached), or the whole tree in one tarball.

A deployment needs many files (config, wrangler file, modules); fetching them one request each
spends the installation's rate limit, so the tree comes as a single tarball extracted in
memory, with the checks an archive from outside deserves (no links, no escaping paths, a size cap).
"""

from __future__ import annotations

import base64
import io
import posixpath
import tarfile
from typing import Any
from urllib.parse import quote

from gidgethub import BadRequest

from bot.errors import FlareshipError
from bot.github.client import FlareshipGitHubAPI

#: Default cap on a downloaded tree, compressed and extracted.
MAX_TREE_BYTES = 50 * 1024 * 1024
MAX_TREE_FILES = 10_000


def _split(repository: str) -> tuple[str, str]:
    owner, _, name = repository.partition("/")
    if not owner or not name or "/" in name:
        raise FlareshipError("SYS_006", f"repository must be 'owner/name', got {repository!r}")
    return owner, name


def _quoted_path(path: str) -> str:
    return "/".join(quote(segment, safe="") for segment in path.strip("/").split("/"))


async def read_file(gh: FlareshipGitHubAPI, repository: str, path: str, ref: str) -> bytes | None:
    """The file's bytes at `ref`, or None when there is no file there.

    GET contents answers base64 for files up to 1 MB (repeat reads cost a 304 through the
    client's ETag cache); bigger files come back without content and are fetched raw.
    """
    owner, name = _split(repository)
    url = f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}/contents/{_quoted_path(path)}{{?ref}}"
    try:
        data: Any = await gh.getitem(url, {"ref": ref})
    except BadRequest as exc:
        if int(exc.status_code) == 404:
            return None
        raise
    if not isinstance(data, dict) or data.get("type", "file") != "file":
        return None  # a directory, symlink or submodule is not a file to read
    content = data.get("content")
    if data.get("encoding") == "base64" and content is not None:
        return base64.b64decode(content)
    return await gh.get_bytes(url, {"ref": ref}, accept="application/vnd.github.raw+json")


async def download_tree(
    gh: FlareshipGitHubAPI,
    repository: str,
    sha: str,
    *,
    max_bytes: int = MAX_TREE_BYTES,
    max_files: int = MAX_TREE_FILES,
    links: dict[str, str] | None = None,
) -> dict[str, bytes]:
    """Every file of the repository at `sha`, keyed by its path, from ONE tarball download.

    GitHub answers the tarball request with a redirect to codeload, which the session follows.
    `links`: see `extract_tree`.
    """
    owner, name = _split(repository)
    archive = await gh.get_bytes(
        "/repos/{owner}/{repo}/tarball/{ref}",
        {"owner": owner, "repo": name, "ref": sha},
        accept="application/vnd.github+json",
        max_bytes=max_bytes,
    )
    return extract_tree(archive, max_bytes=max_bytes, max_files=max_files, links=links)


def extract_tree(archive: bytes, *, max_bytes: int = MAX_TREE_BYTES, max_files: int = MAX_TREE_FILES,
                 links: dict[str, str] | None = None) -> dict[str, bytes]:
    """Unpack a GitHub tarball in memory: strip the top folder, refuse links and escapes, cap sizes.

    With a `links` dict, links are not refused but recorded in it (path -> target, as written in
    the archive; a hard link's target made relative to the link's folder, like a symbolic one's)
    for the caller to resolve (`bot.engine.source.resolve_links`).
    """
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if member.issym() or member.islnk():
                    if links is None:
                        raise _bad_archive(f"the archive contains a link: {member.name}")
                    link_path = _strip_top(member.name)
                    if link_path is not None:
                        links[link_path] = member.linkname if member.issym() else _hard_link_target(
                            member.linkname, link_path)
                    continue
                if not member.isfile():
                    raise _bad_archive(f"the archive contains a special file: {member.name}")
                path = _strip_top(member.name)
                if path is None:
                    continue
                total += member.size
                if total > max_bytes:
                    raise _bad_archive(f"the repository is larger than {max_bytes} bytes")
                if len(files) >= max_files:
                    raise _bad_archive(f"the repository has more than {max_files} files")
                handle = tar.extractfile(member)
                files[path] = handle.read() if handle is not None else b""
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise _bad_archive(f"the archive could not be read: {exc}") from exc
    return files


def _hard_link_target(linkname: str, link_path: str) -> str:
    """A hard link names an archive member; answer it relative to the link's folder ("/" when it escapes)."""
    try:
        target = _strip_top(linkname)
    except FlareshipError:
        return "/"
    return "/" if target is None else posixpath.relpath(target, posixpath.dirname(link_path) or ".")


def _strip_top(name: str) -> str | None:
    if name.startswith("/") or "\\" in name:
        raise _bad_archive(f"the archive contains an absolute or odd path: {name}")
    parts = name.split("/", 1)
    if len(parts) < 2 or not parts[1]:
        return None  # a file at the top level (GitHub puts none there)
    path = posixpath.normpath(parts[1])
    if path.startswith(("../", "/")) or path == ".." or "/../" in f"/{parts[1]}/":
        raise _bad_archive(f"the archive contains a path escaping its root: {name}")
    return path


def _bad_archive(message: str) -> FlareshipError:
    return FlareshipError("DEPLOY_001", message, details={"field": "repository tree"})
