"""scripts/templates_report.py reads a template as a deployment would, and wrangler's bundling keys
(`build`, `define`, `alias`) are accepted for an app deployed from its CI artifact, refused otherwise."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from bot.engine.appspec import resolve_repository_app
from bot.engine.config import parse_repo_config
from bot.engine.wrangler import find_wrangler
from bot.errors import FlareshipError
from tests.projects.shapes import project_files

ROOT = Path(__file__).resolve().parents[2]


def _report():
    spec = importlib.util.spec_from_file_location("templates_report", ROOT / "scripts" / "templates_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _template(root: Path, name: str, wrangler: dict, files: dict[str, str]) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "wrangler.jsonc").write_text("// a template\n" + json.dumps(wrangler))
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    return folder


def test_templates_are_classified_as_a_deployment_reads_them(tmp_path):
    report = _report()
    base = {"name": "t", "compatibility_date": "2025-10-08"}
    plain = _template(tmp_path, "plain", {**base, "main": "src/index.js"},
                      {"src/index.js": "export default { fetch() { return new Response('hi'); } };\n"})
    typescript = _template(tmp_path, "typescript", {**base, "main": "src/index.ts",
                                                    "kv_namespaces": [{"binding": "KV", "id": "a" * 32}]},
                           {"src/index.ts": "export default {};\n"})
    bundled = _template(tmp_path, "bundled", {**base, "main": "src/index.ts", "build": {"command": "esbuild"}},
                        {"src/index.ts": "export default {};\n"})
    unsafe = _template(tmp_path, "unsafe", {**base, "main": "src/index.ts",
                                            "unsafe": {"bindings": [{"name": "RL", "type": "ratelimit"}]}},
                       {"src/index.ts": "export default {};\n"})
    verdicts = {v.template: v for v in (report.classify(f) for f in (plain, typescript, bundled, unsafe))}
    assert verdicts["plain"].outcome == "deploys"
    assert verdicts["typescript"].outcome == "deploys with a CI build"
    assert "KV resource(s) must exist" in verdicts["typescript"].detail
    assert verdicts["bundled"].outcome == "deploys with a CI build"  # wrangler's build runs in CI
    assert verdicts["unsafe"].outcome == "refused" and "unsafe" in verdicts["unsafe"].detail
    table = report.render(list(verdicts.values()), "commit `abc`")
    assert "| `unsafe` | `src/index.ts` | refused |" in table and "4 templates" in table


@pytest.mark.parametrize("app, refused", [
    ("", "define, build, unsafe"),
    ("app:\n  build: {artifact: worker}\n", "unsafe"),
])
def test_bundling_keys_are_accepted_only_for_a_ci_build(app, refused):
    _path, wrangler = find_wrangler(project_files("unsupported"))
    with pytest.raises(FlareshipError) as info:
        resolve_repository_app(parse_repo_config(app), "staging", repository="acme/x", sha="0" * 40,
                               wrangler=wrangler)
    assert info.value.message.startswith(f"wrangler.toml: not supported by Flareship: {refused}")
