"""Reading files and whole trees at a SHA through the simulated GitHub (contents API, tarball)."""

from __future__ import annotations

import io
import tarfile

import pytest

from bot.errors import FlareshipError
from bot.github.contents import download_tree, extract_tree, read_file
from tests.plugins.github_sim import INSTALLATION_ID, REPOSITORY

SHA = "a" * 40
CONTENTS = f"/repos/{REPOSITORY}/contents/*"


@pytest.fixture
async def gh(github_app, github_sim):
    sim = github_sim.sim
    sim.set_file(REPOSITORY, SHA, ".github/flareship.yml", "app:\n  name: widgets\n")
    sim.set_file(REPOSITORY, SHA, "src/worker/index.js", "export default {fetch() {}}\n")
    sim.set_file(REPOSITORY, SHA, "dir with space/ü.txt", "unicode")
    sim.set_file(REPOSITORY, SHA, "bin/blob.bin", bytes(range(256)))
    return await github_app.client(INSTALLATION_ID)


async def test_read_file_decodes_base64_at_a_ref(gh, github_sim):
    assert await read_file(gh, REPOSITORY, ".github/flareship.yml", SHA) == b"app:\n  name: widgets\n"
    assert await read_file(gh, REPOSITORY, "bin/blob.bin", SHA) == bytes(range(256))
    assert await read_file(gh, REPOSITORY, "dir with space/ü.txt", SHA) == b"unicode"
    logged = github_sim.sim.calls("GET", CONTENTS)[0]
    assert logged.path == f"/repos/{REPOSITORY}/contents/.github/flareship.yml"


async def test_read_file_is_none_when_missing_or_a_directory(gh):
    assert await read_file(gh, REPOSITORY, "nope.yml", SHA) is None
    assert await read_file(gh, REPOSITORY, "src", SHA) is None


async def test_read_file_repeat_costs_a_304(gh, github_sim):
    for _ in range(3):
        assert await read_file(gh, REPOSITORY, ".github/flareship.yml", SHA)
    assert [r.status for r in github_sim.sim.calls("GET", CONTENTS)] == [200, 304, 304]


async def test_read_file_over_one_megabyte_comes_raw(gh, github_sim):
    big = b"x" * (1024 * 1024 + 10)
    github_sim.sim.set_file(REPOSITORY, SHA, "big.bin", big)
    assert await read_file(gh, REPOSITORY, "big.bin", SHA) == big
    assert len(github_sim.sim.calls("GET", CONTENTS)) == 2


async def test_download_tree_is_one_tarball_request(gh, github_sim):
    tree = await download_tree(gh, REPOSITORY, SHA)
    assert tree == {
        ".github/flareship.yml": b"app:\n  name: widgets\n",
        "src/worker/index.js": b"export default {fetch() {}}\n",
        "dir with space/ü.txt": b"unicode",
        "bin/blob.bin": bytes(range(256)),
    }
    api = [r for r in github_sim.sim.requests if r.auth != "jwt"]
    assert [(r.auth, r.template, r.status) for r in api] == [
        ("token", "/repos/{owner}/{repo}/tarball/{ref}", 302), ("codeload", None, 200)]


async def test_download_tree_size_cap(gh):
    with pytest.raises(FlareshipError) as exc:
        await download_tree(gh, REPOSITORY, SHA, max_bytes=100)
    assert exc.value.code == "DEPLOY_001"


def _tar(members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member in members:
            content = (data or {}).get(member.name)
            if content is not None:
                member.size = len(content)
            tar.addfile(member, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def test_extract_rejects_links():
    link = tarfile.TarInfo("top/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(FlareshipError, match="link"):
        extract_tree(_tar([link]))
    hard = tarfile.TarInfo("top/hard")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "top/a"
    with pytest.raises(FlareshipError, match="link"):
        extract_tree(_tar([_file("top/a"), hard], {"top/a": b"a"}))


@pytest.mark.parametrize("name", ["top/../../etc/passwd", "/abs/path", "top/a/../../../x"])
def test_extract_rejects_escaping_paths(name):
    with pytest.raises(FlareshipError):
        extract_tree(_tar([_file(name)], {name: b"x"}))


def test_extract_strips_the_top_folder_and_caps_size():
    archive = _tar([_file("acme-widgets-abc1234/a/b.txt"), _file("acme-widgets-abc1234/c")],
                   {"acme-widgets-abc1234/a/b.txt": b"bb", "acme-widgets-abc1234/c": b"c" * 50})
    assert extract_tree(archive) == {"a/b.txt": b"bb", "c": b"c" * 50}
    with pytest.raises(FlareshipError, match="larger"):
        extract_tree(archive, max_bytes=40)
    with pytest.raises(FlareshipError, match="more than 1 files"):
        extract_tree(archive, max_files=1)


def test_extract_rejects_garbage():
    with pytest.raises(FlareshipError):
        extract_tree(b"not a tarball")
