"""`app.build`: deploying what the repository's own CI built (docs/build-workflow.md).

Flareship never runs repository code, so a main module that cannot run unbuilt (TypeScript, JSX,
bare npm imports) or a container built from a Dockerfile needs a `build` section naming the
GitHub Actions artifact that holds the result. Pure: the config model and the refusals.
"""

from __future__ import annotations

import posixpath
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.errors import FlareshipError

#: The sample workflow a refusal points at (shipped in this repository).
HOWTO = "docs/build-workflow.md"
#: Extensions wrangler bundles with esbuild before upload; Workers cannot run them as they are.
BUILD_EXTENSIONS = (".ts", ".tsx", ".jsx", ".mts", ".cts")
#: Specifiers the runtime resolves itself (no bundler needed).
RUNTIME_PREFIXES = ("cloudflare:", "node:", "workerd:")

_IMPORT = re.compile(r"""(?:^|[;\s])(?:import|export)\s*(?:[\w*${}\s,]+\s*from\s*)?["']([^"']+)["']""", re.MULTILINE)
_DYNAMIC_IMPORT = re.compile(r"""\bimport\(\s*["']([^"']+)["']\s*\)""")
_COMMENTS = re.compile(r"/\*.*?\*/|(^|[^:\\\"'`])//[^\n]*", re.DOTALL)


def _relative_path(value: str, field: str) -> str:
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts or not parts[-1]:
        raise ValueError(f"{field} must be a relative path inside the artifact")
    return "/".join(p for p in parts if p not in ("", "."))


class BuildConfig(BaseModel):
    """The `app.build` section (also kept on the AppSpec as written)."""

    model_config = ConfigDict(extra="forbid")
    #: The GitHub Actions artifact's name (`actions/upload-artifact` `name:`).
    artifact: str = Field(min_length=1, max_length=255)
    #: The entry module inside the artifact (default: basename of app.main with `.js`).
    main: str | None = None
    #: The static-assets folder inside the artifact (default: `assets`, if present).
    assets: str | None = None
    #: An OCI image layout tarball inside the artifact (optional).
    image: str | None = None
    timeout_minutes: float = Field(default=30, gt=0, le=24 * 60)

    @field_validator("artifact")
    @classmethod
    def _artifact(cls, v: str) -> str:
        if any(ch in v for ch in '"\\/:<>|*?\r\n'):
            raise ValueError("must be an artifact name (no / \\ : < > | * ? or quotes)")
        return v

    @field_validator("main", "image")
    @classmethod
    def _file(cls, v: str | None) -> str | None:
        return None if v is None else _relative_path(v, "a build file")

    @field_validator("assets")
    @classmethod
    def _folder(cls, v: str | None) -> str | None:
        return None if v is None else _relative_path(v.rstrip("/") or ".", "build.assets")


def built_main_name(app_main: str, build: BuildConfig) -> str:
    """What `wrangler deploy --dry-run --outdir` names the bundle: `src/index.ts` -> `index.js`."""
    if build.main:
        return build.main
    stem = posixpath.splitext(posixpath.basename(app_main.replace("\\", "/")))[0]
    return f"{stem}.js"


def bare_imports(source: str) -> list[str]:
    """Specifiers of `import`/`export ... from` that name an npm package (not a path, not built in)."""
    text = _COMMENTS.sub(lambda m: m.group(1) or " ", source)
    found: list[str] = []
    for spec in [*_IMPORT.findall(text), *_DYNAMIC_IMPORT.findall(text)]:
        if spec.startswith((".", "/")) or spec.startswith(RUNTIME_PREFIXES) or "://" in spec:
            continue
        if spec not in found:
            found.append(spec)
    return found


def how_to(reason: str) -> str:
    return (f"{reason}. Flareship deploys what your CI built: build in a GitHub Actions workflow, upload one "
            f"artifact and name it in app.build.artifact (a ready workflow: {HOWTO})")


def refuse_unbuilt(main_path: str, main_source: bytes | None) -> None:
    """DEPLOY_001 for a main module that needs a build when no `build` section is configured."""
    ext = posixpath.splitext(main_path)[1].lower()
    if ext in BUILD_EXTENSIONS:
        raise FlareshipError("DEPLOY_001", how_to(f"app.main {main_path} needs a build ({ext} is not JavaScript)"),
                             details={"field": "app.build", "howTo": HOWTO})
    if main_source is None:
        return
    npm = bare_imports(main_source.decode("utf-8", errors="replace"))
    if npm:
        raise FlareshipError("DEPLOY_001", how_to(f"app.main {main_path} imports npm package(s) "
                                                  f"{', '.join(npm[:5])}, which need bundling"),
                             details={"field": "app.build", "howTo": HOWTO, "imports": npm})


def is_dockerfile(image: str) -> bool:
    """wrangler's rule: an `image` that is a path to a Dockerfile is built locally, not pulled."""
    name = posixpath.basename(image.replace("\\", "/")).lower()
    return image.startswith(("./", "../", "/")) or name == "dockerfile" or name.endswith((".dockerfile",)) \
        or name.startswith("dockerfile.")


def refuse_dockerfile(image: str, class_name: str) -> None:
    if is_dockerfile(image):
        raise FlareshipError("DEPLOY_001", how_to(f"containers[{class_name}].image {image} is a Dockerfile to build; "
                                                  "set app.build.image to the OCI image your workflow builds"),
                             details={"field": "app.build.image", "howTo": HOWTO})
