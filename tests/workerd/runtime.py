"""workerd, the open-source Workers runtime, for tests: find the binary, write a config, serve it.

`.ci/run` installs the npm package `workerd` into `.tools/workerd` (git-ignored); elsewhere set
FLARESHIP_WORKERD or put `workerd` on PATH. Where none is found the tests skip with the reason,
except in CI (`CI=true`), where they fail: there they must run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / ".tools" / "workerd" / "node_modules" / ".bin" / "workerd"


def find_workerd() -> str:
    """The workerd binary, or skip (fail in CI) saying why."""
    for candidate in (os.environ.get("FLARESHIP_WORKERD"), str(LOCAL) if LOCAL.exists() else None,
                      shutil.which("workerd")):
        if candidate and Path(candidate).exists():
            return candidate
    reason = ("workerd not found (run `npm install --no-save --prefix .tools/workerd workerd@1`, "
              "or set FLARESHIP_WORKERD)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; in CI the workerd tests must run")
    print(f"SKIPPED workerd tests: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def capnp_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@asynccontextmanager
async def serve(binary: str, directory: Path, config: str, port: int) -> AsyncIterator[str]:
    """Run `workerd serve` on `config` (written into `directory`) until the block ends; yields its URL."""
    path = directory / "config.capnp"
    path.write_text(config)
    log = (directory / "workerd.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(path), "--verbose"], stdout=log, stderr=subprocess.STDOUT,
                               cwd=directory)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError("workerd exited: " + (directory / "workerd.log").read_text()[-3000:])
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if loop.time() > deadline:
                    raise AssertionError("workerd did not listen: " + log_of(directory)[-3000:]) from None
                await asyncio.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def log_of(directory: Path) -> str:
    path = directory / "workerd.log"
    return path.read_text(errors="replace") if path.exists() else ""
