"""A bundled sample app (the layout `wrangler deploy --dry-run --outdir` writes: an entry module and
a module beside it) run in workerd with the bindings Flareship sends for it: vars (text and JSON)
and a Durable Object with SQLite-style storage, as the upload metadata names them."""

from __future__ import annotations

import json

import httpx

from bot.engine.appspec import AppSpec, DurableObjectSpec
from tests.workerd.runtime import capnp_string, find_workerd, free_port, serve

ENTRY = """import { DurableObject } from "cloudflare:workers";
import { greet } from "./chunks/greet.js";

export class Counter extends DurableObject {
  async fetch() {
    const n = ((await this.ctx.storage.get("n")) || 0) + 1;
    await this.ctx.storage.put("n", n);
    return new Response(String(n));
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/count") {
      return env.COUNTER.get(env.COUNTER.idFromName("one")).fetch(request);
    }
    return Response.json({ greeting: greet(env.GREETING), limits: env.LIMITS });
  },
};
"""
GREET = "export const greet = (who) => `hello ${who}`;\n"


def _config(spec: AppSpec, listen: int) -> str:
    bindings = []
    for binding in spec.bindings():
        name = capnp_string(binding["name"])
        if binding["type"] == "plain_text":
            bindings.append(f"(name = {name}, text = {capnp_string(binding['text'])})")
        elif binding["type"] == "json":
            bindings.append(f"(name = {name}, json = {capnp_string(json.dumps(binding['json']))})")
        elif binding["type"] == "durable_object_namespace":
            bindings.append(f"(name = {name}, durableObjectNamespace = {capnp_string(binding['class_name'])})")
    classes = ", ".join(f'(className = "{c}", uniqueKey = "sample-{c}")' for c in spec.class_names)
    return f"""using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [(name = "main", worker = .app)],
  sockets = [(name = "http", address = "127.0.0.1:{listen}", http = (), service = "main")],
);
const app :Workerd.Worker = (
  modules = [
    (name = "{spec.main_module}", esModule = embed "{spec.main_module}"),
    (name = "chunks/greet.js", esModule = embed "chunks/greet.js"),
  ],
  compatibilityDate = "{spec.compatibility_date}",
  compatibilityFlags = [{", ".join(capnp_string(f) for f in spec.compatibility_flags)}],
  bindings = [{", ".join(bindings)}],
  durableObjectNamespaces = [{classes}],
  durableObjectStorage = (inMemory = void),
);
"""


async def test_bundled_app_runs_with_its_bindings(tmp_path):
    workerd = find_workerd()
    spec = AppSpec(name="sample", environment="staging", script_name="sample-staging", main_module="index.js",
                   compatibility_date="2025-06-01", compatibility_flags=["nodejs_compat"],
                   vars={"GREETING": "world", "LIMITS": {"rps": 5}},
                   durable_objects=[DurableObjectSpec(class_name="Counter", binding="COUNTER")])
    (tmp_path / "chunks").mkdir()
    (tmp_path / "index.js").write_text(ENTRY)
    (tmp_path / "chunks" / "greet.js").write_text(GREET)
    listen = free_port()
    async with serve(workerd, tmp_path, _config(spec, listen), listen) as url, httpx.AsyncClient(timeout=30) as http:
        home = await http.get(url + "/")
        counts = [(await http.get(url + "/count")).text for _ in range(3)]
    assert home.status_code == 200, home.text
    assert home.json() == {"greeting": "hello world", "limits": {"rps": 5}}
    assert counts == ["1", "2", "3"]
