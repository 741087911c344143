"""Thin async client for Cloudflare's API (Workers, Durable Objects, Containers) and OCI registries."""

from bot.cloudflare.accounts import AccountPlan, PermissionReport, TokenInfo
from bot.cloudflare.budget import RequestBudget
from bot.cloudflare.client import CloudflareClient
from bot.cloudflare.clients import CloudflareClients
from bot.cloudflare.containers import ContainerDeployResult, RegistryCredentials, application_name
from bot.cloudflare.errors import (
    AuthenticationError,
    BudgetExhausted,
    CloudflareAPIError,
    CloudflareError,
    CloudflareTimeout,
    Conflict,
    NotFound,
    ParentWorkerMissing,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServerError,
    TokenInactive,
    TransportError,
    UnexpectedResponse,
    ValidationFailed,
)
from bot.cloudflare.previews import (
    Preview,
    PreviewDeployment,
    build_preview_metadata,
    pr_application_name,
    pr_script_name,
    preview_env,
    preview_migrations,
    preview_name,
)
from bot.cloudflare.registry import ImageRef, RegistryClient, RegistryError, parse_image_ref
from bot.cloudflare.workers import (
    WorkerModule,
    build_upload_metadata,
    durable_object_binding,
    sqlite_migration,
    var_bindings,
)

__all__ = [
    "AccountPlan", "AuthenticationError", "BudgetExhausted", "CloudflareAPIError", "CloudflareClient",
    "CloudflareClients", "CloudflareError", "CloudflareTimeout", "Conflict", "ContainerDeployResult", "ImageRef",
    "NotFound", "ParentWorkerMissing", "PermissionDenied", "PermissionReport", "Preview", "PreviewDeployment",
    "QuotaExceeded", "RateLimited", "RegistryClient", "RegistryCredentials", "RegistryError", "RequestBudget",
    "ServerError", "TokenInactive", "TokenInfo", "TransportError", "UnexpectedResponse", "ValidationFailed",
    "WorkerModule", "application_name", "build_preview_metadata", "build_upload_metadata", "durable_object_binding",
    "parse_image_ref", "pr_application_name", "pr_script_name", "preview_env", "preview_migrations", "preview_name",
    "sqlite_migration", "var_bindings",
]
