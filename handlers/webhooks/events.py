"""The pull-request events Flareship acts on, parsed once from the payload into typed models.

Only the fields the handlers use are declared (pydantic ignores the rest). A signed delivery
whose shape does not fit (no `repository`, an id or a number that is a string) is not a command:
`parse_event` logs one WARNING naming the delivery and the field, and the handler ignores it
instead of failing with a traceback. Payload shapes: https://docs.github.com/en/webhooks/webhook-events-and-payloads
"""

from __future__ import annotations

import logging
from typing import TypeVar

from gidgethub import sansio
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator

log = logging.getLogger(__name__)


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Repository(_Shape):
    full_name: StrictStr = Field(pattern=r"^[^/\s]+/[^/\s]+$", max_length=255)
    default_branch: StrictStr | None = None

    @property
    def branch(self) -> str:
        """The default branch, where the policy config is read (never the PR head)."""
        return self.default_branch or "main"


class Installation(_Shape):
    id: StrictInt


class User(_Shape):
    login: StrictStr = Field(max_length=100)
    type: StrictStr | None = None

    @property
    def is_bot(self) -> bool:
        """Comments and clicks from bots (Flareship itself included) are never commands."""
        return self.type == "Bot" or self.login.endswith("[bot]")


class _Delivery(_Shape):
    repository: Repository
    installation: Installation | None = None
    sender: User | None = None


class Issue(_Shape):
    number: StrictInt
    pull_request: dict[str, object] | None = None


class Comment(_Shape):
    id: StrictInt
    body: StrictStr | None = None
    user: User | None = None


class CommentCreated(_Delivery):
    """`issue_comment` created."""

    issue: Issue
    comment: Comment

    @property
    def author(self) -> User | None:
        return self.sender or self.comment.user


class HeadRepo(_Shape):
    full_name: StrictStr | None = None
    fork: StrictBool = False


class Ref(_Shape):
    ref: StrictStr | None = None
    sha: StrictStr | None = None
    repo: HeadRepo | None = None


class PullRequestBody(_Shape):
    number: StrictInt
    state: StrictStr = "open"
    merged: StrictBool | None = None
    merge_commit_sha: StrictStr | None = None
    merged_by: User | None = None
    #: The author (an automatic preview needs the author to meet the `from` environment's permission).
    user: User | None = None
    head: Ref = Ref()
    base: Ref = Ref()


class Label(_Shape):
    name: StrictStr = Field(max_length=100)

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


class LabelAdded(_Delivery):
    """`pull_request` labeled."""

    label: Label
    pull_request: PullRequestBody


class PullRequestClosed(_Delivery):
    """`pull_request` closed (merged or not)."""

    pull_request: PullRequestBody


class PullRequestChanged(_Delivery):
    """`pull_request` opened, reopened or synchronize: a PR head that may get a preview."""

    pull_request: PullRequestBody


class HeadMoved(_Delivery):
    """`pull_request` synchronize: the head moved from `before` to `after`."""

    pull_request: PullRequestBody
    before: StrictStr | None = None
    after: StrictStr | None = None


class App(_Shape):
    id: StrictInt | StrictStr | None = None


class CheckRun(_Shape):
    name: StrictStr = ""
    external_id: StrictStr | None = None
    head_sha: StrictStr | None = None
    app: App | None = None


class RequestedAction(_Shape):
    identifier: StrictStr = Field(default="", max_length=100)


class CheckRunEvent(_Delivery):
    """`check_run` requested_action (a button) or rerequested ("Re-run")."""

    check_run: CheckRun
    requested_action: RequestedAction | None = None


Shape = TypeVar("Shape", bound=_Shape)


def parse_event(model: type[Shape], event: sansio.Event, *, quiet: bool = False) -> Shape | None:
    """`event.data` as `model`, or None (with one WARNING naming the delivery and the field) when it does not fit.

    `quiet`: a second handler of the same event, whose first one already warned, says nothing more.
    """
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        if quiet:
            return None
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the payload"
        problem = "missing" if first["type"] == "missing" else f"invalid ({first['msg']})"
        log.warning("delivery %s (%s) ignored: field %s is %s", event.delivery_id, event.event, where, problem)
        return None
