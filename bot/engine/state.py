"""What the steps of one deployment learned, saved with every transition so a resume converges.

Stored in the deployment row's `state` JSON column under the same keys the engine has always
used, so rows written before this class existed load unchanged (`StepState.from_json`) and keys
this version does not know survive a round trip in `extra`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class StepState:
    """One field per fact a step records; None means "not learned yet"."""

    #: The Cloudflare account the deployment was prepared for.
    account_id: str | None = None
    #: Module contents of an inline app (kept out of the deployment document).
    inline_modules: dict[str, str] | None = None
    #: Before step 1, an app with `build`: the wait for its artifact ({"attempt", "since", "announced"
    #: run ids}), so a restarted engine keeps the deadline and announces no run twice.
    build_wait: dict[str, Any] | None = None
    #: The downloaded build artifact (bot/engine/artifacts.py `artifact_record`): its cache key.
    build_artifact: dict[str, Any] | None = None
    #: Step 2: "user" or "account" token.
    token_kind: str | None = None
    #: Step 3: whether the Worker existed before this deployment.
    script_existed: bool | None = None
    #: Step 4: the image as the container configuration names it, and its digest.
    image: str | None = None
    image_digest: str | None = None
    #: Step 5: the migration tag found before, and the one live after.
    migration_tag_before: str | None = None
    migration_tag: str | None = None
    #: Steps 5/6: the uploaded Worker version, and whether step 5 already uploaded it.
    version_id: str | None = None
    uploaded_in_migration: bool = False
    #: Step 5: the container application.
    container_app_id: str | None = None
    #: Steps 4-5, every container by class name: {"image", "image_digest", "app_id"}. The first
    #: container is also in image / image_digest / container_app_id, which a release records.
    containers: dict[str, dict[str, Any]] | None = None
    #: Step 7: the account's workers.dev subdomain and the URL the Worker answers on.
    subdomain: str | None = None
    url: str | None = None
    #: The release recorded when the deployment completed.
    release_id: str | None = None
    #: Set while a failed deployment restores the previous release (resumed after a crash).
    rolling_back: bool = False
    #: Keys of a stored state this version does not know, written back as they were.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> StepState:
        """Load a stored `state` column (any older shape: missing keys are "not learned")."""
        known = {f.name for f in fields(cls)} - {"extra"}
        values = dict(data or {})
        extra = {k: values.pop(k) for k in list(values) if k not in known}
        return cls(**values, extra=extra)

    def to_json(self) -> dict[str, Any]:
        """The `state` column: only what was learned, under the stored key names."""
        out: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None or (value is False and f.default is False):
                continue  # a flag that is off is left out, as it always was
            out[f.name] = value
        return out
