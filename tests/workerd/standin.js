// A stand-in for the container engine, for the generated entry module (tests/workerd/test_entry_module.py).
// It wraps the generated Durable Object class and gives it a `ctx.container` that starts "cold":
// until STANDIN_STARTUP_MS have passed since start(), a connection is refused *after* the request
// body was read, as a half-open TCP port does. Once up, requests go to the test's backend service,
// with the environment start() was given, the instance id and the attempt count in headers.
import * as generated from "./index.js";

class StandInContainer {
  constructor(env, id) {
    this.env = env;
    this.id = id;
    this.running = false;
    this.startedAt = 0;
    this.startEnv = null;
    this.starts = 0;
    this.attempts = 0;
  }

  start(options) {
    this.running = true;
    this.starts += 1;
    this.startedAt = Date.now();
    this.startEnv = (options && options.env) || {};
  }

  getTcpPort(port) {
    return {
      fetch: async (request) => {
        this.attempts += 1;
        if (Date.now() - this.startedAt < Number(this.env.STANDIN_STARTUP_MS || 0)) {
          if (request.body) await request.arrayBuffer();
          throw new Error("connection refused");
        }
        const headers = new Headers(request.headers);
        headers.set("x-container-env", JSON.stringify(this.startEnv));
        headers.set("x-instance", this.id);
        headers.set("x-attempts", String(this.attempts));
        headers.set("x-port", String(port));
        return this.env.BACKEND.fetch(new Request(request.url, { method: request.method, headers, body: request.body }));
      },
    };
  }
}

export class AppContainer extends generated.AppContainer {
  constructor(ctx, env) {
    super(ctx, env);
    // The runtime's own state stays for the base class; the module reads `this.ctx.container`.
    const container = new StandInContainer(env, ctx.id.toString());
    this.ctx = { container, id: ctx.id, storage: ctx.storage, waitUntil: (p) => ctx.waitUntil(p) };
  }
}

export default generated.default;
