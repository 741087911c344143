"""`GET /deployments/{id}?token=...`: a deployment's live page, opened from the check run's Details.

The signed token (`bot.details_links`) replaces an API token; the page shows one deployment and
changes nothing. While the deployment runs the page reloads itself every few seconds (no script:
the Content-Security-Policy allows none). Errors are the usual JSON envelope.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from aiohttp import web

from bot.engine.model import Deployment, LogLine
from bot.services import SERVICES

#: Log lines shown (the newest); the REST API streams all of them.
MAX_LOG_LINES = 300
REFRESH_SECONDS = 3
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token must not leak to the deployed URLs linked below
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
}


async def deployment_page(request: web.Request) -> web.Response:
    deployment_id = request.match_info["deploymentId"]
    services = request.app[SERVICES]
    services.details_links.check(deployment_id, request.query.get("token"))
    engine = services.engine
    deployment = await engine.get(deployment_id)
    logs = await engine.logs(deployment_id)
    html = render_deployment_page(deployment, logs[-MAX_LOG_LINES:], now=datetime.now(UTC))
    return web.Response(text=html, content_type="text/html", charset="utf-8", headers=_HEADERS)


def render_deployment_page(deployment: Deployment, logs: list[LogLine], *, now: datetime) -> str:
    """The page (pure): header facts, the 8 steps, the error if any, the newest log lines."""
    d = deployment
    title = f"{'Roll back' if d.kind == 'rollback' else 'Deploy'} {d.app_name} to {d.environment}: {d.status}"
    refresh = "" if d.is_final else f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
    facts = [
        ("Deployment", d.id),
        ("Repository", d.repository),
        ("Pull request", f"#{d.pull_request}" if d.pull_request else None),
        ("Commit", d.sha[:12] if d.sha else None),
        ("Started by", f"{d.actor or 'unknown'} ({d.trigger})"),
        ("Attempt", f"{d.attempt} of {d.max_attempts}" if d.attempt > 1 else None),
        ("Created", _time(d.created_at)),
        ("Duration", _duration(d.started_at, d.ended_at or (None if d.is_final else now))),
        ("Rolled back", d.rollback_of),
        ("Reason", d.reason),
    ]
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in facts if v)
    urls = "".join(
        f'<li><a href="{escape(url)}" rel="noopener noreferrer">{escape(url)}</a></li>' for url in d.urls.values()
    )
    steps = "".join(
        f'<tr class="{escape(s.status)}"><td>{n}</td><td>{escape(s.name)}</td><td>{escape(s.status)}</td>'
        f"<td>{escape(_duration(s.started_at, s.ended_at or (now if s.status == 'running' else None)) or '')}</td>"
        f"<td>{escape(' '.join(filter(None, (s.error_code, s.error))))}</td></tr>"
        for n, s in enumerate(d.steps, 1)
    )
    error = (
        f'<p class="error"><strong>{escape(d.error.code)}</strong> {escape(d.error.message)}'
        f"{escape(f' (step: {d.error.step})') if d.error.step else ''}</p>"
        if d.error
        else ""
    )
    log_text = "\n".join(
        f"{line.timestamp:%H:%M:%S} {line.level.upper():5} {f'[{line.step}] ' if line.step else ''}{line.message}"
        for line in logs
    )
    live = "" if d.is_final else f'<p class="muted">Live: this page reloads every {REFRESH_SECONDS} s.</p>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
{refresh}<title>{escape(title)} · Flareship</title>
<style>
body {{ font: 14px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #1f2328; }}
table {{ border-collapse: collapse; margin: 1rem 0; width: 100%; }}
th, td {{ text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #d0d7de; vertical-align: top; }}
.completed td:nth-child(3) {{ color: #1a7f37; }} .failed td:nth-child(3) {{ color: #cf222e; }}
.running td:nth-child(3) {{ color: #9a6700; font-weight: 600; }} .muted, .skipped, .pending {{ color: #656d76; }}
.error {{ background: #ffebe9; border: 1px solid #ff8182; padding: .6rem; border-radius: 6px; }}
pre {{ background: #f6f8fa; padding: .8rem; overflow-x: auto; border-radius: 6px; }}
</style></head>
<body>
<h1>{escape(title)}</h1>
{live}{error}
<table>{rows}</table>
{f"<h2>URLs</h2><ul>{urls}</ul>" if urls else ""}
<h2>Steps</h2>
<table><thead><tr><th>#</th><th>Step</th><th>Status</th><th>Time</th><th>Error</th></tr></thead><tbody>{steps}</tbody></table>
<h2>Log</h2>
<pre>{escape(log_text) or "(nothing logged yet)"}</pre>
<p class="muted">Read-only. Retry, roll back and promote from the check run on GitHub or through the REST API.</p>
</body></html>
"""


def _time(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else None


def _duration(start: datetime | None, end: datetime | None) -> str | None:
    if not start or not end:
        return None
    seconds = max(0.0, (end - start).total_seconds())
    return f"{seconds:.1f} s" if seconds < 120 else f"{int(seconds // 60)} min {int(seconds % 60)} s"
