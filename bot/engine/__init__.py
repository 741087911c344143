"""The deploy engine: one entry point (`Engine`) that every front door calls."""

from bot.engine.appspec import AppSpec
from bot.engine.config import RepoConfig, parse_repo_config
from bot.engine.engine import Engine
from bot.engine.model import (
    STEP_NAMES,
    Deployment,
    DeploymentEvent,
    DeployOptions,
    LogLine,
    PrepareRequest,
    Release,
    Step,
)

__all__ = [
    "STEP_NAMES",
    "AppSpec",
    "DeployOptions",
    "Deployment",
    "DeploymentEvent",
    "Engine",
    "LogLine",
    "PrepareRequest",
    "Release",
    "RepoConfig",
    "Step",
    "parse_repo_config",
]
