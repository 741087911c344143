"""The TypeScript app CI builds in the build tests: its repository, its config and its bundle."""

from __future__ import annotations

SHA = "e" * 40
REPO = "acme/shop"
CONFIG = """
app:
  name: shop
  main: src/index.ts
  compatibility_date: "2025-06-01"
  build: {artifact: worker, timeout_minutes: 5}
environments:
  staging: {health_check: {path: /, timeout_seconds: 5}}
"""
SOURCE = {".github/flareship.yml": CONFIG, "src/index.ts": "export default { fetch(): Response { return x; } };\n",
          "package.json": "{}"}
BUNDLE = {"index.js": 'import { greet } from "./chunks/greet.js";\n'
                      "export default { async fetch() { return new Response(greet()); } };\n",
          "chunks/greet.js": "export const greet = () => 'built by CI';\n",
          "index.js.map": "{}"}
