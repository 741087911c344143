"""Pure pieces of the REST layer: status/progress/ETA, GitHub permission narrowing, SSE framing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.engine.model import STEP_NAMES, Deployment, DeploymentError, LogLine, Release
from handlers.api.auth import wider_permissions
from handlers.api.present import deploy_json, end_json, estimate_remaining, iso, status_json, step_medians
from handlers.api.sse import format_event

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def finished(durations: list[float]) -> Deployment:
    d = Deployment(id="dep_old", environment="staging", app_name="shop", script_name="shop-staging", target="shop",
                   status="completed")
    at = T0
    for step, seconds in zip(d.steps, durations, strict=False):
        step.status, step.started_at, step.ended_at = "completed", at, at + timedelta(seconds=seconds)
        at = step.ended_at
    return d


def running(done: int, running_for: float) -> tuple[Deployment, datetime]:
    d = Deployment(id="dep_now", environment="staging", app_name="shop", script_name="shop-staging", target="shop",
                   status="in_progress", started_at=T0)
    at = T0
    for step in d.steps[:done]:
        step.status, step.started_at, step.ended_at = "completed", at, at + timedelta(seconds=2)
        at = step.ended_at
    current = d.steps[done]
    current.status, current.started_at = "running", at
    return d, at + timedelta(seconds=running_for)


def test_medians_and_remaining_time():
    history = [finished([1, 2, 3, 10, 1, 1, 1, 5]), finished([3, 2, 3, 30, 1, 1, 1, 5]), finished([2, 2, 3, 20, 1, 1, 1, 5])]
    medians = step_medians(history)
    assert medians["Validating configuration"] == 2 and medians["Uploading container"] == 20
    d, now = running(3, running_for=5)  # "Uploading container" running for 5 of its median 20 seconds
    assert estimate_remaining(d, medians, now) == 15 + 1 + 1 + 1 + 5
    assert estimate_remaining(d, {}, now) is None
    d2, late = running(3, running_for=60)  # overran its median: counts as 0, not negative
    assert estimate_remaining(d2, medians, late) == 8


def test_status_shape_matches_the_seed():
    history = [finished([1] * 8)]
    d, now = running(3, running_for=0.5)
    logs = [LogLine(id=1, timestamp=T0, message="pushing layer 1/2", step="Uploading container"),
            LogLine(id=2, timestamp=T0, message="other step", step="Validating configuration")]
    body = status_json(d, logs=logs, medians=step_medians(history), now=now)
    assert body["progress"] == {"current": 3, "total": 8, "percentage": 37.5}
    assert body["currentStep"]["name"] == "Uploading container" and body["currentStep"]["logs"] == ["pushing layer 1/2"]
    assert [s["duration"] for s in body["completedSteps"]] == [2.0, 2.0, 2.0]
    eta = datetime.fromisoformat(body["metadata"]["estimatedCompletion"].replace("Z", "+00:00"))
    assert eta == now + timedelta(seconds=0.5 + 4)
    assert body["metadata"]["startTime"] == "2026-01-05T10:00:00.000Z"


def test_failed_status_names_the_failed_step_and_error():
    d, now = running(5, running_for=1)
    d.steps[5].status, d.steps[5].error = "failed", "upload refused"
    d.status, d.ended_at = "failed", now
    d.error = DeploymentError(code="DEPLOY_008", message="upload refused", step=STEP_NAMES[5])
    body = status_json(d, logs=[], medians={}, now=now)
    assert body["currentStep"]["name"] == STEP_NAMES[5] and body["currentStep"]["status"] == "failed"
    assert body["error"] == {"code": "DEPLOY_008", "message": "upload refused", "step": STEP_NAMES[5]}
    assert body["metadata"]["estimatedCompletion"] == iso(now)  # finished: the end time
    assert deploy_json(d)["steps"][5]["error"] == "upload refused"


def test_rollback_info_prefers_the_recorded_previous_release():
    d, _ = running(1, 0)
    live = Release(id="rel_live", target="shop", environment="staging", script_name="shop-staging",
                   deployment_id="dep_older", created_at=T0)
    assert deploy_json(d, live)["rollbackInfo"] == {"available": True, "previousVersion": "rel_live"}
    d.previous_release = live.model_copy(update={"id": "rel_prev"})
    assert deploy_json(d, live)["rollbackInfo"]["previousVersion"] == "rel_prev"
    assert deploy_json(d.model_copy(update={"previous_release": None}), None)["rollbackInfo"] == {
        "available": False, "previousVersion": None}


def test_wider_permissions():
    installation = {"contents": "read", "issues": "write", "metadata": "read"}
    assert wider_permissions({"contents": "read", "issues": "read"}, installation) == {}
    assert wider_permissions({"contents": "write"}, installation) == {"contents": {"requested": "write", "installation": "read"}}
    assert wider_permissions({"administration": "read"}, installation) == {"administration": {"requested": "read", "installation": None}}


def test_sse_framing():
    assert format_event({"a": 1}, event_id=7) == b'id: 7\ndata: {"a":1}\n\n'
    assert format_event({"status": "completed"}, event="end") == b'event: end\ndata: {"status":"completed"}\n\n'
    # A message with a newline stays one data line (JSON escapes it).
    assert format_event({"message": "a\nb"}, event_id=1).count(b"\n") == 3


def test_end_event_carries_the_seeds_three_fields():
    failed = Deployment(id="dep_x", environment="staging", app_name="shop", script_name="shop-staging", target="shop",
                        status="failed", ended_at=T0,
                        error=DeploymentError(code="DEPLOY_006", message="Health check timeout", step="Health check"))
    assert end_json(failed, T0 + timedelta(hours=1)) == {
        "timestamp": "2026-01-05T10:00:00.000Z", "level": "error",
        "message": "Deployment dep_x failed: DEPLOY_006 Health check timeout",
        "deploymentId": "dep_x", "status": "failed",
        "error": {"code": "DEPLOY_006", "message": "Health check timeout"},
    }
    done = failed.model_copy(update={"status": "completed", "error": None, "ended_at": None})
    data = end_json(done, T0)
    assert (data["level"], data["message"], data["timestamp"]) == ("info", "Deployment dep_x completed", iso(T0))
    assert "error" not in data
    assert end_json(done.model_copy(update={"status": "rolled_back"}), T0)["level"] == "warn"


def test_responses_speak_the_seeds_status_vocabulary():
    from types import SimpleNamespace

    from handlers.api.present import seed_status, seed_step

    assert seed_status("queued") == "initiated"
    assert [seed_status(s) for s in ("in_progress", "completed", "failed", "rolled_back")] == \
        ["in_progress", "completed", "failed", "rolled_back"]
    assert seed_step(SimpleNamespace(status="skipped")) == {"status": "completed", "skipped": True}
    assert seed_step(SimpleNamespace(status="running")) == {"status": "running"}
