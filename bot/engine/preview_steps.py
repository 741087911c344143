"""Which steps a deployment runs: a Worker Preview swaps steps 4-8 for the Preview's own.

`script` mode previews are ordinary Workers (`{script}-pr-<N>`) and run the normal pipeline;
`previews` mode deploys to a Worker Preview of the `from` environment's script
(bot/engine/preview_pipeline.py), keeping steps 1-3 (configuration, token, resources).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.engine.appspec import AppSpec

if TYPE_CHECKING:
    from bot.engine.steps import StepContext

Pipeline = dict[str, Callable[["StepContext"], Awaitable[str]]]


def pipeline_for(spec: AppSpec, default: Pipeline) -> Pipeline:
    if spec.preview is None or spec.preview.mode != "previews":
        return default
    from bot.engine.preview_pipeline import preview_pipeline

    return preview_pipeline(default)
