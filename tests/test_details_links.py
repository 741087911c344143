"""Signed Details links: they open one deployment's page, until they expire, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.details_links import LINK_LIFETIME, DetailsLinks
from bot.errors import FlareshipError

NOW = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)


def _token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def _refused(links: DetailsLinks, deployment_id: str, token: str | None, now: datetime = NOW) -> str:
    with pytest.raises(FlareshipError) as raised:
        links.check(deployment_id, token, now=now)
    assert raised.value.code == "AUTH_007" and raised.value.status == 401
    return raised.value.message


def test_a_link_opens_its_deployment_until_it_expires():
    links = DetailsLinks("webhook-secret", "https://flareship.example.com/")
    url = links.url("dep_1", now=NOW)
    assert url.startswith("https://flareship.example.com/deployments/dep_1?token=")
    token = _token(url)
    links.check("dep_1", token, now=NOW)
    links.check("dep_1", token, now=NOW + LINK_LIFETIME)  # at least the lifetime...
    assert "expired" in _refused(links, "dep_1", token, now=NOW + LINK_LIFETIME + timedelta(days=1))  # ...not much more


def test_one_link_per_day_so_re_rendered_check_runs_keep_theirs():
    links = DetailsLinks("webhook-secret", "https://x")
    assert links.url("dep_1", now=NOW) == links.url("dep_1", now=NOW + timedelta(hours=11))
    assert links.url("dep_1", now=NOW) != links.url("dep_1", now=NOW + timedelta(hours=12))


@pytest.mark.parametrize("mangle", [
    lambda t: None,
    lambda t: "",
    lambda t: t.split(".")[0],
    lambda t: str(int(t.split(".")[0]) + 86400) + "." + t.split(".")[1],  # a later expiry, same signature
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
    lambda t: "-1." + t.split(".")[1],
    lambda t: "9" * 40 + "." + t.split(".")[1],
    lambda t: "²." + t.split(".")[1],  # a digit to str.isdigit, not to int()
    lambda t: "١٧٩٨٣٢٩٦٠٠." + t.split(".")[1],  # Arabic-Indic digits, which int() would read
])
def test_tampered_or_missing_tokens_are_refused(mangle):
    links = DetailsLinks("webhook-secret", "https://x")
    _refused(links, "dep_1", mangle(_token(links.url("dep_1", now=NOW))))


def test_a_token_opens_no_other_deployment_and_dies_with_the_secret():
    links = DetailsLinks("webhook-secret", "https://x")
    token = _token(links.url("dep_1", now=NOW))
    _refused(links, "dep_2", token)
    _refused(DetailsLinks("rotated-secret", "https://x"), "dep_1", token)


def test_without_a_webhook_secret_links_are_signed_by_this_process_only():
    first, second = DetailsLinks(None, "https://x"), DetailsLinks(None, "https://x")
    token = _token(first.url("dep_1", now=NOW))
    first.check("dep_1", token, now=NOW)
    _refused(second, "dep_1", token)


def test_ids_are_quoted_in_the_link():
    assert "/deployments/dep%2F..%2Fx?token=" in DetailsLinks("s", "https://x").url("dep/../x", now=NOW)


def test_link_tokens_are_masked_in_log_lines():
    from bot.logs import MASK, redact

    url = DetailsLinks("webhook-secret", "https://x").url("dep_1", now=NOW)
    line = f'127.0.0.1 "GET {url.removeprefix("https://x")} HTTP/1.1" 200 5123'
    assert _token(url) not in redact(line)
    assert f"/deployments/dep_1?token={MASK} HTTP/1.1" in redact(line)
