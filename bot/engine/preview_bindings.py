"""A preview's bindings: wrangler's `previews` block when the repository has one, else the `from` environment's.

Previews run the pull request's code with the account's resources, so what they may reach is
explicit: the block's vars and bindings (wrangler reads only these for `wrangler preview`), its
Durable Object classes (each preview gets its own namespaces and storage), and the parent's
secrets only when the block says `secrets: inherit` (or lists the names to inherit). Without a
block a preview binds what the `from` environment binds, secrets never. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.engine.bindings import READERS, resource_bindings
from bot.engine.config import BINDING_NAME, CLASS_NAME
from bot.engine.wrangler import config_path, environment_config
from bot.errors import FlareshipError

#: Keys of the block that are not bindings but settings of the Preview itself (sent on create).
PREVIEW_SETTINGS = ("observability", "logpush", "tail_consumers", "limits", "placement")
BLOCK_KEYS = frozenset({"vars", "durable_objects", "secrets", *READERS, *PREVIEW_SETTINGS})


@dataclass
class PreviewBindings:
    """What a preview binds; `source` says where it came from (shown in the deployment log)."""

    source: str
    vars: dict[str, Any] = field(default_factory=dict)
    #: `{class_name, binding[, script_name]}`: the preview's own namespaces for its own classes.
    durable_objects: list[dict[str, Any]] = field(default_factory=list)
    resource_bindings: list[dict[str, Any]] = field(default_factory=list)
    #: False: no secret of the parent; True: every one; a list: those names.
    inherit_secrets: bool | list[str] = False
    settings: dict[str, Any] = field(default_factory=dict)


def _durable_objects(block: dict[str, Any], where: str, problems: list[str]) -> list[dict[str, Any]]:
    dos = block.get("durable_objects")
    if dos is None:
        return []
    bindings = dos.get("bindings") if isinstance(dos, dict) else None
    if not isinstance(bindings, list):
        problems.append(f"{where}.durable_objects.bindings must be a list")
        return []
    out: list[dict[str, Any]] = []
    for i, b in enumerate(bindings):
        at = f"{where}.durable_objects.bindings[{i}]"
        if not isinstance(b, dict) or not isinstance(b.get("class_name"), str) or not CLASS_NAME.match(b["class_name"]):
            problems.append(f"{at} needs a class_name")
            continue
        name = b.get("name")
        if not isinstance(name, str) or not BINDING_NAME.match(name):
            problems.append(f"{at}.name must be an identifier")
            continue
        item: dict[str, Any] = {"class_name": b["class_name"], "binding": name}
        if isinstance(b.get("script_name"), str) and b["script_name"]:
            item["script_name"] = b["script_name"]
        out.append(item)
    return out


def _secrets(value: Any, where: str, problems: list[str]) -> bool | list[str]:
    if value is None:
        return False
    if value == "inherit":
        return True
    if isinstance(value, dict) and set(value) == {"inherit"}:
        value = value["inherit"]
    if isinstance(value, list) and all(isinstance(v, str) and BINDING_NAME.match(v) for v in value):
        return list(value)
    problems.append(f"{where}.secrets must be \"inherit\" or a list of secret names to inherit")
    return False


def wrangler_preview_bindings(data: dict[str, Any] | None, from_environment: str) -> PreviewBindings | None:
    """The block of the config `from_environment` uses (inheritable, as wrangler reads it); None without one."""
    if not data:
        return None
    block = environment_config(data, from_environment).get("previews")
    if block is None:
        return None
    path = config_path(data)
    where = f"{path}: previews"
    if not isinstance(block, dict):
        raise FlareshipError("DEPLOY_001", f"{where} must be a table", details={"field": f"{path}:previews"})
    problems: list[str] = []
    unknown = sorted(set(block) - BLOCK_KEYS)
    if unknown:
        problems.append(f"not supported in previews: {', '.join(unknown)}")
    variables = block.get("vars") or {}
    if not isinstance(variables, dict) or not all(BINDING_NAME.match(str(k)) for k in variables):
        problems.append("vars must be a table of identifiers")
        variables = {}
    queues = block.get("queues")
    if isinstance(queues, dict) and queues.get("consumers"):
        problems.append("queues.consumers: a preview never consumes a queue (it would take the real Worker's messages)")
    dos = _durable_objects(block, "previews", problems)
    secrets = _secrets(block.get("secrets"), "previews", problems)
    if problems:
        raise FlareshipError("DEPLOY_001", f"{path}: previews: {'; '.join(problems)}",
                             details={"field": f"{path}:previews", "problems": problems})
    return PreviewBindings(
        source=f"{path} previews block", vars=dict(variables), durable_objects=dos,
        resource_bindings=resource_bindings(block, f"{path} previews"), inherit_secrets=secrets,
        settings={k: block[k] for k in PREVIEW_SETTINGS if block.get(k) is not None},
    )
