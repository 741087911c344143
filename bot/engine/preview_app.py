"""The `from` environment's resolved app, turned into a pull request's preview (README.md "Previews").

Bindings are the preview's own (bot/engine/preview_bindings.py): wrangler's `previews` block, or
the `from` environment's. What belongs to the real environment is dropped: routes, custom
domains, cron schedules and queue consumers (a preview must not steal a queue's messages or a
hostname). In `script` mode the Worker is `{script}-pr-<N>` and its container application
`{script}-pr-<N>-{class lowercased}`; in `previews` mode the script stays the parent's (the
Preview hangs off it) and containers are refused, since a Worker Preview has no application. Pure.
"""

from __future__ import annotations

from typing import Any

from bot.engine.appspec import AppSpec, DurableObjectSpec, container_app_name, resolve_repository_app, upper_snake
from bot.engine.config import CONFIG_PATH, PreviewsConfig, RepoConfig
from bot.engine.preview_bindings import PreviewBindings, wrangler_preview_bindings
from bot.engine.preview_spec import (
    PreviewSpec,
    preview_environment,
    preview_name,
    preview_number,
    script_mode_name,
)
from bot.errors import FlareshipError


def _durable_objects(bindings: PreviewBindings, spec: AppSpec) -> list[DurableObjectSpec]:
    dos = [DurableObjectSpec(class_name=d["class_name"], binding=d["binding"], script_name=d.get("script_name"))
           for d in bindings.durable_objects]
    for container in spec.containers:  # the container's class is always bound, as for the environment
        if container.class_name not in [d.class_name for d in dos if not d.script_name]:
            dos.insert(0, DurableObjectSpec(class_name=container.class_name, binding=upper_snake(container.class_name)))
    return dos


def preview_app(spec: AppSpec, previews: PreviewsConfig, number: int,
                bindings: PreviewBindings | None) -> AppSpec:
    """The preview `pr-<number>` of `spec` (the `from` environment's app at the PR's head)."""
    mode = previews.mode
    if mode == "previews" and spec.containers:
        classes = ", ".join(c.class_name for c in spec.containers)
        raise FlareshipError("DEPLOY_001", f"a Worker Preview cannot run containers ({classes}); set "
                             "previews.mode: script for a separate Worker per pull request",
                             details={"field": "previews.mode"})
    script = spec.script_name if mode == "previews" else script_mode_name(spec.script_name, number)
    update: dict[str, Any] = {
        "environment": preview_environment(number),
        "script_name": script,
        "routes": [], "crons": None, "queue_consumers": [], "url": None,
        "workers_dev": True if mode == "script" else spec.workers_dev,
        "preview_urls": None,
        "preview": PreviewSpec(
            number=number, name=preview_name(number), mode=mode, from_environment=spec.environment,
            parent_script=spec.script_name,
            bindings_source=bindings.source if bindings else f"environment {spec.environment}",
            inherit_secrets=bindings.inherit_secrets if bindings else False,
            settings=bindings.settings if bindings else {},
        ),
    }
    if bindings is not None:
        update.update(vars=dict(bindings.vars), resource_bindings=list(bindings.resource_bindings),
                      durable_objects=_durable_objects(bindings, spec))
        if mode == "script":  # a Worker of its own: the block's settings go in its upload, as for any Worker
            update["worker_settings"] = {**spec.worker_settings, **bindings.settings}
    if mode == "script":
        update["containers"] = [c.model_copy(update={"application_name": container_app_name(script, c.class_name)})
                                for c in spec.containers]
        update["container"] = update["containers"][0] if update["containers"] else None
    return spec.model_copy(update=update)


def resolve_preview_app(app_config: RepoConfig, environment: str, *, repository: str | None, sha: str | None,
                        wrangler: dict[str, Any] | None, policy: RepoConfig | None) -> AppSpec:
    """The preview AppSpec for `preview/pr-<N>`: policy (enabled, from, mode) from the default branch."""
    number = preview_number(environment)
    previews = (policy or app_config).previews
    if number is None or not previews.enabled:
        raise FlareshipError("DEPLOY_001", f"previews are not enabled in {CONFIG_PATH} on the default branch",
                             details={"field": "previews.enabled"})
    base = resolve_repository_app(app_config, previews.from_, repository=repository, sha=sha, wrangler=wrangler,
                                  policy=policy)
    return preview_app(base, previews, number, wrangler_preview_bindings(wrangler, previews.from_))
