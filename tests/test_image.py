"""The container image builds from the Dockerfile and the started container answers /healthz and
`flareship --version` (scripts/build-image.sh: buildah on a debootstrapped Debian, no registry).

Locally it skips, printing why, when buildah, debootstrap or root is missing; in CI
(FLARESHIP_REQUIRE_IMAGE=1 or CI=true, set by .ci/run) that is a failure instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build-image.sh"


def _missing() -> str | None:
    tools = [tool for tool in ("buildah", "debootstrap", "curl") if shutil.which(tool) is None]
    if tools:
        return f"{', '.join(tools)} not installed (apt-get install buildah debootstrap curl)"
    if os.geteuid() != 0:
        return "building the image needs root (debootstrap, buildah's vfs storage)"
    return None


@pytest.mark.slow
def test_image_builds_starts_and_answers(tmp_path):
    reason = _missing()
    if reason is not None:
        if os.environ.get("FLARESHIP_REQUIRE_IMAGE") == "1" or os.environ.get("CI") == "true":
            pytest.fail(f"the image test must run in CI but {reason}", pytrace=False)
        print(f"skipping the image test: {reason}")
        pytest.skip(reason)
    env = {**os.environ, "IMAGE_WORKDIR": str(tmp_path), "FLARESHIP_IMAGE_PORT": str(_free_port())}
    result = subprocess.run([str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
                            check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(r"flareship --version in the image: flareship \d", output), output
    assert "GET /healthz answered 200 from the container" in output, output
    size = re.search(r"image size: (.+)", output)
    assert size is not None, output
    print(f"image size: {size.group(1)}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dockerfile_is_a_plain_multi_stage_non_root_build():
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE=python:3.11-slim" in text
    assert len(re.findall(r"^FROM \$\{BASE\}", text, re.MULTILINE)) == 2  # build stage + runtime stage
    assert re.search(r"^USER flareship$", text, re.MULTILINE) and "useradd" in text
    assert re.search(r'^VOLUME \["/var/lib/flareship/data"\]$', text, re.MULTILINE)
    assert "DATABASE_URL=sqlite:////var/lib/flareship/data/flareship.db" in text
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.MULTILINE)
    assert re.search(r'^CMD \["flareship", "serve"\]$', text, re.MULTILINE)


def test_compose_runs_two_replicas_on_postgres_gated_by_health():
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    replicas = [s for s in services.values() if s.get("image", "").startswith("flareship")]
    assert len(replicas) == 2 and "healthcheck" in services["postgres"]
    for replica in replicas:
        assert replica["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert replica["environment"]["DATABASE_URL"].startswith("postgresql://")
        assert "/healthz" in " ".join(replica["healthcheck"]["test"])
    assert services["flareship-2"]["depends_on"]["flareship-1"] == {"condition": "service_healthy"}
