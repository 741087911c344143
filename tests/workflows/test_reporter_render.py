"""Check-run and comment rendering: titles, tables, buttons, GitHub's size limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.engine import Deployment, LogLine
from bot.engine.model import DeploymentError
from bot.github.reporter import (
    COMMENT_MARKER,
    MAX_OUTPUT_CHARS,
    check_run_actions,
    comment_row,
    render_check_run,
    render_comment,
    truncate,
)

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def deployment(**changes) -> Deployment:
    d = Deployment(id="dep_1", environment="staging", app_name="app", script_name="app-staging",
                   target="acme/app", repository="acme/app", sha="a" * 40, installation_id=1,
                   pull_request=7, trigger="comment", actor="dev", created_at=T0)
    return d.model_copy(update=changes)


def running(n_done: int) -> Deployment:
    d = deployment(status="in_progress", started_at=T0)
    for i, step in enumerate(d.steps):
        if i < n_done:
            step.status, step.started_at, step.ended_at = "completed", T0, T0 + timedelta(seconds=1.5)
        elif i == n_done:
            step.status, step.started_at = "running", T0
    return d


def test_queued_shows_position():
    body = render_check_run(deployment(status="queued"), details_url="http://x/deployments/dep_1", queue_position=2)
    assert body["status"] == "queued" and "position 2" in body["output"]["title"]
    assert "position **2**" in body["output"]["summary"]
    assert body["external_id"] == "dep_1" and body["name"] == "Deploy to staging"
    assert "conclusion" not in body and "actions" not in body


def test_in_progress_title_counts_steps_and_summary_has_table():
    body = render_check_run(running(3), details_url="u")
    assert body["status"] == "in_progress"
    assert body["output"]["title"] == "step 4/8: Uploading container"
    summary = body["output"]["summary"]
    assert "| 1 | Validating configuration | ✅ completed | 1.5s |" in summary
    assert "| 4 | Uploading container | 🔄 running |" in summary


def test_completed_success_offers_rollback_and_promote():
    d = running(8).model_copy(update={"status": "completed", "ended_at": T0, "urls": {"staging": "https://s.example"}})
    body = render_check_run(d, details_url="u", promote_target="production")
    assert body["conclusion"] == "success" and body["status"] == "completed"
    assert [a["identifier"] for a in body["actions"]] == ["rollback", "promote"]
    assert "https://s.example" in body["output"]["summary"]
    for action in body["actions"]:
        assert len(action["label"]) <= 20 and len(action["description"]) <= 40 and len(action["identifier"]) <= 20


def test_failed_offers_retry_and_names_the_step():
    d = running(5)
    d.steps[5].status, d.steps[5].error, d.steps[5].error_code = "failed", "upload rejected", "DEPLOY_008"
    d = d.model_copy(update={"status": "failed", "error": DeploymentError(code="DEPLOY_008", message="upload rejected",
                                                                         step="Uploading Worker version")})
    body = render_check_run(d, details_url="u", promote_target="production")
    assert body["conclusion"] == "failure"
    assert body["output"]["title"] == "Deploy to staging failed at step 6/8: Uploading Worker version"
    assert [a["identifier"] for a in body["actions"]] == ["retry"]
    assert "DEPLOY_008: upload rejected" in body["output"]["summary"]


def test_actions_never_exceed_github_limits():
    d = deployment(status="completed", environment="a-very-long-environment-name")
    actions = check_run_actions(d, "another-very-long-environment")
    assert len(actions) <= 3
    assert all(len(a["label"]) <= 20 and len(a["description"]) <= 40 for a in actions)


def test_log_text_is_truncated_cleanly_keeping_newest_lines():
    logs = [LogLine(id=i, timestamp=T0, message=f"line {i} " + "x" * 200) for i in range(600)]
    body = render_check_run(running(2), details_url="u", log_lines=logs)
    text = body["output"]["text"]
    assert len(text) <= MAX_OUTPUT_CHARS
    assert text.startswith("```text\n") and text.endswith("\n```")
    assert "line 599 " in text and "line 0 " not in text and "(truncated)" in text


def test_truncate_cuts_at_line_boundaries():
    text = "\n".join(f"row {i}" for i in range(1000))
    head = truncate(text, 100, keep="start")
    assert len(head) <= 100 and head.endswith("(truncated)") and "\nrow 1\n" in head
    tail = truncate(text, 100, keep="end")
    assert len(tail) <= 100 and tail.endswith("row 999")


def test_comment_table_and_notice():
    d = running(8).model_copy(update={"status": "completed", "ended_at": T0, "urls": {"staging": "https://s.example"}})
    state = {"environments": {"staging": comment_row(d, details_url="http://x/deployments/dep_1")},
             "notice": "😕 production is locked"}
    body = render_comment(state)
    assert body.startswith(COMMENT_MARKER)
    assert "| **staging** | [✅ live](http://x/deployments/dep_1) | `aaaaaaa` | [https://s.example](https://s.example) |" in body
    assert "2026-11-26T08:00:00Z | @dev |" in body
    assert "😕 production is locked" in body
    assert "No deployments" in render_comment({})


def test_a_finished_rollback_offers_no_buttons():
    d = deployment(kind="rollback", status="completed", rollback_of="dep_0")
    assert check_run_actions(d, "production") == []
    assert render_check_run(d, details_url="u")["output"]["title"] == "staging rolled back"


def test_retry_is_offered_for_failed_deployments_only():
    """A rolled-back deployment is not retryable (the engine answers DEPLOY_010), so no Retry button."""
    assert [a["identifier"] for a in check_run_actions(deployment(status="failed"), None)] == ["retry"]
    assert check_run_actions(deployment(status="rolled_back"), None) == []
