"""A repository whose tarball holds symbolic links: inner ones resolved, outer ones left out, the deploy goes on."""

from __future__ import annotations

from bot.engine.source import resolve_links
from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID
from tests.workflows.conftest import CONFIG, HEAD_SHA, REPOSITORY

LINKED_SHA = "11c0" + "0" * 36
ENTRY = 'import { greet } from "./lib/greet.js";\nexport default { async fetch() { return new Response(greet()); } };\n'
GREET = 'export function greet() { return "hi"; }\n'


async def test_a_tarball_with_links_inside_and_outside_the_tree_deploys(workflow):
    sim = workflow.sim
    sim.set_file(REPOSITORY, LINKED_SHA, ".github/flareship.yml", CONFIG)
    sim.set_file(REPOSITORY, LINKED_SHA, "src/index.js", ENTRY)
    sim.set_file(REPOSITORY, LINKED_SHA, "shared/greet.js", GREET)
    sim.set_symlink(REPOSITORY, LINKED_SHA, "dist/index.js", "../src/index.js")  # a file inside the tree
    sim.set_symlink(REPOSITORY, LINKED_SHA, "dist/lib", "../shared")  # a folder inside the tree
    sim.set_symlink(REPOSITORY, LINKED_SHA, "dist/passwd.txt", "/etc/passwd")  # absolute: outside
    sim.set_symlink(REPOSITORY, LINKED_SHA, "dist/up.txt", "../../../outside.txt")  # escapes the tree
    sim.repo(REPOSITORY).pulls[7].head_sha = LINKED_SHA

    payload = await workflow.comment("/deploy staging")

    [run] = workflow.check_runs(LINKED_SHA, "staging")
    assert run["conclusion"] == "success", run["output"]
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes", "rocket"]
    script = workflow.cloudflare_sim.sim.scripts[(CF_ACCOUNT_ID, "widgets-staging")]
    modules = script.versions[-1].modules
    assert modules["index.js"].content == ENTRY.encode()
    assert modules["lib/greet.js"].content == GREET.encode()
    assert "passwd.txt" not in modules and "up.txt" not in modules
    assert workflow.check_runs(HEAD_SHA) == []


def test_resolve_links_follows_chains_and_skips_loops_and_dangling_links():
    files = {"a/real.js": b"r", "b/x.js": b"x"}
    links = {"c.js": "a/link.js", "a/link.js": "real.js", "loop1": "loop2", "loop2": "loop1",
             "gone.js": "a/missing.js", "self": ".", "b/all": "../b", "d": "b"}
    resolved, skipped = resolve_links(files, links)
    assert resolved["c.js"] == b"r" and resolved["a/link.js"] == b"r"
    assert resolved["d/x.js"] == b"x"
    assert sorted(skipped) == ["b/all", "gone.js", "loop1", "loop2", "self"]
